// The gateway's copy of ComfyUI's catalog answers (node definitions, model lists, embeddings): kept a short while for every caller, dropped when a backend restarts.

import type { UpstreamAnswer } from '../proxy/http.js';

export interface CatalogCacheLimits {
  /** Answers kept at most. */
  maxEntries: number;
  /** Bytes of kept answers (bodies and headers) at most. */
  maxBytes: number;
  /** How long an answer is kept. */
  ttlMs: number;
}

/** The gateway's limits: 64 answers, 64 MiB, one minute. */
export const CATALOG_CACHE_LIMITS: CatalogCacheLimits = { maxEntries: 64, maxBytes: 64 * 1024 * 1024, ttlMs: 60_000 };

interface Entry {
  answer: UpstreamAnswer;
  bytes: number;
  expiresAt: number;
}

/**
 * 200 answers by request target, the least recently used dropped first past the limits. Concurrent misses
 * of one target share one load. `clear` drops everything, and a load that began before it is not kept.
 */
export class CatalogCache {
  private readonly limits: CatalogCacheLimits;
  private readonly now: () => number;
  /** In order of use, the least recent first. */
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<UpstreamAnswer>>();
  private bytes = 0;
  /** Counts the clears, so that a load can tell whether one happened while it ran. */
  private generation = 0;

  constructor(limits: CatalogCacheLimits, now: () => number = Date.now) {
    this.limits = limits;
    this.now = now;
  }

  /** The kept answer for `target` while it is fresh; else `load`'s (one at a time per target), kept when it is a 200. */
  get(target: string, load: () => Promise<UpstreamAnswer>): Promise<UpstreamAnswer> {
    const entry = this.entries.get(target);
    if (entry) {
      this.remove(target, entry);
      if (entry.expiresAt > this.now()) {
        this.add(target, entry);
        return Promise.resolve(entry.answer);
      }
    }
    const pending = this.loading.get(target);
    if (pending) return pending;
    const generation = this.generation;
    const loaded: Promise<UpstreamAnswer> = load()
      .then((answer) => {
        if (generation === this.generation) this.keep(target, answer);
        return answer;
      })
      .finally(() => {
        if (this.loading.get(target) === loaded) this.loading.delete(target);
      });
    this.loading.set(target, loaded);
    return loaded;
  }

  /** Drops every answer (a backend restarted or came up: its nodes and models may have changed). */
  clear(): void {
    this.entries.clear();
    this.loading.clear();
    this.bytes = 0;
    this.generation += 1;
  }

  private keep(target: string, answer: UpstreamAnswer): void {
    if (answer.status !== 200) return;
    const bytes = answer.body.length + JSON.stringify(answer.headers).length + target.length;
    if (bytes > this.limits.maxBytes) return;
    const former = this.entries.get(target);
    if (former) this.remove(target, former);
    this.add(target, { answer, bytes, expiresAt: this.now() + this.limits.ttlMs });
    for (const [oldest, entry] of this.entries) {
      if (this.entries.size <= this.limits.maxEntries && this.bytes <= this.limits.maxBytes) break;
      this.remove(oldest, entry);
    }
  }

  private add(target: string, entry: Entry): void {
    this.entries.set(target, entry);
    this.bytes += entry.bytes;
  }

  private remove(target: string, entry: Entry): void {
    this.entries.delete(target);
    this.bytes -= entry.bytes;
  }
}
