// The gateway's jobs: admits each keyed prompt as a job, places or holds it, cancels held jobs, keeps the registry in step with each backend, and settles the jobs of a backend that died.

import { forbidden, type GatewayError } from '../errors.js';
import type { JobObserver } from '../events/event-hub.js';
import type { Logger } from '../log/logger.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import {
  ACTIVE_JOB_STATUSES,
  GATEWAY_CLIENT_OWNER,
  type JobError,
  type JobRecord,
  type JobStore,
  type JobWebhook,
  type KeyRecord,
  type OwnershipStore,
} from '../store/types.js';
import { jobWithFields } from '../store/job-record.js';
import type { Backend } from './backend.js';
import { ClientClaimHolds } from './client-claims.js';
import { heldRequestOf, sendPrompt, type HeldRequest, type SendOutcome } from './dispatch.js';
import { checkAdmission } from './quotas.js';
import { refusalEvent } from './refusal.js';
import { deleteFromQueue } from './queue-delete.js';
import { historyEntryOf, reconcileJobs, startInHistory } from './reconcile.js';
import { JobScheduler, type Slot } from './scheduler.js';

export interface JobServiceOptions {
  jobs: JobStore;
  /** Every backend, in configuration order. */
  backends: readonly Backend[];
  /** The clientId of the gateway's own sockets to the backends: every forwarded prompt carries it. */
  clientId: string;
  /** What the backends' event hubs tell of jobs (the job recorder); reconciliation tells it too. */
  observer: JobObserver;
  ownership: OwnershipStore;
  /** `--upstream-queue-depth`, per backend. */
  depth: number;
  keyOf(keyId: string): KeyRecord | undefined;
  log: Logger;
  /**
   * Whether the key's `daily_execution_seconds` is spent, its running jobs included: a new prompt of the key
   * is then refused, and its held jobs end without being sent.
   */
  budgetSpent(keyId: string): boolean;
  /** Told of each job recorded as sent to ComfyUI once its POST /prompt is answered (see SchedulerOptions.onSent). */
  onSent?(job: JobRecord): void;
  /** The webhook of a key's jobs that bring none of their own (the key's `webhook_url`), or null. */
  defaultWebhook?(key: KeyRecord): JobWebhook | null;
  /** Told of each admitted job (metering). */
  onAdmitted?(job: JobRecord): void;
  /** Told of each job a backend lost, as it was then (its `backend` the one that lost it), once it is held to be placed again or has ended. */
  onLost?(job: JobRecord): void;
  /** Told of each job it ends on a backend (lost while running, with the seconds it ran, or dropped from ComfyUI's queue); the job recorder tells of the others. */
  onEnded?(job: JobRecord): void;
  now?(): number;
}

/** How often jobs sent to ComfyUI are compared with its queue (in case an end was missed), and held jobs of other replicas picked up. */
const RECONCILE_INTERVAL_MS = 30_000;

/** A prompt to admit: the key, the body for ComfyUI (with the gateway's client_id) and the headers it is sent with. */
export interface Admission {
  key: KeyRecord;
  promptId: string;
  /** Whether the client chose `promptId` (one the gateway made is unique; a chosen one may be sent to other replicas at once). */
  chosenId?: boolean;
  /** The client's own client_id, which its WebSocket uses. */
  clientId: string | null;
  /** The body, the headers and, for an admin key, the backend it is pinned to. */
  request: HeldRequest;
  front: boolean;
  /** The run's own webhook; without one, the key's default (`defaultWebhook`) applies. */
  webhook?: JobWebhook | null;
  /** The place `reserve` kept for this prompt: it is let go as the prompt is admitted, in its stead. */
  reservation?: Reservation;
}

/** A place among a key's jobs kept for a prompt still being prepared (see JobService.reserve). */
export interface Reservation {
  readonly keyId: string;
}

/** How long after a failed delete from ComfyUI's queue (`dropQueued`) it is tried again: after each delay in turn, then no more. */
const DELETE_RETRY_DELAYS_MS = [250, 1000, 4000, 16_000];

