// Reads the Host header, decides which host names the gateway answers to (DNS rebinding needs a name it accepts), and gives a URL's host as sockets connect to it.

import { isIP } from 'node:net';

/** A Host header split into its host name (lower case, IPv6 without brackets) and port, or null when it is not one. */
export interface ParsedHost {
  hostname: string;
  port: number | null;
}

/** Parses `name`, `name:port`, `1.2.3.4:port` or `[::1]:port`; null for anything else. */
export function parseHost(value: string | undefined): ParsedHost | null {
  if (!value) return null;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]/@]+))(?::(\d{1,5}))?$/.exec(value);
  if (!match) return null;
  if (match[1] !== undefined && isIP(match[1]) !== 6) return null;
  const port = match[3] === undefined ? null : Number(match[3]);
  if (port !== null && port > 65535) return null;
  return { hostname: (match[1] ?? match[2]!).toLowerCase(), port };
}

/** The host of `url` as net.connect and tls.connect take it: an IPv6 address without its brackets. */
export function socketHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/** A loopback name: `localhost`, an IPv4 address in 127.0.0.0/8, or `::1`. */
export function isLoopbackName(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '::1' || (isIP(hostname) === 4 && hostname.startsWith('127.'));
}

/** Checks one `--allowed-host` entry: a DNS name, or `.name` for the name and its subdomains. */
export function checkAllowedHost(entry: string): string | null {
  return /^\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/i.test(entry)
    ? null
    : `${JSON.stringify(entry)} is not a host name such as comfy.example.com or .example.com`;
}

/**
 * The host names the gateway answers to: any IP address (a DNS rebinding attack needs a name),
 * `localhost` and `*.localhost` (which browsers resolve to loopback themselves), and each
 * `--allowed-host` (`.example.com` also allows its subdomains). Other names are refused.
 */
export class HostPolicy {
  private readonly exact = new Set<string>();
  private readonly suffixes: string[] = [];
  /** The last Host value found allowed: nearly every request of a deployment names the same one, read once. */
  private lastAllowed: string | undefined;

  constructor(allowedHosts: readonly string[]) {
    for (const entry of allowedHosts.map((host) => host.toLowerCase())) {
      if (entry.startsWith('.')) {
        this.suffixes.push(entry);
        this.exact.add(entry.slice(1));
      } else this.exact.add(entry);
    }
  }

  /** Whether a request naming `host` (a Host value; undefined when the request had none) is answered. */
  allows(host: string | undefined): boolean {
    if (host === undefined || host === '' || host === this.lastAllowed) return true;
    if (!this.namesAllowedHost(host)) return false;
    this.lastAllowed = host;
    return true;
  }

  /** Whether `host`, read as a Host value, names an IP address, a loopback name or an allowed host. */
  private namesAllowedHost(host: string): boolean {
    const parsed = parseHost(host);
    if (!parsed) return false;
    const name = parsed.hostname.endsWith('.') ? parsed.hostname.slice(0, -1) : parsed.hostname;
    if (isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost')) return true;
    return this.exact.has(name) || this.suffixes.some((suffix) => name.endsWith(suffix));
  }
}
