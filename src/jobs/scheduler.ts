// Keeps each backend's ComfyUI queue short, places jobs on the backends, and releases the gateway's held jobs fairly as room frees up.

import { setImmediate } from 'node:timers/promises';
import type { Logger } from '../log/logger.js';
import type { AdmissionPlace, JobRecord, JobStore, KeyRecord } from '../store/types.js';
import type { Backend } from './backend.js';
import { budgetSpentBeforeStart } from './daily-budget.js';
import { heldRequestOf, sendPrompt, type SendOutcome } from './dispatch.js';
import { FairQueue, type QueuedJob } from './fair-queue.js';
import { Placement } from './placement.js';
import { refusalEvent } from './refusal.js';
import { mayStartAnother } from './quotas.js';

export interface SchedulerOptions {
  backends: readonly Backend[];
  jobs: JobStore;
  /** Jobs the gateway keeps sent to each backend (queued or running there) at most (`--upstream-queue-depth`). */
  depth: number;
  keyOf(keyId: string): KeyRecord | undefined;
  /** Whether the key's `daily_execution_seconds` is spent, the seconds its running jobs ran so far included (see DailyBudgets.spent). */
  budgetSpent(keyId: string): boolean;
  /**
   * Told of each job recorded as sent to ComfyUI (queued there, or its answer lost) once its POST /prompt is
   * answered: its key's budget may have been spent while the prompt was on its way (see DailyBudgets.sent).
   */
  onSent?(job: JobRecord): void;
  log: Logger;
  now(): number;
}

/** How long to wait before trying again to release jobs while a backend cannot take them. */
const RETRY_MS = 1000;

/**
 * How long room made by another replica (its job ended) is left to that replica's own held jobs, which
 * it releases at once, before this one looks: so that both do not fill the same place.
 */
const ELSEWHERE_GRACE_MS = 200;

/** How many held jobs `restore` looks at in one turn of the event loop. */
const RESTORE_SLICE = 2000;

/** A job on its way to a backend, which counts there (and against its key's `max_running`) until the registry has it there. */
export interface Slot {
  readonly backend: Backend;
  readonly keyId: string;
  /** The id the registry has, or will have, the job under. */
  jobId: string;
}

/**
 * The gateway's queue. A job goes straight to a backend while nothing is held and a backend has room
 * (see Placement); otherwise it is held, and released round-robin across keys (see FairQueue) as
 * jobs end. A key with `max_running` waits while that many of its jobs are in ComfyUI, on any
 * backend. Nothing goes to a backend that is not up or whose event socket is down. `sending` holds,
 * per backend, jobs on their way there; each counts (there, and for its key) until the registry has
 * it there (a registry may count a job before its write is durable, and it must not count twice
 * meanwhile).
 */
export class JobScheduler {
  private readonly queue = new FairQueue();
  private readonly options: SchedulerOptions;
  private readonly placement: Placement;
  /** Per backend, jobs being sent right now. */
  private readonly sending = new Map<string, Set<Slot>>();
  private retryTimer: NodeJS.Timeout | null = null;
  private elsewhereTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private releasing = false;
  private pumpAgain = false;

  constructor(options: SchedulerOptions) {
    this.options = options;
    const load = {
      exact: (backend: Backend) => options.jobs.sentTo(backend.name) + this.onTheWay(backend),
      // A job being sent counts once, whether the registry has it there yet or not.
      atMost: (backend: Backend) => options.jobs.sentTo(backend.name) + (this.sending.get(backend.name)?.size ?? 0),
    };
    this.placement = new Placement(options.backends, load, options.depth);
  }

