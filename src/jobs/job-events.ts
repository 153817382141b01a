// Writes what ComfyUI reports of a job into its record: when it started, the files it made, how it ended and its execution seconds.

import type { EarlierFileCheck } from '../isolation/cached-outputs.js';
import { fileId, outputFiles } from '../isolation/files.js';
import type { Logger } from '../log/logger.js';
import type { JobObserver } from '../events/event-hub.js';
import type { JobError, JobOutput, JobRecord, JobStatus, JobStore, OwnershipStore } from '../store/types.js';

/** Told of each job's start and end (running-time limits, daily budgets); a job it stopped ends as `error` with its reason. */
export interface RunningJobWatch {
  started(job: JobRecord): void;
  /** The error to record when this watch stopped the job; undefined when it did not. */
  ended(job: JobRecord): JobError | undefined;
}

export interface JobRecorderOptions {
  jobs: JobStore;
  ownership: OwnershipStore;
  /** Which files of the nodes ComfyUI takes from its cache are the job's key's own (earlierFileCheck). */
  isOwnEarlierFile: EarlierFileCheck;
  log: Logger;
  /** Told once a job has ended with its final record (metering, the scheduler). */
  onEnded(job: JobRecord): void;
  /** `max_execution_seconds` and `daily_execution_seconds`: told of each start and end; a job one of them stopped ends as `error`. */
  watches?: readonly RunningJobWatch[];
  /**
   * When ComfyUI says the job started (Unix seconds; undefined when it cannot tell): read from its history entry for a job
   * whose start was not seen as an event, when it ends. Without it, such a job is metered from what is known.
   */
  startInHistory?(job: JobRecord): Promise<number | undefined>;
}

/**
 * How long the end of a job whose start was not seen waits at most for ComfyUI's own start (`startInHistory`):
 * its backend's next held job waits for the end to be written.
 */
const START_LOOKUP_WAIT_MS = 2000;

/** Statuses a job no longer leaves. */
const FINAL: ReadonlySet<JobStatus> = new Set(['success', 'error', 'interrupted', 'cancelled']);

/**
 * The hub's observer. Changes to one job are written one after another, in the order ComfyUI sent
 * them; the files a job made become its key's (so `/view` and loader nodes accept them) before its
 * record lists them. Files reported while a write of the job waits its turn join that write, and
 * those of a job whose end is already reported are written with its end: ComfyUI reports the output
 * nodes' files just before the end, so one write records both.
 */