/** Times a job is sent to backends at most: once, and once more when its backend lost it before it ran. */
const MAX_SENDS = 2;

export class JobService {
  readonly jobs: JobStore;
  readonly backends: readonly Backend[];
  /** The clientId of the gateway's own sockets to the backends: no key may use it. */
  readonly clientId: string;
  readonly scheduler: JobScheduler;
  /** The new clientId claims of prompts being admitted, let go only by the last refused one. */
  readonly clientClaims: ClientClaimHolds;
  private readonly observer: JobObserver;
  private readonly options: JobServiceOptions;
  private readonly now: () => number;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private stopWatching: (() => void) | null = null;
  /** Prompt ids being admitted right now, with their key: until the registry has the job, its key's quota counts it from here. */
  private readonly admitting = new Map<string, string>();
  /** Places kept by `reserve` for prompts still being prepared: each counts against its key's quota until let go. */
  private readonly reservations = new Set<Reservation>();
  /** Per backend, the ids ComfyUI knew the jobs by that were placed elsewhere after it went down (deleted from its queue once it is back). */
  private readonly movedAway = new Map<string, Set<string>>();
  /** The timers of deletes from ComfyUI's queue to try again (see deleteMarked). */
  private readonly deleteRetries = new Set<NodeJS.Timeout>();
  /** Per backend, the comparison with ComfyUI running now. */
  private readonly reconciling = new Map<string, Promise<void>>();

  constructor(options: JobServiceOptions) {
    this.options = options;
    this.jobs = options.jobs;
    this.backends = options.backends;
    this.clientId = options.clientId;
    this.observer = options.observer;
    this.clientClaims = new ClientClaimHolds(options.ownership);
    this.now = options.now ?? (() => Date.now() / 1000);
    this.scheduler = new JobScheduler({
      backends: options.backends,
      jobs: options.jobs,
      depth: options.depth,
      keyOf: options.keyOf,
      budgetSpent: options.budgetSpent,
      onSent: options.onSent,
      log: options.log,
      now: this.now,
    });
  }

  /**
   * Queues the held jobs of the registry and settles the sent ones with ComfyUI, then keeps doing so now
   * and then. Held jobs are also released when other replicas' jobs end, which this one hears of only
   * through the registry.
   */
  start(): void {
    this.claimOwnClientId();
    void this.scheduler.restore();
    void this.reconcile();
    this.stopWatching = this.jobs.onChangedElsewhere?.(() => this.scheduler.changedElsewhere()) ?? null;
    this.reconcileTimer = setInterval(() => {
      this.claimOwnClientId();
      void this.scheduler.restore();
      void this.reconcile();
    }, RECONCILE_INTERVAL_MS).unref();
  }

  /**
   * Claims the gateway's clientId, and renews the claim while the gateway runs (a claim is renewed when a
   * day old, and every replica hears of it): a client using it would take the gateway's socket's place in
   * ComfyUI and with it every job's events, and an unused claim is forgotten after 30 days.
   */
  private claimOwnClientId(): void {
    this.options.ownership
      .claim('client', this.clientId, GATEWAY_CLIENT_OWNER)
      .catch((error: unknown) => this.options.log.warn({ err: error }, "the gateway's clientId could not be recorded"));
  }

  /** Compares sent jobs with every backend's ComfyUI now. */
  async reconcile(): Promise<void> {
    await Promise.all(this.backends.filter((backend) => !backend.isDown()).map((backend) => this.reconcileBackend(backend)));
  }

  /**
   * The gateway's socket to a backend opened (again): its jobs are compared with its ComfyUI, and held jobs
   * may go to it. Resolves once the comparison is done (the backend's hub then knows which prompt runs).
   */
  connected(backend: Backend): Promise<void> {
    void this.forgetMovedAway(backend);
    const compared = this.reconcileAfresh(backend);
    this.scheduler.pump();
    return compared;
  }

  /**
   * The backend's running prompt ended without saying how (releases before August 2024 send no `execution_success`):
   * its job is settled from ComfyUI's history entry, written before that end, rather than at the next comparison.
   */
  settleEnded(backend: Backend): Promise<void> {
    return this.reconcileAfresh(backend);
  }

