// A circuit breaker: after a few failures in a row, stop calling a backend for a while, then let one probe through.

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit (default 3). */
  failureThreshold?: number;
  /** How long the circuit stays open before one probe is let through (default 1000 ms). */
  openMs?: number;
  /** The clock, in milliseconds (default Date.now). */
  now?: () => number;
}

/**
 * closed: every call goes through; `failureThreshold` failures in a row open the circuit.
 * open: no call goes through (the caller uses its fallback at once), for `openMs`.
 * half-open: one call (the probe) goes through; its success closes the circuit, its failure opens it again.
 * @example if (breaker.allow()) { try { await call(); breaker.success(); } catch { breaker.failure(); } }
 */
export class CircuitBreaker {
  private readonly failureThreshold: number;
  private readonly openMs: number;
  private readonly now: () => number;
  private current: BreakerState = 'closed';
  private failures = 0;
  private openedAt = 0;
  private probing = false;

  constructor(options: CircuitBreakerOptions = {}) {
    this.failureThreshold = options.failureThreshold ?? 3;
    this.openMs = options.openMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  get state(): BreakerState {
    return this.current;
  }

  /** Whether a call may go to the backend now. In half-open, only one caller at a time gets true. */
  allow(): boolean {
    if (this.current === 'closed') return true;
    if (this.current === 'open') {
      if (this.now() - this.openedAt < this.openMs) return false;
      this.current = 'half-open';
      this.probing = false;
    }
    if (this.probing) return false;
    this.probing = true;
    return true;
  }

  success(): void {
    this.current = 'closed';
    this.failures = 0;
    this.probing = false;
  }

  failure(): void {
    this.failures += 1;
    if (this.current === 'half-open' || this.failures >= this.failureThreshold) {
      this.current = 'open';
      this.openedAt = this.now();
      this.probing = false;
    }
  }
}