  /**
   * Queues the held jobs of the registry that are not queued here yet, in the order they were admitted:
   * after a restart, and now and then for those another replica admitted and could not release. A
   * slice of RESTORE_SLICE jobs per turn of the event loop, so that a large registry stalls no request;
   * resolves once every slice is done.
   */
  async restore(): Promise<void> {
    let after: AdmissionPlace | undefined;
    for (;;) {
      if (this.closed) return;
      // Each slice reads on from where the last ended: jobs released or cancelled meanwhile are no longer held.
      const page = this.options.jobs.heldPage(after, RESTORE_SLICE);
      for (const job of page.jobs) if (!this.queue.has(job.id)) this.queue.add(queuedJob(job));
      if (page.jobs.length < RESTORE_SLICE) break;
      after = page.end;
      await setImmediate();
    }
    this.pump();
  }

  /**
   * A slot for a new job of this key (to be recorded as `jobId`) on the backend it goes to now,
   * skipping the held queue (pinned to `pin`, or placed); it is held until `sent`. Undefined when the
   * job must be held.
   */
  takeSlotNow(keyId: string, pin: string | null, jobId: string): Slot | undefined {
    // A job of a key whose budget is spent is held, and ends there without being sent (see endOverBudget).
    if (this.queue.size > 0 || this.options.budgetSpent(keyId) || !this.mayRelease(keyId)) return undefined;
    const backend = this.placement.choose(pin);
    if (!backend) return undefined;
    this.queue.tookTurn(keyId);
    return this.takeSlot(backend, keyId, jobId);
  }

  /** A job sent through `takeSlotNow` has its answer: the registry counts it from now on. */
  sent(slot: Slot): void {
    this.leaveSlot(slot);
    this.pump();
  }

  /** The registry has changes another replica made (see ELSEWHERE_GRACE_MS): held jobs are released shortly if there is room then. */
  changedElsewhere(): void {
    if (this.closed || this.queue.size === 0) return;
    this.elsewhereTimer ??= setTimeout(() => {
      this.elsewhereTimer = null;
      this.pump();
    }, ELSEWHERE_GRACE_MS).unref();
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

  /** Releases held jobs while backends have room. Called when a job is held, sent or ends, and when a backend comes up; one release runs at a time. */
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
   * Takes the next held jobs that can be placed, each by one conditional write (held → queued on its
   * backend) so that a job is sent once even when several replicas hold it, and sends them. The writes
   * are not waited for one by one: each job counts on its backend (its slot) while its write is under
   * way, so the jobs released together share the store's next durable write.
   */
  private async release(): Promise<void> {
    while (!this.closed && this.queue.size > 0) {
      const next = this.queue.next((keyId, job) => this.options.budgetSpent(keyId) || (this.mayRelease(keyId) && this.placement.canPlace(job.pin ?? null)));
      if (!next) {
        if (this.placement.someoneWaiting()) this.retryLater();
        return;
      }
      this.queue.remove(next.id);
      if (this.options.budgetSpent(next.keyId)) {
        void this.endOverBudget(next);
        continue;
      }
      const backend = this.placement.choose(next.pin ?? null)!;
      void this.releaseOne(next, this.takeSlot(backend, next.keyId, next.id));
    }
  }

  /**
   * Moves one held job to its slot's backend and sends it. A job that is no longer held (cancelled, or
   * taken by another replica) leaves its place to the next; one whose write failed is held again and
   * tried after RETRY_MS.
   */
  private async releaseOne(queued: QueuedJob, slot: Slot): Promise<void> {
    const { backend } = slot;
    let job: JobRecord | undefined;
    try {
      job = await this.options.jobs.update(queued.id, { status: 'queued', backend: backend.name }, { ifStatus: 'held' });
    } catch (error) {
      this.options.log.warn({ err: error, job_id: queued.id }, 'a held job could not be released');
      this.queue.add(queued);
      return this.retryLater();
    } finally {
      this.leaveSlot(slot);
    }
    const request = job && heldRequestOf(job);
    if (!job || !request) return this.pump();
    const taken = job;
    await sendPrompt(backend, taken.id, request, (outcome) => this.recordReleased(taken, backend, outcome))
      .catch((error: unknown) => this.options.log.warn({ err: error, job_id: taken.id, backend: backend.name }, 'a held job could not be sent to ComfyUI'))
      .finally(() => this.pump());
  }

  /**
   * Ends a held job whose key's daily budget is spent, as `error` (ExecutionBudgetExceeded), without
   * sending it: sent, it would start in ComfyUI (loading its models on the GPU) only to be interrupted.
   */
  private async endOverBudget(queued: QueuedJob): Promise<void> {
    const now = this.options.now();
    const error = budgetSpentBeforeStart(this.options.keyOf(queued.keyId)?.daily_execution_seconds ?? null);
    const ended = await this.options.jobs
      .update(queued.id, { status: 'error', finished_at: now, request: null, error }, { ifStatus: 'held' })
      .catch((failure: unknown) => this.options.log.warn({ err: failure, job_id: queued.id }, 'a held job over its budget could not be ended'));
    if (ended) this.options.backends[0]!.events.announce(ended, 'execution_error', refusalEvent(error, now));
  }

  /** Records how sending a released job went; its id stays the one its key was told. */
  private async recordReleased(job: JobRecord, backend: Backend, outcome: SendOutcome): Promise<void> {
    const now = this.options.now();
    if (outcome.kind === 'refused') {
      await this.options.jobs.update(job.id, { status: 'error', finished_at: now, request: null, upstream_id: null, error: outcome.error });
      backend.events.announce(job, 'execution_error', refusalEvent(outcome.error, now));
      return;
    }
    const upstreamId = outcome.kind === 'queued' ? outcome.upstreamId : outcome.sentId;
    const sent = await this.options.jobs.update(job.id, { upstream_id: upstreamId, forwarded_at: now, sends: (job.sends ?? 0) + 1 });
    if (sent) this.options.onSent?.(sent);
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.elsewhereTimer) clearTimeout(this.elsewhereTimer);
  }

