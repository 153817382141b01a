// Requests the gateway itself makes to URLs its users give (webhooks, image inputs): only http(s), never to a ComfyUI backend, and never to a private address unless the operator allows it.

import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { networkInterfaces } from 'node:os';
import { Agent, buildConnector } from 'undici';
import { asIpv4, expandIpv6, plainAddress } from './ip-address.js';

/** Address blocks a user-given URL may not reach: loopback, private, link-local, shared, reserved and multicast. */
const PRIVATE_BLOCKS = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE_BLOCKS.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
  ['2001:db8::', 32],
  ['100::', 64],
] as const) {
  PRIVATE_BLOCKS.addSubnet(network, prefix, 'ipv6');
}

/** The IPv4 address an IPv6 address carries (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 or 6to4), if any. */
function embeddedIpv4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const dotted = /^(?:::ffff:|::|::ffff:0:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const groups = expandIpv6(lower);
  if (!groups) return undefined;
  const zeros = (from: number, to: number): boolean => groups.slice(from, to).every((group) => group === 0);
  if (zeros(0, 5) && (groups[5] === 0xffff || groups[5] === 0)) return asIpv4(groups[6]!, groups[7]!);
  if (zeros(0, 4) && groups[4] === 0xffff && groups[5] === 0) return asIpv4(groups[6]!, groups[7]!);
  if (groups[0] === 0x64 && groups[1] === 0xff9b && zeros(2, 6)) return asIpv4(groups[6]!, groups[7]!);
  if (groups[0] === 0x2002) return asIpv4(groups[1]!, groups[2]!);
  return undefined;
}

/** Whether an address is in the local-use NAT64 prefix (64:ff9b:1::/48, RFC 8215): a translator of the site's own may turn it into any IPv4 address. */
function isLocalNat64(address: string): boolean {
  const groups = expandIpv6(address.toLowerCase());
  return groups !== undefined && groups[0] === 0x64 && groups[1] === 0xff9b && groups[2] === 1;
}

/** Whether an IP address is one a user-given URL may not reach (see PRIVATE_BLOCKS); anything that is not an IP address counts as private. */
export function isPrivateAddress(address: string): boolean {
  const unbracketed = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(unbracketed);
  if (family === 4) return PRIVATE_BLOCKS.check(unbracketed, 'ipv4');
  if (family !== 6) return true;
  const inner = embeddedIpv4(unbracketed);
  if (inner !== undefined && PRIVATE_BLOCKS.check(inner, 'ipv4')) return true;
  if (isLocalNat64(unbracketed)) return true;
  return PRIVATE_BLOCKS.check(unbracketed, 'ipv6');
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
 * host may not be a private address, `localhost` or a name that resolves to one (checked again when
 * the gateway connects, so a name that changes its answer is refused then too).
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
  const refused = new OutboundUrlError(`points to a loopback, private or link-local address; the gateway refuses those unless started with ${privateFlag}`);
  // A fully qualified name may end in a dot (`localhost.`): the same host.
  const host = url.hostname.replace(/^\[|\]$/g, '').replace(/\.+$/, '');
  if (isIP(host) !== 0) {
    if (isPrivateAddress(host)) throw refused;
    return url;
  }
  if (host === 'localhost' || host.endsWith('.localhost')) throw refused;
  const addresses = await resolveAll(host).catch(() => {
    throw new OutboundUrlError(`names a host (${host.slice(0, 200)}) that cannot be resolved`);
  });
  if (addresses.some((entry) => isPrivateAddress(entry.address))) throw refused;
  return url;
}

function resolveAll(host: string): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) => dnsLookup(host, { all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))));
}

/** A DNS lookup for connections that leaves out private addresses, and fails when none is left. */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, '', 0);
    const allowed = addresses.filter((entry) => !isPrivateAddress(entry.address));
    if (allowed.length === 0) {
      const refused = Object.assign(new Error(`${hostname} resolves only to private addresses`), { code: 'EPRIVATEADDRESS' });
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
  if (THIS_MACHINE.check(address, family === 4 ? 'ipv4' : 'ipv6')) return true;
  return Object.values(networkInterfaces()).some((entries) => entries?.some((entry) => plainAddress(entry.address) === address));
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
  return new Agent({ connect, connections: 16, headersTimeout: 30_000, bodyTimeout: 30_000 });
}
