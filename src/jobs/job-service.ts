// The gateway's jobs: admits each keyed prompt as a job, sends or holds it, cancels held jobs, and keeps the registry in step with ComfyUI.

import { forbidden, type GatewayError } from '../errors.js';
import type { JobObserver } from '../events/event-hub.js';
import type { Logger } from '../log/logger.js';
import type { HttpProxy, UpstreamAnswer } from '../proxy/http.js';
import { ACTIVE_JOB_STATUSES, type JobRecord, type JobStore, type KeyRecord, type OwnershipStore } from '../store/types.js';
import { GATEWAY_CLIENT_OWNER, type Backend, type BackendEvents } from './backend.js';
import { sendPrompt, type HeldRequest, type SendOutcome } from './dispatch.js';
import { createJobRecorder } from './job-events.js';
import { checkAdmission } from './quotas.js';
import { reconcileJobs } from './reconcile.js';
import { JobScheduler } from './scheduler.js';

export interface JobServiceOptions<Events extends BackendEvents> {
  jobs: JobStore;
  /** The backend's name in job records. */
  backendName: string;
  proxy: HttpProxy;
  /** Connects the backend's event hub, which tells `observer` of its jobs and calls `onConnected` each time its socket opens. */
  connectEvents(observer: JobObserver, onConnected: () => void): Events;
  ownership: OwnershipStore;
  /** `--upstream-queue-depth`. */
  depth: number;
  keyOf(keyId: string): KeyRecord | undefined;
  log: Logger;
  /** The key's execution seconds so far on the UTC day of `now` (for `daily_execution_seconds`). */
  executionSecondsToday(keyId: string, now: number): number;
  /** Told of each admitted job and of each job that ran (metering). */
  onAdmitted?(job: JobRecord): void;
  onEnded?(job: JobRecord): void;
  now?(): number;
}

/** How often jobs sent to ComfyUI are compared with its queue (in case an end was missed), and held jobs of other replicas picked up. */
const RECONCILE_INTERVAL_MS = 30_000;

/** A prompt to admit: the key, the body for ComfyUI (with the gateway's client_id) and the headers it is sent with. */
export interface Admission {
  key: KeyRecord;
  promptId: string;
  /** The client's own client_id, which its WebSocket uses. */
  clientId: string | null;
  request: HeldRequest;
  front: boolean;
}

export class JobService<Events extends BackendEvents = BackendEvents> {
  readonly jobs: JobStore;
  readonly backend: Backend & { events: Events };
  readonly scheduler: JobScheduler;
  private readonly observer: JobObserver;
  private readonly options: JobServiceOptions<Events>;
  private readonly now: () => number;
  private reconcileTimer: NodeJS.Timeout | null = null;
  /** Prompt ids being sent right now, not yet in the registry. */
  private readonly admitting = new Set<string>();
  private reconciling: Promise<void> | null = null;

  constructor(options: JobServiceOptions<Events>) {
    this.options = options;
    this.jobs = options.jobs;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.observer = createJobRecorder({
      jobs: options.jobs,
      ownership: options.ownership,
      log: options.log,
      onEnded: (job) => {
        options.onEnded?.(job);
        this.scheduler.pump();
      },
    });
    const events = options.connectEvents(this.observer, () => {
      void this.reconcile();
      this.scheduler.pump();
    });
    this.backend = { name: options.backendName, proxy: options.proxy, events };
    this.scheduler = new JobScheduler({
      backend: this.backend,
      jobs: options.jobs,
      depth: options.depth,
      keyOf: options.keyOf,
      log: options.log,
      now: this.now,
    });
  }

  /** Queues the held jobs of the registry and settles the sent ones with ComfyUI, then keeps doing so now and then. */
  start(): void {
    // A client using the gateway's clientId would take its socket's place in ComfyUI and with it every job's events.
    this.options.ownership
      .claim('client', this.backend.events.clientId, GATEWAY_CLIENT_OWNER)
      .catch((error: unknown) => this.options.log.warn({ err: error }, "the gateway's clientId could not be recorded"));
    this.scheduler.restore();
    void this.reconcile();
    this.reconcileTimer = setInterval(() => {
      this.scheduler.restore();
      void this.reconcile();
    }, RECONCILE_INTERVAL_MS).unref();
  }

