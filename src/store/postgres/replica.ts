// Keeping a table's in-memory replica fresh: notifications batched into one fetch, plus a periodic reload of what changed.

import type { PostgresDatabase } from './database.js';

/** How far back a reload looks before the newest change it saw, for transactions that committed late. */
export const RELOAD_OVERLAP_SECONDS = 60;

/** How soon a fetch or reload that failed is tried again. */
const RETRY_MS = 500;

export interface ReplicaFeedOptions<T> {
  database: PostgresDatabase;
  channel: string;
  /** The safety net: how often rows changed since the watermark are reloaded even without notifications. */
  reloadIntervalMs: number;
  /** Applies notification payloads; resolves once what they announced is in memory. */
  onPayloads(payloads: T[]): Promise<void>;
  /** Reloads rows whose `updated_at` is after `since` (Unix seconds, 0 for all); resolves the newest `updated_at` seen. */
  reloadSince(since: number): Promise<number | null>;
  /** Turns a notification's text into what `onPayloads` takes; null ignores it (default: the text as JSON, null when it is not JSON). */
  parse?(payload: string): T | null;
}

/**
 * Runs one table's freshness work, one step at a time: a burst of notifications becomes one fetch, and
 * every `reloadIntervalMs` (and after the LISTEN connection comes back) the rows changed since the
 * watermark, minus a margin, are read again. Failures are retried by the next notification or reload.
 */
export class ReplicaFeed<T> {
  private readonly options: ReplicaFeedOptions<T>;
  private queued: T[] = [];
  private reloadWanted = false;
  private running: Promise<void> | null = null;
  private watermark = 0;
  private timer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;

  constructor(options: ReplicaFeedOptions<T>) {
    this.options = options;
  }

  /**
   * Holds the database for its store, then listens and loads everything (so nothing changed between the
   * load and the LISTEN is missed). If that fails, lets go of both and rethrows.
   */
  async open(): Promise<void> {
    this.options.database.retain();
    try {
      await this.start();
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /** Stops and lets go of the database. */
  async close(): Promise<void> {
    this.stop();
    await this.options.database.release();
  }

  private async start(): Promise<void> {
    this.unsubscribe = await this.options.database.subscribe(
      this.options.channel,
      (payload) => {
        const parsed = this.options.parse ? this.options.parse(payload) : parseJsonOrNull<T>(payload);
        if (parsed === null) return;
        this.queued.push(parsed);
        void this.kick();
      },
      () => void this.requestReload(),
    );
    this.watermark = (await this.options.reloadSince(0)) ?? 0;
    this.timer = setInterval(() => void this.requestReload(), this.options.reloadIntervalMs).unref();
  }

  /** Asks for a reload of what changed since the watermark; resolves when it ran. */
  requestReload(): Promise<void> {
    this.reloadWanted = true;
    return this.kick();
  }

  /** Resolves when everything queued so far has been applied (or failed). */
  settled(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.timer = null;
    this.retryTimer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  private kick(): Promise<void> {
    this.running ??= this.drain().then(
      () => {
        this.running = null;
        if (this.queued.length > 0 || this.reloadWanted) void this.kick();
      },
      () => {
        // The database is away: try again shortly, without spinning.
        this.running = null;
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = null;
          if (this.timer) void this.kick();
        }, RETRY_MS).unref();
      },
    );
    return this.running;
  }

  private async drain(): Promise<void> {
    // Let a burst of notifications arrive before fetching once for all of them.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.queued.length > 0 || this.reloadWanted) {
      const payloads = this.queued;
      this.queued = [];
      try {
        if (payloads.length > 0) await this.options.onPayloads(payloads);
      } catch (error) {
        // What was announced is read again by the reload that follows.
        this.reloadWanted = true;
        throw error;
      }
      if (this.reloadWanted) {
        this.reloadWanted = false;
        try {
          const newest = await this.options.reloadSince(Math.max(0, this.watermark - RELOAD_OVERLAP_SECONDS));
          if (newest !== null && newest > this.watermark) this.watermark = newest;
        } catch (error) {
          this.reloadWanted = true;
          throw error;
        }
      }
    }
  }
}

function parseJsonOrNull<T>(payload: string): T | null {
  try {
    return JSON.parse(payload) as T;
  } catch {
    return null;
  }
}