  /**
   * Compares the backend's jobs with a reading of its ComfyUI's queue taken from now on: a comparison under
   * way may have read the queue before (before a job whose events were lost left it, or before a delete),
   * so another follows it.
   */
  private reconcileAfresh(backend: Backend): Promise<void> {
    const comparing = this.reconciling.get(backend.name);
    return comparing ? comparing.then(() => this.reconcileBackend(backend)) : this.reconcileBackend(backend);
  }

  /**
   * Takes jobs sent to the backend that have not started out of its ComfyUI queue, so that they never run,
   * and ends them as `error` with `error`. The error is written into each job first: whichever replica
   * then finds the job gone from ComfyUI ends it with that error (see `lost`). ComfyUI leaves alone a job
   * that started before the delete reached it; that one runs on, to be stopped as running jobs are.
   * Resolves once ComfyUI answered the delete (or could not); the jobs are then compared with ComfyUI,
   * which ends those it no longer has. A delete that failed is tried again in the background (see
   * deleteMarked); a job it never takes out is interrupted when it starts, as a running job is.
   */
  async dropQueued(backendName: string, queued: readonly JobRecord[], error: JobError): Promise<void> {
    const backend = this.backends.find((candidate) => candidate.name === backendName);
    if (!backend) return;
    const marked = await Promise.all(
      queued.map((job) =>
        this.jobs
          .update(job.id, { error }, { ifStatus: 'queued' })
          .catch((failure: unknown) => this.options.log.warn({ err: failure, job_id: job.id }, 'a job to take out of ComfyUI could not be marked')),
      ),
    );
    await this.deleteMarked(
      backend,
      marked.flatMap((job) => (job?.upstream_id ? [job] : [])),
      0,
    );
  }

  /**
   * Deletes jobs marked by `dropQueued` from the backend's ComfyUI queue, then compares the backend's jobs with
   * ComfyUI (which ends those it no longer has). When ComfyUI cannot be reached or answers another status,
   * the jobs still queued are tried again after each of DELETE_RETRY_DELAYS_MS in the background; resolves
   * after this try.
   */
  private async deleteMarked(backend: Backend, jobs: readonly JobRecord[], tries: number): Promise<void> {
    const queued = jobs.filter((job) => this.jobs.get(job.id)?.status === 'queued');
    if (queued.length === 0) return;
    const upstreamIds = queued.flatMap((job) => (job.upstream_id ? [job.upstream_id] : []));
    try {
      await deleteFromQueue(backend, upstreamIds);
      void this.reconcileAfresh(backend);
    } catch (failure) {
      const retryInMs = DELETE_RETRY_DELAYS_MS[tries];
      this.options.log.warn(
        { err: failure, backend: backend.name, jobs: queued.map((job) => job.id), tries: tries + 1, retry_in_ms: retryInMs ?? null },
        retryInMs === undefined
          ? "jobs could not be deleted from ComfyUI's queue: each is interrupted if it starts"
          : "jobs could not be deleted from ComfyUI's queue: the delete is tried again",
      );
      if (retryInMs === undefined) return;
      const retry = setTimeout(() => {
        this.deleteRetries.delete(retry);
        void this.deleteMarked(backend, queued, tries + 1);
      }, retryInMs).unref();
      this.deleteRetries.add(retry);
    }
  }

  /**
   * Deletes from a backend that is back the jobs that were placed elsewhere while it was down, in
   * case it was only cut off and still has them queued: they must not run twice.
   */
  private async forgetMovedAway(backend: Backend): Promise<void> {
    const ids = this.movedAway.get(backend.name);
    if (!ids?.size) return;
    this.movedAway.delete(backend.name);
    await deleteFromQueue(backend, [...ids]).catch((error: unknown) =>
      this.options.log.debug({ err: error, backend: backend.name }, 'jobs moved away could not be deleted from the backend that is back'),
    );
  }

  /** A job ended: its place in a backend's queue is free. */
  ended(): void {
    this.scheduler.pump();
  }

