// Lets a request wait for a job to end: told of every change to a job here and of changes other replicas made, it wakes the waiters of jobs that ended.

import { ACTIVE_JOB_STATUSES, type JobRecord, type JobStore } from '../store/types.js';

/** One request waiting for one job. */
interface Waiter {
  resolve(job: JobRecord | undefined): void;
}

/** Whether a job no longer changes status (success, error, interrupted, cancelled). */
function hasEnded(job: JobRecord | undefined): job is JobRecord {
  return job !== undefined && !ACTIVE_JOB_STATUSES.includes(job.status);
}

/**
 * Waiters per job id, woken from the registry (never by asking ComfyUI). A waiter is removed when its
 * job ends, when its time is up and when its request is aborted, with its timer.
 */
export class JobWaiter {
  private readonly waiting = new Map<string, Set<Waiter>>();

  constructor(private readonly jobs: Pick<JobStore, 'get'>) {}

  /** How many requests are waiting now. */
  get size(): number {
    let count = 0;
    for (const waiters of this.waiting.values()) count += waiters.size;
    return count;
  }

  /**
   * Resolves the job once it has ended (at once when it already has), or undefined when `timeoutMs`
   * passes first, `signal` is aborted or the waiter is closed.
   */
  wait(id: string, timeoutMs: number, signal?: AbortSignal): Promise<JobRecord | undefined> {
    const now = this.jobs.get(id);
    if (hasEnded(now)) return Promise.resolve(now);
    if (signal?.aborted || timeoutMs <= 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        resolve: (job) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', abandon);
          const waiters = this.waiting.get(id);
          waiters?.delete(waiter);
          if (waiters?.size === 0) this.waiting.delete(id);
          resolve(job);
        },
      };
      const abandon = (): void => waiter.resolve(undefined);
      const timer = setTimeout(abandon, timeoutMs);
      signal?.addEventListener('abort', abandon, { once: true });
      const waiters = this.waiting.get(id) ?? new Set<Waiter>();
      waiters.add(waiter);
      this.waiting.set(id, waiters);
    });
  }

  /** A job changed here: its waiters are woken if it ended. */
  changed(job: JobRecord): void {
    if (hasEnded(job)) this.wake(job.id, job);
  }

  /** Other replicas' changes were taken into memory: every waited job is read again. */
  changedElsewhere(): void {
    for (const id of [...this.waiting.keys()]) {
      const job = this.jobs.get(id);
      if (hasEnded(job)) this.wake(id, job);
    }
  }

  /** Wakes every waiter with undefined (the gateway is closing). */
  close(): void {
    for (const waiters of [...this.waiting.values()]) for (const waiter of [...waiters]) waiter.resolve(undefined);
  }

  private wake(id: string, job: JobRecord): void {
    for (const waiter of [...(this.waiting.get(id) ?? [])]) waiter.resolve(job);
  }
}

/**
 * The job store with `listener` told of each job it creates or changes here, after the write. Reads
 * and every other method are the store's own.
 */
export function notifyingJobStore(store: JobStore, listener: (job: JobRecord) => void): JobStore {
  return {
    open: () => store.open(),
    get: (id) => store.get(id),
    byUpstreamId: (backend, upstreamId) => store.byUpstreamId(backend, upstreamId),
    sentTo: (backend) => store.sentTo(backend),
    producerOf: (type, subfolder, filename) => store.producerOf(type, subfolder, filename),
    outputPrefixes: (shape) => store.outputPrefixes(shape),
    list: (options) => store.list(options),
    count: (options) => store.count(options),
    active: (statuses) => store.active(statuses),
    heldPage: (after, limit) => store.heldPage(after, limit),
    async create(job) {
      const created = await store.create(job);
      if (created) listener(job);
      return created;
    },
    async update(id, patch, options) {
      const updated = await store.update(id, patch, options);
      if (updated) listener(updated);
      return updated;
    },
    ...(store.onChangedElsewhere ? { onChangedElsewhere: (changed: () => void) => store.onChangedElsewhere!(changed) } : {}),
    close: () => store.close(),
  };
}
