// Requests the gateway itself makes to URLs its users give (webhooks, image inputs): only http(s), never to a ComfyUI backend, and never to a private address or this machine unless the operator allows it.

import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { Agent, buildConnector } from 'undici';
import { destinationAddress, plainAddress } from './ip-address.js';
import { isOwnAddress } from './own-addresses.js';

/**
 * IPv4 blocks a user-given URL may not reach: every block of IANA's IPv4 special-purpose registry
 * that is not globally reachable (loopback, private, link-local, shared, documentation, benchmarking,
 * reserved; all of 192.0.0.0/24, its anycast addresses too), the deprecated 6to4 relay anycast
 * 192.88.99.0/24 (it reaches whichever relay is nearest), and multicast. 240.0.0.0/4 holds the limited
 * broadcast 255.255.255.255.
 */
const NOT_PUBLIC_IPV4 = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  NOT_PUBLIC_IPV4.addSubnet(network, prefix, 'ipv4');
}

/**
 * Global unicast (2000::/3): the only IPv6 addresses a user-given URL may reach, but for NOT_PUBLIC_IPV6
 * and those that carry an IPv4 address. Every other block of IANA's IPv6 special-purpose registry lies
 * outside it: loopback, unspecified, the local-use NAT64 prefix 64:ff9b:1::/48, discard-only
 * 100::/64, unique local fc00::/7, link-local fe80::/10, SRv6 segment identifiers 5f00::/16.
 */
const GLOBAL_UNICAST = new BlockList();
GLOBAL_UNICAST.addSubnet('2000::', 3, 'ipv6');

/**
 * The blocks of IANA's IPv6 special-purpose registry inside 2000::/3 that a user-given URL may not
 * reach: all of 2001::/23 (IETF protocol assignments: Teredo, whose embedded server and client IPv4
 * addresses may be private, benchmarking, ORCHID, and anycast and relay addresses, which reach
 * whichever server is nearest), the documentation blocks 2001:db8::/32 and 3fff::/20, and 6to4
 * 2002::/16 (deprecated, and it reaches its embedded IPv4 address through whichever relay is nearest,
 * whatever that address is).
 */
const NOT_PUBLIC_IPV6 = new BlockList();
for (const [network, prefix] of [
  ['2001::', 23],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['3fff::', 20],
] as const) {
  NOT_PUBLIC_IPV6.addSubnet(network, prefix, 'ipv6');
}

/**
 * Whether an IP address is one a user-given URL may not reach: an IPv4 address in NOT_PUBLIC_IPV4, an
 * IPv6 address outside 2000::/3 or in NOT_PUBLIC_IPV6; an IPv6 address that carries an IPv4 address
 * (see destinationAddress) is judged by that IPv4 address. Anything that is not an IP address counts
 * as private.
 */
export function isPrivateAddress(address: string): boolean {
  const destination = destinationAddress(address);
  const family = isIP(destination);
  if (family === 4) return NOT_PUBLIC_IPV4.check(destination, 'ipv4');
  if (family !== 6) return true;
  return !GLOBAL_UNICAST.check(destination, 'ipv6') || NOT_PUBLIC_IPV6.check(destination, 'ipv6');
}

/**
 * Whether a user-given URL may not reach an address unless private addresses are allowed: a private
 * one, or one of this machine's own, public ones included (a URL to the machine's public address
 * reaches whatever listens on every interface: a ComfyUI, the gateway's own API).
 */
function isRefusedAddress(address: string): boolean {
  return isPrivateAddress(address) || isOwnAddress(address);
}

/** Why a user-given URL cannot be used; the message says what to fix. */
export class OutboundUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutboundUrlError';
  }
}

/**
 * Reads a user-given URL: http or https, no user name or password, a host. Unless `allowPrivate`, its
 * host may not be a private address or one of this machine's (isRefusedAddress), `localhost` or a
 * name that resolves to one (checked again when the gateway connects, so a name that changes its
 * answer is refused then too).
 * @throws OutboundUrlError naming the problem
 */
export async function checkOutboundUrl(text: string, allowPrivate: boolean, privateFlag: string): Promise<URL> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new OutboundUrlError('is not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OutboundUrlError('must be an http or https URL');
  if (url.username !== '' || url.password !== '') throw new OutboundUrlError('may not hold a user name or password');
  if (url.hostname === '') throw new OutboundUrlError('has no host');
  if (allowPrivate) return url;
  const refused = new OutboundUrlError(
    `points to a loopback, link-local, reserved or private address, or to this machine; the gateway refuses those unless started with ${privateFlag}`,
  );
  // A fully qualified name may end in a dot (`localhost.`): the same host.
  const host = url.hostname.replace(/^\[|\]$/g, '').replace(/\.+$/, '');
  if (isIP(host) !== 0) {
    if (isRefusedAddress(host)) throw refused;
    return url;
  }
  if (host === 'localhost' || host.endsWith('.localhost')) throw refused;
  const addresses = await resolveAll(host).catch(() => {
    throw new OutboundUrlError(`names a host (${host.slice(0, 200)}) that cannot be resolved`);
  });
  if (addresses.some((entry) => isRefusedAddress(entry.address))) throw refused;
  return url;
}