  /** Compares one backend's sent jobs with its ComfyUI; one run at a time per backend. */
  private reconcileBackend(backend: Backend): Promise<void> {
    let run = this.reconciling.get(backend.name);
    if (!run) {
      run = reconcileJobs(backend, this.jobs, this.observer, this.now, (job) =>
        this.lost(job, `ComfyUI (backend ${backend.name}) no longer knows this job: it was restarted, or the job was deleted from its queue.`),
      )
        .catch((error: unknown) => this.options.log.debug({ err: error, backend: backend.name }, 'jobs could not be compared with ComfyUI'))
        .finally(() => this.reconciling.delete(backend.name));
      this.reconciling.set(backend.name, run);
    }
    return run;
  }

  /**
   * A backend is confirmed down: its jobs that had not started are placed again (each at most once
   * more), and those that were running end as `error`.
   */
  async backendDown(backend: Backend): Promise<void> {
    const reason = `The ComfyUI backend ${backend.name} stopped answering`;
    const sent = this.jobs.active(['queued', 'running']).filter((job) => job.backend === backend.name);
    for (const job of sent) {
      await this.lost(job, job.status === 'running' ? `${reason} while the job ran.` : `${reason} before the job ran.`).catch((error: unknown) =>
        this.options.log.warn({ err: error, job_id: job.id }, 'a job of a backend that went down could not be settled'),
      );
    }
    this.scheduler.pump();
  }

  /**
   * A job its backend lost. One taken out of ComfyUI's queue on purpose (`dropQueued`: its error is written
   * into it) ends with that error. Any other that had not started and was sent fewer than MAX_SENDS times
   * is held again (under the same id, pinned as before) and placed anew; the rest end as `error` with
   * `message`, which its key's sockets get as ComfyUI's `execution_error`.
   */
  private async lost(found: JobRecord, message: string): Promise<void> {
    // As it is now: a comparison read the job before it waited for ComfyUI.
    const job = this.jobs.get(found.id) ?? found;
    if (job.status === 'queued' && job.error) return this.endTakenOut(job, job.error);
    const request = heldRequestOf(job);
    if (job.status === 'queued' && request && (job.sends ?? 1) < MAX_SENDS) {
      const held = await this.jobs.update(job.id, { status: 'held', upstream_id: null, forwarded_at: null }, { ifStatus: 'queued' });
      if (held) {
        if (job.upstream_id !== null) this.movedAway.set(job.backend, (this.movedAway.get(job.backend) ?? new Set()).add(job.upstream_id));
        this.options.onLost?.(job);
        this.options.log.warn({ job_id: job.id, backend: job.backend }, 'job lost by its backend before it ran: placed again');
        this.scheduler.hold(held);
        return;
      }
    }
    const at = this.now();
    // A job that ran is metered for the seconds it is known to have run, until its backend was given up.
    const ran = job.started_at === null ? {} : { execution_seconds: Math.max(0, at - job.started_at) };
    const ended = await this.jobs.update(job.id, { status: 'error', finished_at: at, request: null, error: { message }, ...ran }, { ifStatus: job.status });
    if (!ended) return;
    this.options.onLost?.(job);
    this.options.onEnded?.(ended);
    this.options.log.warn({ job_id: job.id, backend: job.backend, reason: message }, 'job lost by its backend');
    this.backends[0]!.events.announce(ended, 'execution_error', lostEvent(message, at));
    this.scheduler.pump();
  }

  /**
   * Ends a job that `dropQueued` took out of ComfyUI's queue before it started, with the error written into
   * it; its key's sockets get it as ComfyUI's `execution_error`. ComfyUI keeps no history of it: without its
   * id there, its history entry is the gateway's, as for a job ComfyUI refused (see refusedHistoryEntry).
   */
  private async endTakenOut(job: JobRecord, error: JobError): Promise<void> {
    const at = this.now();
    const ended = await this.jobs.update(job.id, { status: 'error', finished_at: at, request: null, upstream_id: null, error }, { ifStatus: 'queued' });
    if (!ended) return;
    this.options.onEnded?.(ended);
    this.options.log.info({ job_id: job.id, backend: job.backend, reason: error.message }, "job taken out of ComfyUI's queue before it started");
    this.backends[0]!.events.announce(ended, 'execution_error', refusalEvent(error, at));
    this.scheduler.pump();
  }

