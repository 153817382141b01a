// Sliding-window request counters in this process's memory.

import type { CounterStore, HitResult } from '../types.js';

/** The start times of the requests counted in the window, oldest first, with a moving head. */
interface Window {
  times: number[];
  head: number;
}

/**
 * An exact sliding window: a request is allowed when fewer than `limit` requests were counted in the
 * `windowSeconds` before it, so no burst is possible at any boundary. Memory per key is bounded by its
 * limit. `hit` is synchronous inside, so concurrent requests are counted exactly.
 */
export class MemoryCounterStore implements CounterStore {
  private readonly windows = new Map<string, Window>();
  private readonly windowSeconds: number;

  constructor(windowSeconds = 3600) {
    this.windowSeconds = windowSeconds;
  }

  hit(keyId: string, limit: number, now: number): Promise<HitResult> {
    return Promise.resolve(this.hitNow(keyId, limit, now));
  }

  /** The synchronous step behind `hit`. */
  hitNow(keyId: string, limit: number, now: number): HitResult {
    let window = this.windows.get(keyId);
    if (!window) {
      window = { times: [], head: 0 };
      this.windows.set(keyId, window);
    }
    const since = now - this.windowSeconds;
    const { times } = window;
    while (window.head < times.length && times[window.head]! <= since) window.head += 1;
    if (window.head > 1024 && window.head * 2 > times.length) {
      times.splice(0, window.head);
      window.head = 0;
    }
    const counted = times.length - window.head;
    const allowed = counted < limit;
    if (allowed) times.push(now);
    const oldest = window.head < times.length ? times[window.head]! : now;
    return {
      allowed,
      limit,
      remaining: Math.max(0, limit - counted - (allowed ? 1 : 0)),
      resetAt: oldest + this.windowSeconds,
    };
  }

  restore(times: Map<string, number[]>, now: number): void {
    const since = now - this.windowSeconds;
    for (const [keyId, starts] of times) {
      const kept = starts.filter((t) => t > since).sort((a, b) => a - b);
      if (kept.length > 0) this.windows.set(keyId, { times: kept, head: 0 });
    }
  }

  close(): Promise<void> {
    this.windows.clear();
    return Promise.resolve();
  }
}
