// Writes what ComfyUI reports of a job into its record: when it started, the files it made, how it ended and its execution seconds.

import { fileId, outputFiles } from '../isolation/files.js';
import type { Logger } from '../log/logger.js';
import type { JobObserver } from '../events/event-hub.js';
import type { ExecutionLimits } from '../policy/execution-limit.js';
import type { JobRecord, JobStatus, JobStore, OwnershipStore } from '../store/types.js';

export interface JobRecorderOptions {
  jobs: JobStore;
  ownership: OwnershipStore;
  log: Logger;
  /** Told once a job has ended with its final record (metering, the scheduler). */
  onEnded(job: JobRecord): void;
  /** Running-time limits (`max_execution_seconds`): told of each start and end; a job it stopped ends as `error`. */
  limits?: Pick<ExecutionLimits, 'started' | 'ended'>;
}

/** Statuses a job no longer leaves. */
const FINAL: ReadonlySet<JobStatus> = new Set(['success', 'error', 'interrupted', 'cancelled']);

/**
 * The hub's observer. Changes to one job are written one after another, in the order ComfyUI sent
 * them; the files a job made become its key's (so `/view` and loader nodes accept them) as they appear.
 */
export function createJobRecorder(options: JobRecorderOptions): JobObserver {
  const { jobs, ownership, log } = options;
  const chains = new Map<string, Promise<void>>();

  /** Runs `change` after the job's earlier changes; a failed write is logged, never thrown. */
  function inTurn(jobId: string, change: (job: JobRecord) => Promise<unknown>): void {
    const previous = chains.get(jobId) ?? Promise.resolve();
    const next = previous
      .then(async () => {
        const job = jobs.get(jobId);
        if (job && !FINAL.has(job.status)) await change(job);
      })
      .catch((error: unknown) => log.warn({ err: error, job_id: jobId }, 'a job event could not be recorded'))
      .finally(() => {
        if (chains.get(jobId) === next) chains.delete(jobId);
      });
    chains.set(jobId, next);
  }

  return {
    started(jobId, at) {
      // A job that ran is not sent again: the request kept for that is let go.
      inTurn(jobId, async (job) => {
        const running = await jobs.update(job.id, { status: 'running', started_at: at, request: null });
        if (running?.status === 'running') options.limits?.started(running);
      });
    },
    executed(jobId, node, output) {
      const files = outputFiles(output);
      if (files.length === 0) return;
      inTurn(jobId, async (job) => {
        await Promise.all(files.map((file) => ownership.claim('file', fileId(file.type, file.subfolder, file.filename), job.key_id).catch(() => undefined)));
        await jobs.update(job.id, { outputs: [...job.outputs, ...files.map((file) => ({ node, ...file }))] });
      });
    },
    ended(jobId, outcome, at, error) {
      inTurn(jobId, async (job) => {
        const seconds = job.started_at === null ? 0 : Math.max(0, at - job.started_at);
        // A job the gateway stopped for running too long ends as error with that reason (one that still succeeded keeps its success).
        const overdue = options.limits?.ended(job);
        const stopped = outcome === 'success' ? undefined : overdue;
        const ended = await jobs.update(job.id, {
          status: stopped ? 'error' : outcome,
          finished_at: at,
          execution_seconds: seconds,
          error: stopped ?? error,
          request: null,
        });
        if (ended) options.onEnded(ended);
      });
    },
  };
}
