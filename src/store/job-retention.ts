// Forgets finished jobs once they are older than the retention: in batches, in the background, never an active job.

/** How long a finished job is kept by default (`--job-retention-days 30`). */
export const DEFAULT_JOB_RETENTION_SECONDS = 30 * 86_400;

/** Jobs forgotten in one write, so that no write waits on a large delete. */
export const JOB_FORGET_BATCH = 1000;

const DEFAULT_SWEEP_INTERVAL_MS = 60_000;

export interface JobRetentionOptions {
  /** Seconds a job is kept after it finished (default `DEFAULT_JOB_RETENTION_SECONDS`). */
  retentionSeconds?: number;
  /** How often jobs past the retention are looked for, in milliseconds (default 60 s). */
  sweepIntervalMs?: number;
}

/**
 * Runs a store's `forgetBatch` on a timer (unref'd, so it never keeps the process alive), once at
 * start and then every `sweepIntervalMs`, batch after batch until a batch comes back short. Sweeps never
 * overlap; a sweep that fails is tried again at the next tick.
 */
export class JobSweeper {
  readonly retentionSeconds: number;
  private readonly intervalMs: number;
  private readonly forgetBatch: (cutoff: number, limit: number) => Promise<number>;
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;

  /** `forgetBatch` forgets up to `limit` finished jobs that finished before `cutoff` (Unix seconds) and resolves how many it found. */
  constructor(options: JobRetentionOptions, forgetBatch: (cutoff: number, limit: number) => Promise<number>) {
    this.retentionSeconds = options.retentionSeconds ?? DEFAULT_JOB_RETENTION_SECONDS;
    this.intervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.forgetBatch = forgetBatch;
  }

  start(): void {
    this.timer = setInterval(() => void this.sweep(), this.intervalMs).unref();
    void this.sweep();
  }

  /** Stops the timer and waits for the sweep in progress, if any. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.sweeping;
  }

  private sweep(): Promise<void> {
    this.sweeping ??= (async () => {
      try {
        const cutoff = Date.now() / 1000 - this.retentionSeconds;
        let forgotten: number;
        do forgotten = await this.forgetBatch(cutoff, JOB_FORGET_BATCH);
        while (this.timer && forgotten >= JOB_FORGET_BATCH);
      } catch {
        // A write that failed (a full disk, the database away): the next tick tries again.
      } finally {
        this.sweeping = null;
      }
    })();
    return this.sweeping;
  }
}