  /**
   * Admits a prompt as a job. It goes to ComfyUI at once when nothing is held, ComfyUI has room and no
   * other replica may be sending the same chosen id, and
   * ComfyUI's answer is returned (the job then has the id ComfyUI answered with; a refused prompt leaves
   * no job); otherwise it is held and the gateway answers for it, with the job's id.
   * @throws GatewayError 429 QUEUE_LIMIT or EXECUTION_BUDGET_EXCEEDED past the key's quotas; 403 when a job
   *   already has that prompt_id; 502/504 when ComfyUI's answer is lost
   */
  async admit(admission: Admission): Promise<UpstreamAnswer> {
    const { key } = admission;
    if (admission.reservation) this.release(admission.reservation);
    const now = this.checkQuotas(key);
    const job: JobRecord = {
      id: admission.promptId,
      key_id: key.key_id,
      client_id: admission.clientId,
      backend: '',
      upstream_id: null,
      status: 'held',
      admitted_at: now,
      forwarded_at: null,
      started_at: null,
      finished_at: null,
      execution_seconds: null,
      outputs: [],
      error: null,
      // The request itself, not a copy: one whose body was serialized here is written into the job files raw.
      request: admission.request,
      front: admission.front,
      webhook: admission.webhook ?? this.options.defaultWebhook?.(key) ?? null,
    };
    if (this.jobs.get(job.id) || this.admitting.has(job.id)) throw promptIdTaken();
    this.admitting.set(job.id, key.key_id);
    try {
      // Replicas learn of a sent job once it is recorded, after ComfyUI's answer: a chosen id is recorded (held) first, so only one replica sends it.
      const recordedFirst = admission.chosenId === true && this.jobs.onChangedElsewhere !== undefined;
      const slot = recordedFirst ? undefined : this.scheduler.takeSlotNow(key.key_id, admission.request.pin ?? null, job.id);
      if (!slot) return await this.holdJob(job);
      try {
        return await sendPrompt(slot.backend, job.id, admission.request, (outcome) => this.recordSent(job, slot, admission.request, outcome));
      } finally {
        this.scheduler.sent(slot);
      }
    } finally {
      this.admitting.delete(job.id);
    }
  }

  /**
   * Refuses one more job of the key past its quotas (see checkAdmission); returns the time it checked at (Unix seconds).
   * @throws GatewayError 429 QUEUE_LIMIT or EXECUTION_BUDGET_EXCEEDED
   */
  checkQuotas(key: KeyRecord): number {
    const now = this.now();
    checkAdmission(
      key,
      {
        activeJobs: () => this.jobs.count({ keyId: key.key_id, statuses: ACTIVE_JOB_STATUSES }) + this.admittingOf(key.key_id),
        budgetSpent: () => this.options.budgetSpent(key.key_id),
      },
      now,
    );
    return now;
  }

  /**
   * Checks the key's quotas (see checkQuotas) for a prompt that is admitted only after slow work (a
   * workflow run's images fetched and stored), and keeps its place: until it is let go (`release`, or
   * `admit` with it), it counts as one of the key's jobs, so that runs sent together cannot all pass
   * the check before any is admitted.
   * @throws GatewayError 429 QUEUE_LIMIT or EXECUTION_BUDGET_EXCEEDED
   */
  reserve(key: KeyRecord): Reservation {
    this.checkQuotas(key);
    const reservation = { keyId: key.key_id };
    this.reservations.add(reservation);
    return reservation;
  }

  /** Lets go of a place `reserve` kept (again is nothing). */
  release(reservation: Reservation): void {
    this.reservations.delete(reservation);
  }

  /** The key's admissions under way here whose job the registry does not have yet, and the places kept for its prompts being prepared. */
  private admittingOf(keyId: string): number {
    let count = 0;
    for (const [id, of] of this.admitting) if (of === keyId && !this.jobs.get(id)) count += 1;
    for (const reservation of this.reservations) if (reservation.keyId === keyId) count += 1;
    return count;
  }

