// Who the client really is when comfy-gate sits behind a reverse proxy: forwarded headers count only from --trusted-proxy addresses.

import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';

/** The forwarded host names of a request that has none. */
const NO_HOSTS: readonly string[] = [];

/** Parses one `--trusted-proxy` entry (an address or a CIDR block); returns an error message for a bad one. */
export function checkTrustedProxy(entry: string): string | null {
  const [address, bits, ...rest] = entry.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || rest.length > 0) return `${JSON.stringify(entry)} is not an IP address or CIDR block`;
  if (bits !== undefined && (!/^\d+$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128))) return `${JSON.stringify(entry)} has a bad prefix length`;
  return null;
}

/**
 * The address in one `X-Forwarded-For` entry, without the port or brackets some proxies write with it
 * (`203.0.113.9:51234`, `[2001:db8::1]:443`); an entry that is not one of those forms is kept as written.
 */
function forwardedAddress(entry: string): string {
  const match = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(entry) ?? /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(entry);
  return match && isIP(match[1]!) !== 0 ? match[1]! : entry;
}

/**
 * Reads the client's address and scheme. A request from a trusted proxy is believed about
 * `X-Forwarded-For` (the right-most address that is not itself a trusted proxy), `X-Forwarded-Proto`
 * and `X-Forwarded-Host`; from anyone else those headers are ignored.
 */
export class ClientAddressing {
  private readonly trusted = new BlockList();
  private readonly any: boolean;

  constructor(trustedProxies: readonly string[]) {
    this.any = trustedProxies.length > 0;
    for (const entry of trustedProxies) {
      const [address, bits] = entry.split('/') as [string, string | undefined];
      const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.trusted.addAddress(address, type);
      else this.trusted.addSubnet(address, Number(bits), type);
    }
  }

  private isTrusted(address: string | undefined): boolean {
    if (!this.any || !address) return false;
    const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
    return this.trusted.check(plain, isIP(plain) === 6 ? 'ipv6' : 'ipv4');
  }

  /** Whether the request came through a trusted proxy. */
  viaTrustedProxy(req: IncomingMessage): boolean {
    return this.isTrusted(req.socket.remoteAddress);
  }

  /** The client's IP address. */
  clientIp(req: IncomingMessage): string {
    const peer = req.socket.remoteAddress ?? '';
    if (!this.isTrusted(peer)) return peer;
    const chain = String(req.headers['x-forwarded-for'] ?? '')
      .split(',')
      .map((s) => forwardedAddress(s.trim()))
      .filter(Boolean);
    for (let i = chain.length - 1; i >= 0; i -= 1) if (!this.isTrusted(chain[i])) return chain[i]!;
    return chain[0] ?? peer;
  }

  /** Whether the client used HTTPS (to the gateway, or to the trusted proxy in front of it). */
  isHttps(req: IncomingMessage): boolean {
    if ((req.socket as { encrypted?: boolean }).encrypted) return true;
    return (
      this.viaTrustedProxy(req) &&
      String(req.headers['x-forwarded-proto'] ?? '')
        .split(',')[0]!
        .trim() === 'https'
    );
  }

  /** The host the client asked for: `X-Forwarded-Host` from a trusted proxy, else `Host` (undefined when neither is sent). */
  host(req: IncomingMessage): string | undefined {
    const forwardedHost = this.viaTrustedProxy(req)
      ? String(req.headers['x-forwarded-host'] ?? '')
          .split(',')[0]!
          .trim()
      : '';
    return forwardedHost || req.headers.host;
  }

  /**
   * The host names a trusted proxy's `X-Forwarded-Host` gives, each entry (none from anyone else). A proxy
   * passes on the headers it does not set itself (nginx a client's `X-Forwarded-Host`, Apache appends its own
   * to it), so any of them may be the client's: all must be names the gateway answers to, as `Host` must, or
   * a page on a rebound name could claim the site's.
   */
  forwardedHosts(req: IncomingMessage): readonly string[] {
    const given = req.headers['x-forwarded-host'];
    if (given === undefined || !this.viaTrustedProxy(req)) return NO_HOSTS;
    return String(given)
      .split(',')
      .map((entry) => entry.trim())
      .filter(Boolean);
  }

  /** The gateway's own origin as the client sees it, e.g. `https://comfy.example.com`. */
  origin(req: IncomingMessage): string {
    return `${this.isHttps(req) ? 'https' : 'http'}://${this.host(req) ?? ''}`.toLowerCase();
  }

  /**
   * Whether a request comes from a page of the gateway's own origin: its `Origin` (or, without one,
   * its `Referer`) must be exactly that origin. A request with neither is not same-origin.
   */
  isSameOrigin(req: IncomingMessage): boolean {
    let origin = req.headers.origin;
    if (origin === undefined && req.headers.referer) {
      try {
        origin = new URL(req.headers.referer).origin;
      } catch {
        return false;
      }
    }
    return origin !== undefined && origin.toLowerCase() === this.origin(req);
  }
}
