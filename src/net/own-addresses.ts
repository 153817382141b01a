// This machine's own addresses (those of its network interfaces, public ones included), read at most once a second.

import { networkInterfaces } from 'node:os';
import { destinationAddress, plainAddress } from './ip-address.js';

/**
 * How long one reading of the interfaces is used. networkInterfaces() is a getifaddrs() call that
 * walks every interface (a container host has hundreds), and every outbound URL check and connection
 * asks; an address added to an interface is known within this time.
 */
const READING_LIFETIME_MS = 1_000;

let reading: { addresses: ReadonlySet<string>; readAt: number } | undefined;

/** Whether an address, in any spelling (see destinationAddress), is one of this machine's network interfaces'. */
export function isOwnAddress(address: string): boolean {
  const now = performance.now();
  if (reading === undefined || now - reading.readAt >= READING_LIFETIME_MS) {
    const entries = Object.values(networkInterfaces()).flatMap((list) => list ?? []);
    reading = { addresses: new Set(entries.map((entry) => plainAddress(entry.address))), readAt: now };
  }
  return reading.addresses.has(destinationAddress(address));
}