  /** Holds a job for its turn and answers for it, as ComfyUI answers a queued prompt. */
  private async holdJob(job: JobRecord): Promise<UpstreamAnswer> {
    if (!(await this.jobs.create(job))) throw promptIdTaken();
    this.options.onAdmitted?.(job);
    this.scheduler.hold(job);
    const body = JSON.stringify({ prompt_id: job.id, number: heldNumber(job), node_errors: {} });
    return { status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, body: Buffer.from(body) };
  }

  /**
   * Records a job sent without being held, once ComfyUI has answered: under the id ComfyUI answered
   * with (the client is told that one), or under the id it was sent with when the answer was lost. A
   * prompt ComfyUI refused leaves no job: the client has ComfyUI's answer.
   */
  private async recordSent(job: JobRecord, slot: Slot, request: HeldRequest, outcome: SendOutcome): Promise<void> {
    if (outcome.kind === 'refused') return;
    const id = outcome.kind === 'queued' ? outcome.upstreamId : outcome.sentId;
    slot.jobId = id;
    const sent = jobWithFields(
      job,
      { backend: slot.backend.name, upstream_id: id, status: 'queued', forwarded_at: this.now(), request, sends: (job.sends ?? 0) + 1 },
      id,
    );
    if (await this.jobs.create(sent)) {
      this.options.onAdmitted?.(sent);
      this.options.onSent?.(sent);
    } else this.options.log.warn({ job_id: id }, 'ComfyUI answered with the prompt_id of a job the registry already has');
  }

  /** Cancels a job the gateway still holds (on any replica); false when it is not held (it is ComfyUI's to cancel then). */
  async cancelHeld(id: string): Promise<boolean> {
    const cancelled = await this.jobs.update(id, { status: 'cancelled', finished_at: this.now(), request: null }, { ifStatus: 'held' });
    if (!cancelled) return false;
    this.scheduler.unhold(id);
    return true;
  }

  /**
   * Notes that ComfyUI dropped a queued job on the key's request (ComfyUI itself sends no event for it). A job
   * gone from ComfyUI's queue that has a history entry there was not dropped: it ran, and its events are late
   * or were lost with the gateway's socket. It is settled from that entry (and metered) instead; so is one
   * whose entry could not be read, by a later comparison with ComfyUI.
   */
  async cancelledInComfyUI(job: JobRecord): Promise<void> {
    if (job.status !== 'queued' || job.upstream_id === null) return;
    const backend = this.backends.find((candidate) => candidate.name === job.backend);
    if (!backend) return;
    if ((await historyEntryOf(backend, job.upstream_id)) !== null) return this.reconcileAfresh(backend);
    const cancelled = await this.jobs.update(job.id, { status: 'cancelled', finished_at: this.now() }, { ifStatus: 'queued' });
    if (!cancelled) return;
    this.options.onEnded?.(cancelled);
    this.scheduler.pump();
  }

  /** When ComfyUI's history entry of a job sent to it says it started (Unix seconds); undefined when it cannot tell. One `/history/{id}`. */
  async startInHistory(job: JobRecord): Promise<number | undefined> {
    const backend = this.backends.find((candidate) => candidate.name === job.backend);
    return backend && job.upstream_id !== null ? startInHistory(backend, job.upstream_id) : undefined;
  }

  close(): void {
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    for (const retry of this.deleteRetries) clearTimeout(retry);
    this.deleteRetries.clear();
    this.stopWatching?.();
    this.scheduler.close();
  }
}

function promptIdTaken(): GatewayError {
  return forbidden('That prompt_id is taken: leave prompt_id out and one is made.');
}

/** ComfyUI's `execution_error` for a job its backend lost: no node is to blame. */
function lostEvent(message: string, at: number): Record<string, unknown> {
  return { ...refusalEvent({ message }, at), exception_type: 'BackendLost' };
}

/** The queue number a held job shows: after every number ComfyUI gives, in the order jobs were admitted. */
export function heldNumber(job: JobRecord): number {
  return Math.round(job.admitted_at * 1000);
}