  private takeSlot(backend: Backend, keyId: string, jobId: string): Slot {
    const slot = { backend, keyId, jobId };
    const slots = this.sending.get(backend.name) ?? new Set<Slot>();
    this.sending.set(backend.name, slots.add(slot));
    return slot;
  }

  private leaveSlot(slot: Slot): void {
    const slots = this.sending.get(slot.backend.name);
    slots?.delete(slot);
    if (slots?.size === 0) this.sending.delete(slot.backend.name);
  }

  /** The jobs on their way to a backend that the registry does not have there yet (once it has one there, it counts it while it is sent). */
  private onTheWay(backend: Backend): number {
    const slots = this.sending.get(backend.name);
    let count = 0;
    if (slots) for (const slot of slots) if (this.notThereYet(slot)) count += 1;
    return count;
  }

  /** The key's jobs on their way to any backend that the registry does not have there yet (for `max_running`). */
  private onTheWayOfKey(keyId: string): number {
    let count = 0;
    for (const slots of this.sending.values()) for (const slot of slots) if (slot.keyId === keyId && this.notThereYet(slot)) count += 1;
    return count;
  }

  /** Whether the registry does not yet have the slot's job queued on the slot's backend. */
  private notThereYet({ backend, jobId }: Slot): boolean {
    const job = this.options.jobs.get(jobId);
    return !job || job.status === 'held' || job.backend !== backend.name;
  }

  private mayRelease(keyId: string): boolean {
    const key = this.options.keyOf(keyId);
    if (!key) return true;
    return mayStartAnother(key, () => this.options.jobs.count({ keyId, statuses: ['queued', 'running'] }) + this.onTheWayOfKey(keyId));
  }

  private retryLater(): void {
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, RETRY_MS).unref();
  }
}

function queuedJob(job: JobRecord): QueuedJob {
  return { id: job.id, keyId: job.key_id, front: job.front, admittedAt: job.admitted_at, pin: heldRequestOf(job)?.pin ?? null };
}
