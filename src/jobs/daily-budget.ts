// daily_execution_seconds while jobs run: once a key's day's execution seconds, its running jobs' included, reach its budget, its jobs queued in ComfyUI are deleted there and its running jobs interrupted.

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
  /**
   * Takes jobs queued on the backend (sent, not started) out of its ComfyUI queue and ends them with
   * `error` (JobService.dropQueued); resolves once ComfyUI answered the delete.
   */
  dropQueued(backend: string, jobs: readonly JobRecord[], error: JobError): Promise<void>;
  log: Logger;
  /** Unix seconds (fractions kept). */
  now?(): number;
}

/** The exception type of the jobs the budget stops or ends before they run. */
const BUDGET_EXCEPTION = 'ExecutionBudgetExceeded';
/** How often every running and queued job is looked at: jobs started on another replica, and metering done there. */
const SWEEP_INTERVAL_MS = 30_000;
/** Jobs of one key read at most, running (ComfyUI runs one prompt at a time, so a key has at most one per backend) or queued in ComfyUI (at most `--upstream-queue-depth` per backend). */
const MAX_JOBS_READ = 1000;
/** What may be left of a budget, per running job, for it to count as spent (a timer fires a little early or late). */
const SPENT_WITHIN_SECONDS = 0.05;

/** The error of a job that ends without running because its key's budget was spent before it started (held in the gateway, or queued in ComfyUI). */
export function budgetSpentBeforeStart(budget: number | null): JobError {
  return {
    message: `The key's daily_execution_seconds (${budget} seconds per UTC day) was spent before the job started; it was not run.`,
    exception_type: BUDGET_EXCEPTION,
  };
}

/**
 * Watches the keys with a `daily_execution_seconds` that have jobs running. For each, what is left of
 * the day's budget (the budget, less the seconds metered today, less what the running jobs ran so
 * far) is shared by the running jobs, which spend it together: a timer fires when it is spent. Then
 * the key's jobs queued in ComfyUI that have not started are deleted from its queue (each from its own
 * backend's) and end as `error` without running, and only after that delete is answered is each of the
 * key's running jobs on that backend interrupted in ComfyUI (so that ComfyUI does not start the next
 * one meanwhile); they end as `error` with the budget as their reason (written into the job first, so
 * that whichever replica records the end records it so). The timer is set again when one of the key's
 * jobs starts or is metered, and every 30 s (and by `sweep`) for jobs that started or ended on another
 * replica. A key whose budget is spent with none of its jobs running has its queued jobs taken out the
 * same way when one of its jobs is metered and at each sweep, and a job whose POST /prompt was on its
 * way once ComfyUI answers it (`sent`). A queued job that started before the delete reached ComfyUI, or
 * that a failed delete left there, is interrupted at once.
 */
export class DailyBudgets {
  private readonly options: DailyBudgetsOptions;
  private readonly now: () => number;
  /** Per key, the timer of the moment its budget is spent. */
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Stops the jobs of a key whose budget is spent, with the exception type `ExecutionBudgetExceeded`. */
  private readonly stopper: JobStopper;
  /**
   * Jobs of keys with a budget whose end is being recorded and that are not metered yet, with the seconds
   * they ran: they count against the budget until they are (their end is in the registry a moment before).
   */
  private readonly unmetered = new Map<string, { keyId: string; seconds: number; endedAt: number }>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(options: DailyBudgetsOptions) {
    this.options = options;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.stopper = new JobStopper(options, BUDGET_EXCEPTION);
  }

  /** A job started running in ComfyUI: its key's running jobs now share what is left. */
  started(job: JobRecord): void {
    this.watch(job.key_id);
  }

  /** A job ended: returns the error to record when the gateway (this replica or another) stopped it for its key's spent budget. */
  ended(job: JobRecord): JobError | undefined {
    const now = this.now();
    if (job.started_at !== null && this.options.keyOf(job.key_id)?.daily_execution_seconds != null)
      this.unmetered.set(job.id, { keyId: job.key_id, seconds: Math.max(0, now - job.started_at), endedAt: now });
    return this.stopper.ended(job);
  }

  /**
   * A job's POST /prompt to ComfyUI was answered and the job recorded as sent. When its key's budget was
   * spent while the prompt was on its way, the sweep could not take it out of ComfyUI's queue (it had no
   * ComfyUI id yet, or, sent without being held, was not in the registry): it is taken out now, as the
   * key's other queued jobs were, rather than left to start and be interrupted at once.
   */
  sent(job: JobRecord): void {
    const budget = this.options.keyOf(job.key_id)?.daily_execution_seconds ?? null;
    if (budget !== null && this.spent(job.key_id)) this.dropQueued(job.key_id, budget);
  }

  /** A job was metered: what is left of its key's budget is shared again. */
  metered(job: JobRecord): void {
    this.unmetered.delete(job.id);
    this.watch(job.key_id);
  }

