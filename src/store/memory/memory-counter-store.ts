// Sliding-window request counters in this process's memory.

import type { CounterStore, HitResult } from '../types.js';

/** The start times of the requests counted in the window, oldest first, with a moving head. */
interface Window {
  times: number[];
  head: number;
}

/** How often, in seconds of request time, the windows of keys idle for a whole window are dropped. */
const SWEEP_INTERVAL_SECONDS = 60;

/**
 * An exact sliding window: a request is allowed when fewer than `limit` requests were counted in the
 * `windowSeconds` before it, so no burst is possible at any boundary. Memory per key is bounded by its
 * limit, and a key idle for a whole window has none. `hit` is synchronous, so concurrent
 * requests are counted exactly.
 */
export class MemoryCounterStore implements CounterStore {
  private readonly windows = new Map<string, Window>();
  private readonly windowSeconds: number;
  private lastSweep = -Infinity;

  constructor(windowSeconds = 3600) {
    this.windowSeconds = windowSeconds;
  }

  hit(keyId: string, limit: number, now: number): HitResult {
    if (now - this.lastSweep >= SWEEP_INTERVAL_SECONDS) this.dropIdleWindows(now);
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
    for (const [keyId, starts] of times) this.merge(keyId, starts, now);
  }

  /**
   * Adds requests known from elsewhere (start times) to a key's window, each time counted once: a time
   * already in the window, as often as it is there, is the same request (recorded with the time it was
   * counted at), so only the times beyond it are added.
   */
  merge(keyId: string, starts: number[], now: number): void {
    const since = now - this.windowSeconds;
    const known = this.windows.get(keyId);
    const mine = known
      ? known.times
          .slice(known.head)
          .filter((t) => t > since)
          .sort((a, b) => a - b)
      : [];
    const theirs = starts.filter((t) => t > since).sort((a, b) => a - b);
    const merged: number[] = [];
    let i = 0;
    let j = 0;
    while (i < mine.length || j < theirs.length) {
      if (j === theirs.length || (i < mine.length && mine[i]! < theirs[j]!)) merged.push(mine[i++]!);
      else if (i === mine.length || theirs[j]! < mine[i]!) merged.push(theirs[j++]!);
      else {
        merged.push(mine[i++]!);
        j += 1;
      }
    }
    if (merged.length > 0) this.windows.set(keyId, { times: merged, head: 0 });
  }

  /** Keys with a window in memory: those with a request counted in the last window. */
  trackedKeys(): number {
    return this.windows.size;
  }

  /** Drops the windows whose every request has left them: to an exact window, that is the same as none. */
  private dropIdleWindows(now: number): void {
    this.lastSweep = now;
    const since = now - this.windowSeconds;
    for (const [keyId, { times }] of this.windows) if (times.length === 0 || times[times.length - 1]! <= since) this.windows.delete(keyId);
  }

  close(): Promise<void> {
    this.windows.clear();
    return Promise.resolve();
  }
}
