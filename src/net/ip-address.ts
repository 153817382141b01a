// IP addresses in one spelling: the 16-bit groups of an IPv6 address, an IPv4-mapped one as its IPv4 address, and the IPv4 address an IPv6 address leads to.

import { isIP } from 'node:net';

/** The IPv4 address two 16-bit groups of an IPv6 address hold. */
function asIpv4(high: number, low: number): string {
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}

/** The eight 16-bit groups of an IPv6 address in hex notation, or undefined for another notation. */
export function expandIpv6(address: string): number[] | undefined {
  const halves = address.split('::');
  if (halves.length > 2 || address.includes('.')) return undefined;
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const groups = halves.length === 2 ? [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head;
  return groups.length === 8 && groups.every((group) => Number.isInteger(group) && group >= 0 && group <= 0xffff) ? groups : undefined;
}

/** An address in one spelling: an IPv4-mapped IPv6 address as its IPv4 address, another IPv6 address as a URL writes it. */
export function plainAddress(address: string): string {
  const unbracketed = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (isIP(unbracketed) !== 6) return unbracketed;
  const canonical = new URL(`http://[${unbracketed}]`).hostname.slice(1, -1);
  const groups = expandIpv6(canonical)!;
  const mapped = groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff;
  return mapped ? asIpv4(groups[6]!, groups[7]!) : canonical;
}

/**
 * The address a connection to `address` ends up at, as far as the address itself tells: the IPv4
 * address that an IPv4-mapped, IPv4-compatible (other than `::` and `::1`), IPv4-translated
 * (`::ffff:0:0:0/96`) or NAT64 (`64:ff9b::/96`, through the network's translator) address carries,
 * else the address as plainAddress writes it.
 */
export function destinationAddress(address: string): string {
  const plain = plainAddress(address);
  if (isIP(plain) !== 6) return plain;
  const groups = expandIpv6(plain)!;
  const zeros = (from: number, to: number): boolean => groups.slice(from, to).every((group) => group === 0);
  const compatible = zeros(0, 6) && (groups[6] !== 0 || groups[7]! > 1);
  const translated = zeros(0, 4) && groups[4] === 0xffff && groups[5] === 0;
  const nat64 = groups[0] === 0x64 && groups[1] === 0xff9b && zeros(2, 6);
  return compatible || translated || nat64 ? asIpv4(groups[6]!, groups[7]!) : plain;
}
