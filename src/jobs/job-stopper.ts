// Stops running jobs for a reason of the gateway's (a running-time limit, a spent budget): the reason is written into the job, then ComfyUI interrupts it.

import type { Logger } from '../log/logger.js';
import type { JobError, JobRecord, JobStore } from '../store/types.js';

export interface JobStopperOptions {
  jobs: Pick<JobStore, 'update'>;
  /** Sends ComfyUI a targeted interrupt for the job (POST /api/interrupt {prompt_id} to its backend). */
  interrupt(job: JobRecord): Promise<void>;
  log: Logger;
}

/**
 * Stops jobs with errors of one exception type. The reason is written into the job before the
 * interrupt, so that whichever replica records the job's end, even after a restart, records it as
 * `error` with that reason; `ended` says so.
 */
export class JobStopper {
  private readonly options: JobStopperOptions;
  private readonly exceptionType: string;
  /** Jobs stopped here, with the error their end is recorded with. */
  private readonly stopped = new Map<string, JobError>();

  constructor(options: JobStopperOptions, exceptionType: string) {
    this.options = options;
    this.exceptionType = exceptionType;
  }

  /** Whether the job was stopped here already. */
  has(jobId: string): boolean {
    return this.stopped.has(jobId);
  }

  /** Writes the reason into the running job, then interrupts it in ComfyUI; a failure is logged. Harmless twice. */
  stop(job: JobRecord, message: string): void {
    const reason: JobError = { message, exception_type: this.exceptionType };
    this.stopped.set(job.id, reason);
    this.options.jobs
      .update(job.id, { error: reason }, { ifStatus: 'running' })
      .then(() => this.options.interrupt(job))
      .catch((error: unknown) => this.options.log.warn({ err: error, job_id: job.id }, `a job to stop (${this.exceptionType}) could not be interrupted`));
  }

  /** A job ended: the error to record when it was stopped here, or by another replica (its error has the exception type). */
  ended(job: JobRecord): JobError | undefined {
    const error = this.stopped.get(job.id) ?? (job.error?.exception_type === this.exceptionType ? job.error : undefined);
    this.stopped.delete(job.id);
    return error;
  }

  clear(): void {
    this.stopped.clear();
  }
}
