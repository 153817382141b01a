// daily_execution_seconds while jobs run: a key's running jobs are interrupted once its day's execution seconds, theirs included, reach its budget.

import type { Logger } from '../log/logger.js';
import type { JobError, JobRecord, JobStore, KeyRecord } from '../store/types.js';
import { JobStopper } from './job-stopper.js';

export interface DailyBudgetsOptions {
  jobs: Pick<JobStore, 'list' | 'active' | 'update'>;
  keyOf(keyId: string): KeyRecord | undefined;
  /** The key's metered execution seconds (jobs ended) on the UTC day of `now`. */
  executionSecondsToday(keyId: string, now: number): number;
  /** Sends ComfyUI a targeted interrupt for the job (POST /api/interrupt {prompt_id} to its backend). */
  interrupt(job: JobRecord): Promise<void>;
  log: Logger;
  /** Unix seconds (fractions kept). */
  now?(): number;
}

/** How often every running job is looked at: jobs started on another replica, and metering done there. */
const SWEEP_INTERVAL_MS = 30_000;
/** Running jobs of one key read at most (ComfyUI runs one prompt at a time, so a key has at most one per backend). */
const MAX_RUNNING_READ = 1000;

/**
 * Watches the keys with a `daily_execution_seconds` that have jobs running. For each, what is left of
 * the day's budget (the budget, less the seconds metered today, less what the running jobs ran so
 * far) is shared by the running jobs, which spend it together: a timer fires when it is spent, and
 * then each of the key's running jobs is interrupted in ComfyUI and ends as `error` with the budget as
 * its reason (written into the job first, so that whichever replica records the end records it so).
 * The timer is set again when one of the key's jobs starts or is metered, and every 30 s for jobs that
 * started or ended on another replica. A job of the key that starts once the budget is spent (one
 * that was queued already) is interrupted at once.
 */
export class DailyBudgets {
  private readonly options: DailyBudgetsOptions;
  private readonly now: () => number;
  /** Per key, the timer of the moment its budget is spent. */
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Stops the jobs of a key whose budget is spent, with the exception type `ExecutionBudgetExceeded`. */
  private readonly stopper: JobStopper;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(options: DailyBudgetsOptions) {
    this.options = options;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.stopper = new JobStopper(options, 'ExecutionBudgetExceeded');
  }

  /** A job started running in ComfyUI: its key's running jobs now share what is left. */
  started(job: JobRecord): void {
    this.watch(job.key_id);
  }

  /** A job ended: returns the error to record when the gateway (this replica or another) stopped it for its key's spent budget. */
  ended(job: JobRecord): JobError | undefined {
    return this.stopper.ended(job);
  }

  /** A job of the key was metered: what is left is shared again. */
  metered(keyId: string): void {
    this.watch(keyId);
  }

  /** Watches the keys of every job running now, and again every 30 s. */
  start(): void {
    this.sweep();
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  /** Disarms every timer. */
  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.stopper.clear();
  }

  private sweep(): void {
    for (const keyId of new Set(this.options.jobs.active(['running']).map((job) => job.key_id))) this.watch(keyId);
  }

  /** Sets the key's timer for the moment its running jobs will have spent its budget (none without a budget or a running job). */
  private watch(keyId: string): void {
    clearTimeout(this.timers.get(keyId));
    this.timers.delete(keyId);
    const left = this.secondsLeft(keyId);
    if (left === undefined) return;
    const timer = setTimeout(() => this.expire(keyId), Math.max(0, left.perJob) * 1000);
    timer.unref();
    this.timers.set(keyId, timer);
  }

  /** What is left of the key's budget now, and how long its running jobs take to spend it; undefined without a budget or a running job. */
  private secondsLeft(keyId: string): { jobs: JobRecord[]; perJob: number } | undefined {
    const budget = this.options.keyOf(keyId)?.daily_execution_seconds ?? null;
    if (budget === null) return undefined;
    const jobs = this.options.jobs.list({ keyId, statuses: ['running'], offset: 0, limit: MAX_RUNNING_READ });
    if (jobs.length === 0) return undefined;
    const now = this.now();
    const running = jobs.reduce((sum, job) => sum + Math.max(0, now - (job.started_at ?? now)), 0);
    return { jobs, perJob: (budget - this.options.executionSecondsToday(keyId, now) - running) / jobs.length };
  }

  private expire(keyId: string): void {
    this.timers.delete(keyId);
    const left = this.secondsLeft(keyId);
    if (left === undefined) return;
    // Jobs that ended meanwhile (metered elsewhere) may have left more: wait for it.
    if (left.perJob > 0.05) return this.watch(keyId);
    const budget = this.options.keyOf(keyId)?.daily_execution_seconds;
    // A job stopped already is stopped again (each sweep finds it running until ComfyUI stops it): harmless twice.
    for (const job of left.jobs) {
      if (!this.stopper.has(job.id))
        this.options.log.info({ job_id: job.id, key_id: keyId, backend: job.backend, budget }, 'job interrupted: its key spent its daily_execution_seconds');
      this.stopper.stop(job, `The key's daily_execution_seconds (${budget} seconds per UTC day) is spent; the gateway interrupted the job.`);
    }
  }
}