export function createJobRecorder(options: JobRecorderOptions): JobObserver {
  const { jobs, ownership, isOwnEarlierFile, log } = options;
  const chains = new Map<string, Promise<void>>();
  /** Per job, the files reported and not yet written to its record, in the order they came. */
  const unwritten = new Map<string, JobOutput[]>();
  /**
   * Per job, the nodes ComfyUI took from its cache (`execution_cached`): the files they report an earlier prompt made.
   * No entry when the event was not seen (sent while the socket to ComfyUI was cut): any node may be cached.
   */
  const cachedNodes = new Map<string, ReadonlySet<string>>();
  /** Jobs whose end is reported and not yet written. */
  const ending = new Set<string>();
  /** Jobs whose `started_at` a comparison with ComfyUI's queue estimated (its start event was missed), until they end. */
  const estimatedStarts = new Set<string>();

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
        if (chains.get(jobId) !== next) return;
        chains.delete(jobId);
        unwritten.delete(jobId);
        ending.delete(jobId);
      });
    chains.set(jobId, next);
  }

  /**
   * Takes the job's unwritten files and claims them for its key; resolves its outputs with them. The files
   * of a node ComfyUI took from its cache were made by an earlier prompt (the same graph, run before),
   * maybe another key's: they are not claimed, and are the job's only when they are already its key's own. When
   * the job's `execution_cached` was not seen, a file another key owns is such a file, and is left out.
   */
  async function outputsWithUnwritten(job: JobRecord): Promise<JobOutput[]> {
    const cached = cachedNodes.get(job.id);
    const othersFile = (file: JobOutput): boolean =>
      ![undefined, job.key_id].includes(ownership.ownerOf('file', fileId(file.type, file.subfolder, file.filename)));
    const isEarlier = (file: JobOutput): boolean => (cached === undefined ? othersFile(file) : cached.has(file.node));
    const files = (unwritten.get(job.id) ?? []).filter((file) => !isEarlier(file) || isOwnEarlierFile(job.key_id, job.backend, file));
    unwritten.delete(job.id);
    const made = files.filter((file) => !isEarlier(file));
    await Promise.all(made.map((file) => ownership.claim('file', fileId(file.type, file.subfolder, file.filename), job.key_id).catch(() => undefined)));
    return files.length === 0 ? job.outputs : [...job.outputs, ...files];
  }

  /**
   * When an ending job started: as recorded when its start was seen; else ComfyUI's own start from its history entry,
   * waited for at most START_LOOKUP_WAIT_MS, or what is recorded when that cannot be read in time.
   */
  async function startOf(job: JobRecord): Promise<number | null> {
    const estimated = estimatedStarts.delete(job.id);
    if ((job.started_at !== null && !estimated) || !options.startInHistory) return job.started_at;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), START_LOOKUP_WAIT_MS).unref();
    });
    const lookup = options.startInHistory(job).catch((error: unknown) => {
      log.debug({ err: error, job_id: job.id }, "a job's start could not be read from ComfyUI's history");
      return undefined;
    });
    const found = await Promise.race([lookup, late]);
    clearTimeout(timer);
    return found ?? job.started_at;
  }

  /** Lets go of the marks of estimated starts whose jobs ended otherwise (lost with their backend). */
  function forgetEndedEstimates(): void {
    for (const id of estimatedStarts) {
      const job = jobs.get(id);
      if (!job || FINAL.has(job.status)) estimatedStarts.delete(id);
    }
  }

  return {
    started(jobId, at, estimated) {
      if (estimated) {
        forgetEndedEstimates();
        estimatedStarts.add(jobId);
      } else estimatedStarts.delete(jobId);
      // A job that ran is not sent again: the request kept for that is let go.
      inTurn(jobId, async (job) => {
        const running = await jobs.update(job.id, { status: 'running', started_at: at, request: null });
        if (running?.status === 'running') for (const watch of options.watches ?? []) watch.started(running);
      });
    },
    cached(jobId, nodes) {
      cachedNodes.set(jobId, new Set(nodes));
    },
    executed(jobId, node, output) {
      const files = outputFiles(output).map((file) => ({ node, ...file }));
      if (files.length === 0) return;
      const waiting = unwritten.get(jobId);
      if (waiting) {
        waiting.push(...files);
        return;
      }
      unwritten.set(jobId, files);
      inTurn(jobId, async (job) => {
        if (ending.has(job.id)) return;
        const outputs = await outputsWithUnwritten(job);
        if (outputs !== job.outputs) await jobs.update(job.id, { outputs });
      });
    },
    ended(jobId, outcome, at, error) {
      ending.add(jobId);
      inTurn(jobId, async (found) => {
        const startedAt = startOf(found);
        const outputs = await outputsWithUnwritten(found);
        cachedNodes.delete(found.id);
        const job = { ...found, started_at: await startedAt };
        const seconds = job.started_at === null ? 0 : Math.max(0, at - job.started_at);
        // A job the gateway stopped (too long, budget spent) ends as error with that reason (one that still succeeded keeps its success).
        const overdue = (options.watches ?? []).map((watch) => watch.ended(job)).find((reason) => reason !== undefined);
        const stopped = outcome === 'success' ? undefined : overdue;
        const ended = await jobs.update(job.id, {
          status: stopped ? 'error' : outcome,
          ...(job.started_at !== found.started_at ? { started_at: job.started_at } : {}),
          finished_at: at,
          execution_seconds: seconds,
          error: stopped ?? error,
          request: null,
          ...(outputs !== found.outputs ? { outputs } : {}),
        });
        if (ended) options.onEnded(ended);
      });
    },
  };
}
