// Slows key guessing: an address with too many failed authentications in a minute is refused for a while.

import { isIP } from 'node:net';
import { expandIpv6, plainAddress } from '../net/ip-address.js';

export interface FailureLimiterOptions {
  maxFailures: number;
  windowMs: number;
  blockMs: number;
  /** Addresses tracked at most; the oldest are forgotten first. */
  maxTracked: number;
}

export const DEFAULT_FAILURE_LIMITS: FailureLimiterOptions = { maxFailures: 20, windowMs: 60_000, blockMs: 300_000, maxTracked: 100_000 };

/**
 * Who failures are counted against: an IPv4 address, also when written as IPv6 (`::ffff:203.0.113.9`),
 * and for IPv6 its /64 network, which one subscriber or host holds whole and can pick any address of.
 */
export function failureAddress(address: string): string {
  const plain = plainAddress(address);
  if (isIP(plain) !== 6) return plain;
  const network = expandIpv6(plain)!.slice(0, 4);
  return `${network.map((group) => group.toString(16)).join(':')}::/64`;
}

/** Failed authentications per client address (see `failureAddress`): past `maxFailures` in `windowMs`, blocked for `blockMs`. */
export class AuthFailureLimiter {
  private readonly options: FailureLimiterOptions;
  private readonly failures = new Map<string, number[]>();
  private readonly blockedUntil = new Map<string, number>();

  constructor(options: FailureLimiterOptions = DEFAULT_FAILURE_LIMITS) {
    this.options = options;
  }

  /** Milliseconds the address is still blocked for, or 0. */
  blockedFor(client: string, now: number): number {
    // Nearly always no address is blocked: the client's address is then not even put in its one spelling.
    if (this.blockedUntil.size === 0) return 0;
    const address = failureAddress(client);
    const until = this.blockedUntil.get(address);
    if (until === undefined) return 0;
    if (until > now) return until - now;
    this.blockedUntil.delete(address);
    return 0;
  }

  /** Counts a failure; returns true when this one made the address blocked. */
  recordFailure(client: string, now: number): boolean {
    const address = failureAddress(client);
    const recent = (this.failures.get(address) ?? []).filter((t) => t > now - this.options.windowMs);
    recent.push(now);
    this.failures.delete(address);
    this.failures.set(address, recent);
    if (this.failures.size > this.options.maxTracked) this.failures.delete(this.failures.keys().next().value!);
    if (recent.length <= this.options.maxFailures) return false;
    this.failures.delete(address);
    this.blockedUntil.set(address, now + this.options.blockMs);
    if (this.blockedUntil.size > this.options.maxTracked) this.blockedUntil.delete(this.blockedUntil.keys().next().value!);
    return true;
  }
}
