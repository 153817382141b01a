// Writes a PostgreSQL store made while the database could not be reached: kept in order, bounded, written once it answers again.

import { isConnectionError } from './database.js';

/** Writes a store keeps while the database is away; past this, writes fail as they would without the queue. */
export const MAX_DEFERRED_WRITES = 100_000;

/** How often queued writes are tried again. */
const RETRY_MS = 500;

export interface DeferredWritesOptions<W> {
  /**
   * Writes the oldest queued write. Rejecting with a connection error leaves it queued for the next try;
   * any other error drops it (it would be refused again forever). It may resolve a function, run once
   * the write has left the queue, that applies its outcome.
   */
  write(write: W): Promise<(() => void) | void>;
  /** The id a write concerns, so that `touches` can tell whether a write about an id is still queued. */
  idOf?(write: W): string;
  /** Writes kept at most (default `MAX_DEFERRED_WRITES`). */
  max?: number;
}

/**
 * A store's queue of writes made while the database could not be reached (the store has applied each
 * to its memory already). They are written in order, one at a time, every 500 ms until none is left,
 * or at once by `flush`.
 */
export class DeferredWrites<W> {
  private readonly options: DeferredWritesOptions<W>;
  private readonly max: number;
  private queue: W[] = [];
  /** How many queued writes concern each id. */
  private readonly counts = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(options: DeferredWritesOptions<W>) {
    this.options = options;
    this.max = options.max ?? MAX_DEFERRED_WRITES;
  }

  /** Writes queued and not written yet. */
  get size(): number {
    return this.queue.length;
  }

  /** The queued writes, oldest first. */
  get writes(): readonly W[] {
    return this.queue;
  }

  /** Whether a write that failed with `error` may be queued: the database could not be reached, and the queue has room. */
  accepts(error: unknown): boolean {
    return isConnectionError(error) && this.queue.length < this.max;
  }

  /** Queues a write (after `accepts` said yes). */
  push(write: W): void {
    this.queue.push(write);
    this.count(write, 1);
    this.timer ??= setInterval(() => {
      if (this.queue.length === 0) {
        clearInterval(this.timer!);
        this.timer = null;
        return;
      }
      void this.flush().catch(() => undefined);
    }, RETRY_MS).unref();
  }

  /** Whether a queued write concerns `id`. */
  touches(id: string): boolean {
    return this.counts.has(id);
  }

  /** Takes the writes `drop` selects out of the queue, asked in order; resolves them. */
  removeWhere(drop: (write: W) => boolean): W[] {
    const removed: W[] = [];
    this.queue = this.queue.filter((write) => {
      if (!drop(write)) return true;
      removed.push(write);
      this.count(write, -1);
      return false;
    });
    return removed;
  }

  /** Writes the queued writes, in order; rejects with the connection error of the first that could not be written. */
  flush(): Promise<void> {
    this.flushing ??= (async () => {
      try {
        while (this.queue.length > 0) {
          const write = this.queue[0]!;
          let settle: (() => void) | void = undefined;
          try {
            settle = await this.options.write(write);
          } catch (error) {
            if (isConnectionError(error)) throw error;
          }
          this.queue.shift();
          this.count(write, -1);
          settle?.();
        }
      } finally {
        this.flushing = null;
      }
    })();
    return this.flushing;
  }

  /** Stops retrying, after one last try to write what is queued. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.queue.length > 0) await this.flush().catch(() => undefined);
  }

  private count(write: W, step: number): void {
    const id = this.options.idOf?.(write);
    if (id === undefined) return;
    const n = (this.counts.get(id) ?? 0) + step;
    if (n > 0) this.counts.set(id, n);
    else this.counts.delete(id);
  }
}
