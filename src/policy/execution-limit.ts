// max_execution_seconds: a timer per running job of a key whose policy sets it; past it, the job is interrupted in ComfyUI and ends as error.

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

/**
 * Watches the running time of jobs. `started` arms a timer when the job's key has a
 * `max_execution_seconds` (its own policy, or the default one for a user key, read when the job
 * starts); `ended` disarms it and tells whether the job was stopped for running too long. A job still
 * running when its timer fires is interrupted in ComfyUI, and its end is recorded as `error` with the
 * policy limit as the reason (whether ComfyUI then reports it interrupted or failed; one that
 * finished successfully before the interrupt took effect keeps its success).
 */
export class ExecutionLimits {
  private readonly options: ExecutionLimitsOptions;
  private readonly now: () => number;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Jobs interrupted for running too long, with the error their end is recorded with. */
  private readonly overdue = new Map<string, JobError>();

  constructor(options: ExecutionLimitsOptions) {
    this.options = options;
    this.now = options.now ?? (() => Date.now() / 1000);
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

  /** A job ended: its timer is disarmed. Returns the error to record when the gateway stopped it for running too long. */
  ended(jobId: string): JobError | undefined {
    const timer = this.timers.get(jobId);
    if (timer) clearTimeout(timer);
    this.timers.delete(jobId);
    const error = this.overdue.get(jobId);
    this.overdue.delete(jobId);
    return error;
  }

  /** Disarms every timer. */
  close(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.overdue.clear();
  }

  private expire(jobId: string, limit: number): void {
    this.timers.delete(jobId);
    const job = this.options.jobs.get(jobId);
    if (job?.status !== 'running') return;
    this.overdue.set(jobId, {
      message: `The job ran longer than the ${limit} seconds its key's prompt policy allows (max_execution_seconds); the gateway interrupted it.`,
      exception_type: 'ExecutionTimeLimit',
    });
    this.options.log.info({ job_id: jobId, key_id: job.key_id, backend: job.backend, limit }, 'job interrupted: past its max_execution_seconds');
    this.options
      .interrupt(job)
      .catch((error: unknown) => this.options.log.warn({ err: error, job_id: jobId }, 'a job past its max_execution_seconds could not be interrupted'));
  }
}
