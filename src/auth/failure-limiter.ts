// Slows key guessing: an address with too many failed authentications in a minute is refused for a while.

import { isIP } from 'node:net';

export interface FailureLimiterOptions {
  maxFailures: number;
  windowMs: number;
  blockMs: number;
  /** Addresses tracked at most; the oldest are forgotten first. */
  maxTracked: number;
}

export const DEFAULT_FAILURE_LIMITS: FailureLimiterOptions = { maxFailures: 20, windowMs: 60_000, blockMs: 300_000, maxTracked: 100_000 };

/** The eight 16-bit groups of an IPv6 address (`::` filled in, a dotted IPv4 tail as two groups, a zone dropped). */
function ipv6Groups(address: string): number[] {
  let text = address.split('%', 1)[0]!;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const groupsOf = (part: string | undefined): string[] => (part ? part.split(':') : []);
  const zeros = tail === undefined ? [] : Array<string>(8 - groupsOf(head).length - groupsOf(tail).length).fill('0');
  return [...groupsOf(head), ...zeros, ...groupsOf(tail)].map((group) => parseInt(group, 16));
}

/**
 * Who failures are counted against: an IPv4 address, also when written as IPv6 (`::ffff:203.0.113.9`),
 * and for IPv6 its /64 network, which one subscriber or host holds whole and can pick any address of.
 */
export function failureAddress(address: string): string {
  if (isIP(address.split('%', 1)[0]!) !== 6) return address;
  const groups = ipv6Groups(address);
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
  }
  return `${groups
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
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