  /** Whether the key's budget is spent: the seconds metered today and those its running jobs have run so far reach it. */
  spent(keyId: string): boolean {
    const left = this.secondsLeft(keyId);
    return left !== undefined && left.perJob <= SPENT_WITHIN_SECONDS;
  }

  /** Watches the keys of every job running or queued now, and again every 30 s. */
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
    this.unmetered.clear();
  }

  /** Watches the keys of every job running or queued in ComfyUI now: every 30 s, and once a backend's event socket is back (an interrupt due while it was down was not sent). */
  sweep(): void {
    // A job whose end could not be written is never metered: it stops counting here.
    for (const [jobId, { endedAt }] of this.unmetered) if (endedAt < this.now() - SWEEP_INTERVAL_MS / 1000) this.unmetered.delete(jobId);
    for (const keyId of new Set(this.options.jobs.active(['running', 'queued']).map((job) => job.key_id))) this.watch(keyId);
  }

  /**
   * Sets the key's timer for the moment its running jobs will have spent its budget (none without a
   * budget or a running job); takes its queued jobs out of ComfyUI when the budget is spent and none runs.
   */
  private watch(keyId: string): void {
    clearTimeout(this.timers.get(keyId));
    this.timers.delete(keyId);
    const left = this.secondsLeft(keyId);
    if (left === undefined) return;
    if (left.running.length === 0) {
      if (left.perJob <= SPENT_WITHIN_SECONDS) this.dropQueued(keyId, left.budget);
      return;
    }
    const timer = setTimeout(() => this.expire(keyId), Math.max(0, left.perJob) * 1000);
    timer.unref();
    this.timers.set(keyId, timer);
  }

  /**
   * What is left of the key's budget now (less what its running jobs and its jobs ended but not metered yet
   * ran), shared by its running jobs (all of it for one job when none runs); undefined without a budget.
   */
  private secondsLeft(keyId: string): { budget: number; running: JobRecord[]; perJob: number } | undefined {
    const budget = this.options.keyOf(keyId)?.daily_execution_seconds ?? null;
    if (budget === null) return undefined;
    const running = this.options.jobs.list({ keyId, statuses: ['running'], offset: 0, limit: MAX_JOBS_READ }).filter((job) => !this.unmetered.has(job.id));
    const now = this.now();
    let ran = running.reduce((sum, job) => sum + Math.max(0, now - (job.started_at ?? now)), 0);
    for (const ended of this.unmetered.values()) if (ended.keyId === keyId) ran += ended.seconds;
    return { budget, running, perJob: (budget - this.options.executionSecondsToday(keyId, now) - ran) / Math.max(1, running.length) };
  }

  private expire(keyId: string): void {
    this.timers.delete(keyId);
    const left = this.secondsLeft(keyId);
    if (left === undefined) return;
    // Jobs that ended meanwhile (metered elsewhere) may have left more: wait for it.
    if (left.running.length === 0 || left.perJob > SPENT_WITHIN_SECONDS) return this.watch(keyId);
    const dropped = this.dropQueued(keyId, left.budget);
    // A job stopped already is stopped again (each sweep finds it running until ComfyUI stops it): harmless twice.
    for (const job of left.running) {
      if (!this.stopper.has(job.id))
        this.options.log.info(
          { job_id: job.id, key_id: keyId, backend: job.backend, budget: left.budget },
          'job interrupted: its key spent its daily_execution_seconds',
        );
      const message = `The key's daily_execution_seconds (${left.budget} seconds per UTC day) is spent; the gateway interrupted the job.`;
      void (dropped.get(job.backend) ?? Promise.resolve()).then(() => this.stopper.stop(job, message));
    }
  }

  /**
   * Takes the key's jobs queued in ComfyUI, not started and not taken out already, out of their backends'
   * queues (see DailyBudgetsOptions.dropQueued); returns, per backend, the promise of its delete's answer.
   */
  private dropQueued(keyId: string, budget: number): Map<string, Promise<void>> {
    const queued = this.options.jobs
      .list({ keyId, statuses: ['queued'], offset: 0, limit: MAX_JOBS_READ })
      .filter((job) => job.upstream_id !== null && job.error?.exception_type !== BUDGET_EXCEPTION);
    const byBackend = new Map<string, JobRecord[]>();
    for (const job of queued) byBackend.set(job.backend, [...(byBackend.get(job.backend) ?? []), job]);
    const error = budgetSpentBeforeStart(budget);
    const deletes = new Map<string, Promise<void>>();
    for (const [backend, jobs] of byBackend) {
      this.options.log.info(
        { key_id: keyId, backend, jobs: jobs.map((job) => job.id), budget },
        "jobs taken out of ComfyUI's queue: their key spent its daily_execution_seconds",
      );
      deletes.set(
        backend,
        this.options
          .dropQueued(backend, jobs, error)
          .catch((failure: unknown) =>
            this.options.log.warn({ err: failure, key_id: keyId, backend }, "jobs over their key's budget could not be taken out of ComfyUI"),
          ),
      );
    }
    return deletes;
  }
}
