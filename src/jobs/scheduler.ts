// Keeps ComfyUI's own queue short and releases the gateway's held jobs fairly as room frees up.

import type { Logger } from '../log/logger.js';
import type { JobRecord, JobStore, KeyRecord } from '../store/types.js';
import type { Backend } from './backend.js';
import { heldRequestOf, sendPrompt, type SendOutcome } from './dispatch.js';
import { FairQueue } from './fair-queue.js';
import { refusalEvent } from './refusal.js';
import { mayStartAnother } from './quotas.js';

export interface SchedulerOptions {
  backend: Backend;
  jobs: JobStore;
  /** Jobs the gateway keeps sent to ComfyUI (queued or running there) at most (`--upstream-queue-depth`). */
  depth: number;
  keyOf(keyId: string): KeyRecord | undefined;
  log: Logger;
  now(): number;
}

/** How long to wait before trying again to release jobs while ComfyUI cannot take them. */
const RETRY_MS = 1000;

/**
 * The gateway's queue. A job goes straight to ComfyUI while nothing is held and fewer than `depth` of
 * the gateway's jobs are queued or running there; otherwise it is held, and released round-robin
 * across keys (see FairQueue) as jobs end. A key with `max_running` waits while that many of its jobs
 * are in ComfyUI. Nothing is released while the gateway's socket to ComfyUI is down. `sending` counts
 * jobs sent without being held until their answer; a released job counts as `queued` from the moment it
 * is taken.
 */
export class JobScheduler {
  private readonly queue = new FairQueue();
  private readonly options: SchedulerOptions;
  /** Jobs being sent right now (not yet recorded as queued). */
  private sending = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private releasing = false;
  private pumpAgain = false;

  constructor(options: SchedulerOptions) {
    this.options = options;
  }

  /**
   * Queues the held jobs of the registry that are not queued here yet, in the order they were admitted:
   * after a restart, and now and then for those another replica admitted and could not release.
   */
  restore(): void {
    for (const job of this.options.jobs.active()) if (job.status === 'held') this.queue.add(queuedJob(job));
    this.pump();
  }

  /** Whether a new job of this key may go to ComfyUI now, skipping the held queue; if so, a slot is taken for it until `sent`. */
  takeSlotNow(keyId: string): boolean {
    if (this.queue.size > 0 || this.inFlight() >= this.options.depth || !this.mayRelease(keyId)) return false;
    this.queue.tookTurn(keyId);
    this.sending += 1;
    return true;
  }

  /** A job sent through `takeSlotNow` has its answer: the slot is counted from the registry now. */
  sent(): void {
    this.sending -= 1;
    this.pump();
  }

  /** Holds a job until its turn. */
  hold(job: JobRecord): void {
    this.queue.add(queuedJob(job));
    this.pump();
  }

  /** Takes a job out of the queue (it was cancelled). */
  unhold(id: string): void {
    this.queue.remove(id);
  }

  /** How many held jobs are released before this one (0: next), or undefined when it is not held. */
  position(id: string): number | undefined {
    return this.queue.position(id);
  }

  /** Releases held jobs while ComfyUI has room. Called when a job is held, sent or ends; one release runs at a time. */
  pump(): void {
    if (this.closed) return;
    if (this.releasing) {
      this.pumpAgain = true;
      return;
    }
    this.releasing = true;
    this.release()
      .catch((error: unknown) => this.options.log.warn({ err: error }, 'held jobs could not be released'))
      .finally(() => {
        this.releasing = false;
        if (this.pumpAgain) {
          this.pumpAgain = false;
          this.pump();
        }
      });
  }

  /**
   * Takes the next held jobs, each by one conditional write (held → queued) so that a job is sent once
   * even when several replicas hold it, and sends them.
   */
  private async release(): Promise<void> {
    while (!this.closed && this.queue.size > 0 && this.inFlight() < this.options.depth) {
      if (!this.options.backend.events.connected) return this.retryLater();
      const next = this.queue.next((keyId) => this.mayRelease(keyId));
      if (!next) return;
      this.queue.remove(next.id);
      const job = await this.options.jobs.update(next.id, { status: 'queued' }, { ifStatus: 'held' });
      const request = job && heldRequestOf(job);
      if (!job || !request) continue;
      sendPrompt(this.options.backend, request, (outcome) => this.recordReleased(job, outcome))
        .catch((error: unknown) => this.options.log.warn({ err: error, job_id: job.id }, 'a held job could not be sent to ComfyUI'))
        .finally(() => this.pump());
    }
  }

  /** Records how sending a released job went; its id stays the one its key was told. */
  private async recordReleased(job: JobRecord, outcome: SendOutcome): Promise<void> {
    const now = this.options.now();
    if (outcome.kind === 'refused') {
      await this.options.jobs.update(job.id, { status: 'error', finished_at: now, request: null, error: outcome.error });
      this.options.backend.events.announce(job, 'execution_error', refusalEvent(outcome.error, now));
      return;
    }
    const upstreamId = outcome.kind === 'queued' ? outcome.upstreamId : outcome.sentId;
    await this.options.jobs.update(job.id, { upstream_id: upstreamId, forwarded_at: now, request: null, backend: this.options.backend.name });
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  /** The gateway's jobs in ComfyUI's queue, or on their way there. */
  private inFlight(): number {
    return this.options.jobs.count({ statuses: ['queued', 'running'] }) + this.sending;
  }

  private mayRelease(keyId: string): boolean {
    const key = this.options.keyOf(keyId);
    if (!key) return true;
    return mayStartAnother(key, this.options.jobs.count({ keyId, statuses: ['queued', 'running'] }));
  }

  private retryLater(): void {
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, RETRY_MS).unref();
  }
}

function queuedJob(job: JobRecord): { id: string; keyId: string; front: boolean } {
  return { id: job.id, keyId: job.key_id, front: job.front };
}
