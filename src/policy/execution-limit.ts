// max_execution_seconds: a timer per running job of a key whose policy sets it; past it, the job is interrupted in ComfyUI and ends as error.

import { JobStopper } from '../jobs/job-stopper.js';
import type { Logger } from '../log/logger.js';
import type { JobError, JobRecord, JobStore, KeyRecord } from '../store/types.js';
import { effectivePolicy } from './check.js';
import type { PromptPolicy } from './schema.js';

export interface ExecutionLimitsOptions {
  jobs: JobStore;
  keyOf(keyId: string): KeyRecord | undefined;
  /** The prompt policy of user keys without one of their own. */
  defaultPolicy: PromptPolicy | null;
  /** Sends ComfyUI a targeted interrupt for the job (POST /api/interrupt {prompt_id} to its backend). */
  interrupt(job: JobRecord): Promise<void>;
  log: Logger;
  /** Unix seconds (fractions kept). */
  now?(): number;
}

/** How often every running job of the registry is looked at, to arm the timers of jobs started before a restart or on another replica. */
const SWEEP_INTERVAL_MS = 30_000;

/**
 * Watches the running time of jobs. `started` arms a timer when the job's key has a
 * `max_execution_seconds` (its own policy, or the default one for a user key, read when the job
 * starts); `ended` disarms it and tells whether the job was stopped for running too long. A job still
 * running when its timer fires is interrupted in ComfyUI, and its end is recorded as `error` with the
 * policy limit as the reason (whether ComfyUI then reports it interrupted or failed; one that
 * finished successfully before the interrupt took effect keeps its success). The reason is written
 * into the job before the interrupt, so whichever replica records the job's end, even after a
 * restart, records it as `error`. `start` arms the timers of every job already running (a restart,
 * another replica's jobs) and looks again every 30 s; each replica then interrupts an overdue job,
 * which is harmless twice.
 */
export class ExecutionLimits {
  private readonly options: ExecutionLimitsOptions;
  private readonly now: () => number;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Stops a job that runs too long, with the exception type `ExecutionTimeLimit`. */
  private readonly stopper: JobStopper;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(options: ExecutionLimitsOptions) {
    this.options = options;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.stopper = new JobStopper(options, 'ExecutionTimeLimit');
  }

  /** A job started running in ComfyUI (`started_at` set): arms its timer when its key's policy limits its time. */
  started(job: JobRecord): void {
    const key = this.options.keyOf(job.key_id);
    const limit = key ? effectivePolicy(key, this.options.defaultPolicy)?.max_execution_seconds : undefined;
    if (limit === undefined || this.timers.has(job.id)) return;
    const ranMs = Math.max(0, this.now() - (job.started_at ?? this.now())) * 1000;
    const timer = setTimeout(() => this.expire(job.id, limit), Math.max(0, limit * 1000 - ranMs));
    timer.unref();
    this.timers.set(job.id, timer);
  }

  /** Arms the timer of every job running now, and again every 30 s for jobs that started elsewhere. */
  start(): void {
    this.sweep();
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  /** A job ended: its timer is disarmed. Returns the error to record when the gateway (this replica or another) stopped it for running too long. */
  ended(job: JobRecord): JobError | undefined {
    const timer = this.timers.get(job.id);
    if (timer) clearTimeout(timer);
    this.timers.delete(job.id);
    return this.stopper.ended(job);
  }

  /** Disarms every timer. */
  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.stopper.clear();
  }

  /** Arms the timer of every job running now whose timer is not armed: every 30 s, and once a backend's event socket is back (an interrupt due while it was down was not sent). */
  sweep(): void {
    for (const job of this.options.jobs.active(['running'])) this.started(job);
  }

  private expire(jobId: string, limit: number): void {
    this.timers.delete(jobId);
    const job = this.options.jobs.get(jobId);
    if (job?.status !== 'running') return;
    this.options.log.info({ job_id: jobId, key_id: job.key_id, backend: job.backend, limit }, 'job interrupted: past its max_execution_seconds');
    this.stopper.stop(job, `The job ran longer than the ${limit} seconds its key's prompt policy allows (max_execution_seconds); the gateway interrupted it.`);
  }
}