function resolveAll(host: string): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) => dnsLookup(host, { all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))));
}

/** A DNS lookup for connections that leaves out private addresses and this machine's (isRefusedAddress), and fails when none is left. */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, '', 0);
    const allowed = addresses.filter((entry) => !isRefusedAddress(entry.address));
    if (allowed.length === 0) {
      const refused = Object.assign(new Error(`${hostname} resolves only to private addresses or to this machine`), { code: 'EPRIVATEADDRESS' });
      return callback(refused, '', 0);
    }
    if (options.all) return (callback as unknown as (error: null, addresses: LookupAddress[]) => void)(null, allowed);
    callback(null, allowed[0]!.address, allowed[0]!.family);
  });
};

/** The code of a connection refused because it reached a ComfyUI backend. */
const BACKEND_REFUSED = 'EBACKENDADDRESS';

/** Whether a request failed because its URL reached a ComfyUI backend of the gateway (see outboundAgent). */
export function reachedBackend(error: unknown): boolean {
  const { code, cause } = error as { code?: unknown; cause?: { code?: unknown } };
  return code === BACKEND_REFUSED || cause?.code === BACKEND_REFUSED;
}

/** Loopback and unspecified addresses: this machine, whatever its interfaces. */
const THIS_MACHINE = new BlockList();
THIS_MACHINE.addSubnet('127.0.0.0', 8, 'ipv4');
THIS_MACHINE.addAddress('0.0.0.0', 'ipv4');
THIS_MACHINE.addAddress('::1', 'ipv6');
THIS_MACHINE.addAddress('::', 'ipv6');

/** Whether an address (plain, see plainAddress) is this machine's: loopback, unspecified, or one of its interfaces'. */
function isThisMachine(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return THIS_MACHINE.check(address, family === 4 ? 'ipv4' : 'ipv6') || isOwnAddress(address);
}

/**
 * Whether a connection to `address`:`port` reaches one of the backends: the port of its URL on an
 * address its host resolves to, or on any address of this machine when its host is this machine (a
 * ComfyUI listening on every interface answers on each).
 */
async function reachesBackend(address: string, port: number, backends: readonly URL[]): Promise<boolean> {
  const peer = plainAddress(address);
  for (const backend of backends) {
    if (port !== Number(backend.port || (backend.protocol === 'https:' ? 443 : 80))) continue;
    const addresses = (await resolveAll(backend.hostname.replace(/^\[|\]$/g, '')).catch(() => [])).map((entry) => plainAddress(entry.address));
    if (addresses.includes(peer) || (addresses.some(isThisMachine) && isThisMachine(peer))) return true;
  }
  return false;
}

/**
 * How long the pool lets a request wait for an answer or its next bytes: longer than each caller's own deadline
 * (image fetches 30 s, webhook deliveries 10 s), which ends the request first. undici's timers may fire up to a
 * second early: at the callers' length, the pool's cut a fetch short of its deadline and gave its
 * `--max-image-fetches` place to a run that had waited its full deadline.
 */
const BACKSTOP_TIMEOUT_MS = 40_000;

/**
 * The connection pool for requests to user-given URLs: with `allowPrivate` false, a name is resolved
 * at connect time to public addresses only. (A URL holding an IP address is not resolved: check it
 * with `checkOutboundUrl` first.) Whatever `allowPrivate` says, a connection that reaches one of the
 * ComfyUI `backends` (see reachesBackend) is closed before anything is sent and fails with
 * EBACKENDADDRESS: a backend serves every key's files and stops whatever runs when asked.
 */
export function outboundAgent(allowPrivate: boolean, backends: readonly URL[]): Agent {
  const connector = buildConnector(allowPrivate ? {} : { lookup: publicOnlyLookup });
  const connect: buildConnector.connector = (options, callback) =>
    connector(options, (error, socket) => {
      if (error) return callback(error, null);
      reachesBackend(socket.remoteAddress ?? '', socket.remotePort ?? 0, backends).then(
        (reached) => {
          if (!reached) return callback(null, socket);
          socket.destroy();
          callback(Object.assign(new Error(`${options.hostname} reaches a ComfyUI backend of the gateway`), { code: BACKEND_REFUSED }), null);
        },
        (failure: Error) => {
          socket.destroy();
          callback(failure, null);
        },
      );
    });
  return new Agent({ connect, connections: 16, headersTimeout: BACKSTOP_TIMEOUT_MS, bodyTimeout: BACKSTOP_TIMEOUT_MS });
}