  /** Compares sent jobs with ComfyUI now (also when the gateway's socket to it comes back); one run at a time. */
  reconcile(): Promise<void> {
    this.reconciling ??= reconcileJobs(this.backend, this.jobs, this.observer, this.now)
      .catch((error: unknown) => this.options.log.debug({ err: error }, 'jobs could not be compared with ComfyUI'))
      .finally(() => {
        this.reconciling = null;
      });
    return this.reconciling;
  }

  /**
   * Admits a prompt as a job. It goes to ComfyUI at once when nothing is held and ComfyUI has room, and
   * ComfyUI's answer is returned (the job then has the id ComfyUI answered with; a refused prompt leaves
   * no job); otherwise it is held and the gateway answers for it, with the job's id.
   * @throws GatewayError 429 QUEUE_LIMIT or EXECUTION_BUDGET_EXCEEDED past the key's quotas; 403 when a job
   *   already has that prompt_id; 502/504 when ComfyUI's answer is lost
   */
  async admit(admission: Admission): Promise<UpstreamAnswer> {
    const { key } = admission;
    const now = this.now();
    checkAdmission(
      key,
      {
        activeJobs: this.jobs.count({ keyId: key.key_id, statuses: ACTIVE_JOB_STATUSES }),
        executionSecondsToday: this.options.executionSecondsToday(key.key_id, now),
      },
      now,
    );
    const job: JobRecord = {
      id: admission.promptId,
      key_id: key.key_id,
      client_id: admission.clientId,
      backend: this.backend.name,
      upstream_id: null,
      status: 'held',
      admitted_at: now,
      forwarded_at: null,
      started_at: null,
      finished_at: null,
      execution_seconds: null,
      outputs: [],
      error: null,
      request: { ...admission.request },
      front: admission.front,
    };
    if (this.jobs.get(job.id) || this.admitting.has(job.id)) throw promptIdTaken();
    this.admitting.add(job.id);
    try {
      if (!this.scheduler.takeSlotNow(key.key_id)) return await this.holdJob(job);
      try {
        return await sendPrompt(this.backend, admission.request, (outcome) => this.recordSent(job, outcome));
      } finally {
        this.scheduler.sent();
      }
    } finally {
      this.admitting.delete(job.id);
    }
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
  private async recordSent(job: JobRecord, outcome: SendOutcome): Promise<void> {
    if (outcome.kind === 'refused') return;
    const id = outcome.kind === 'queued' ? outcome.upstreamId : outcome.sentId;
    const sent: JobRecord = { ...job, id, upstream_id: id, status: 'queued', forwarded_at: this.now(), request: null };
    if (await this.jobs.create(sent)) this.options.onAdmitted?.(sent);
    else this.options.log.warn({ job_id: id }, 'ComfyUI answered with the prompt_id of a job the registry already has');
  }

  /** Cancels a job the gateway still holds (on any replica); false when it is not held (it is ComfyUI's to cancel then). */
  async cancelHeld(id: string): Promise<boolean> {
    const cancelled = await this.jobs.update(id, { status: 'cancelled', finished_at: this.now(), request: null }, { ifStatus: 'held' });
    if (!cancelled) return false;
    this.scheduler.unhold(id);
    return true;
  }

  /** Notes that ComfyUI dropped a queued job on the key's request (ComfyUI itself sends no event for it). */
  async cancelledInComfyUI(job: JobRecord): Promise<void> {
    if (await this.jobs.update(job.id, { status: 'cancelled', finished_at: this.now() }, { ifStatus: 'queued' })) this.scheduler.pump();
  }

  close(): void {
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    this.scheduler.close();
  }
}

function promptIdTaken(): GatewayError {
  return forbidden('That prompt_id is taken: leave prompt_id out and one is made.');
}

/** The queue number a held job shows: after every number ComfyUI gives, in the order jobs were admitted. */
export function heldNumber(job: JobRecord): number {
  return Math.round(job.admitted_at * 1000);
}
