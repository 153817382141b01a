// Webhook events of jobs: enqueued durably when a job's status changes here, then sent (and retried) from the outbox by a loop.

import type { Agent } from 'undici';
import type { Logger } from '../log/logger.js';
import { outboundAgent } from '../net/outbound.js';
import { JOB_STATUSES } from '../store/job-record.js';
import {
  ACTIVE_JOB_STATUSES,
  type DeliveryClaim,
  type DeliveryLease,
  type DeliveryLeases,
  type JobRecord,
  type JobStatus,
  type JobStore,
  type KeyStore,
  type WebhookDelivery,
  type WebhookDeliveryStore,
  type WebhookEvent,
} from '../store/types.js';
import { deliveryLifetimeSeconds, nextAttemptAt } from './retry.js';
import { DELIVERY_TIMEOUT_MS, sendDelivery } from './send.js';
import { deliveryIdOf, signingSecretsOf } from './signature.js';

/** The event a job's status means, if any. */
export function eventOf(status: JobStatus): WebhookEvent | null {
  switch (status) {
    case 'running':
      return 'job.started';
    case 'success':
      return 'job.succeeded';
    case 'error':
      return 'job.failed';
    case 'cancelled':
    case 'interrupted':
      return 'job.cancelled';
    default:
      return null;
  }
}

export interface WebhookOutboxOptions {
  store: WebhookDeliveryStore;
  /** The job registry, read at start-up for ended jobs whose event is missing. */
  jobs: Pick<JobStore, 'list'>;
  /** A job as the jobs API shows it (the event's `data.job`). */
  view(job: JobRecord): Record<string, unknown>;
  /** `--webhook-secret`, from which each key's signing secret is derived. */
  secret: string;
  /** The keys, read at each attempt for the secrets of the delivery's key. */
  keys: Pick<KeyStore, 'get'>;
  /** `--webhook-allow-private`. */
  allowPrivate: boolean;
  /** The ComfyUI backends' URLs, which a delivery never reaches (see outboundAgent). */
  backends: readonly URL[];
  /** `--webhook-retry-base`, in seconds: the first retry's delay. */
  retryBaseSeconds: number;
  /** With Redis: leases shared by the replicas, so that the per-key cap holds across them (without, it holds per replica). */
  leases?: DeliveryLeases;
  log: Logger;
}

/** Deliveries sent at once, at most. */
const MAX_IN_FLIGHT = 16;
/**
 * Deliveries of one key sent at once, at most: a key whose receiver hangs holds 4 of the 16 for an
 * attempt's 10 s, so three such keys still leave room for the others, and 4 at once is ample for a
 * receiver that answers.
 */
const PER_KEY_IN_FLIGHT = 4;
/** How long a claimed delivery is this replica's: longer than an attempt (10 s) can take. */
const LEASE_SECONDS = 60;
/**
 * How long a key's shared attempt lease lasts unless given back: longer than an attempt can take (its
 * 10 s, the name lookup of its URL before them, and some skew of the replicas' clocks), so that the
 * leases of a replica that crashed mid-attempt free themselves.
 */
const ATTEMPT_LEASE_MS = DELIVERY_TIMEOUT_MS + 10_000;
/** Delivery ids enqueued here lately, remembered so that each later write of an ended job does not enqueue again. */
const REMEMBERED_IDS = 10_000;
/** Ended jobs read at a time by the start-up catch-up. */
const CATCH_UP_PAGE = 500;
const DAY_SECONDS = 86_400;
const ENDED_STATUSES = JOB_STATUSES.filter((status) => !ACTIVE_JOB_STATUSES.includes(status));

/**
 * The webhook outbox of one gateway. `jobChanged` enqueues the event of a job's new status (when the
 * job's webhook asks for it) under an id derived from the job and the event, so that enqueueing twice
 * is harmless; at `start`, ended jobs whose event is missing (a crash between the job's write and the
 * enqueue) get it. A loop claims due deliveries (one replica per attempt; keys take turns, with at
 * most `PER_KEY_IN_FLIGHT` of one key at once, so a key whose receiver hangs stalls no other key) and
 * sends them: 2xx is `delivered`; anything else is tried again on the schedule of retry.ts, then `failed`.
 * With `leases`, each attempt also holds one of its key's `PER_KEY_IN_FLIGHT` leases shared by the
 * replicas; a claim whose key has none left is given back, and that key waits for the next tick.
 */
export class WebhookOutbox {
  private readonly options: WebhookOutboxOptions;
  private readonly agent: Agent;
  private readonly remembered = new Set<string>();
  /** Deliveries whose enqueue failed (the store could not be written), tried again at each tick. */
  private readonly unstored = new Map<string, WebhookDelivery>();
  private storingAgain = false;
  private readonly closing = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  /** The attempts in flight of each key that has any. */
  private readonly inFlightByKey = new Map<string, number>();
  /** Keys whose shared leases were all held at the last try (by other replicas): left out of claims until the next tick. */
  private readonly leasesHeldElsewhere = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private claiming = false;
  private again = false;

  constructor(options: WebhookOutboxOptions) {
    this.options = options;
    this.agent = outboundAgent(options.allowPrivate, options.backends);
  }

  /** Looks for due deliveries every quarter of the retry base (50 ms to 1 s), after enqueueing what ended jobs lack. */
  start(): void {
    const pollMs = Math.min(1000, Math.max(50, (this.options.retryBaseSeconds * 1000) / 4));
    this.timer = setInterval(() => {
      this.storeAgain();
      this.leasesHeldElsewhere.clear();
      this.pump();
    }, pollMs).unref();
    void this.catchUp()
      .catch((error: unknown) => this.options.log.warn({ err: error }, 'webhook events of ended jobs could not be enqueued'))
      .finally(() => this.pump());
  }

  /** A job was written here: enqueues the event of its status if its webhook asks for it. Never throws. */
  jobChanged(job: JobRecord): void {
    const delivery = this.deliveryFor(job, Date.now() / 1000);
    if (!delivery || this.remembered.has(delivery.id)) return;
    this.remember(delivery.id);
    this.store(delivery);
  }

  /** Enqueues a delivery; one that cannot be stored now is kept here and tried again at the next tick. */
  private store(delivery: WebhookDelivery): void {
    this.options.store.enqueue(delivery).then(
      () => this.pump(),
      (error: unknown) => {
        this.options.log.warn({ err: error, job_id: delivery.job_id, event: delivery.event }, 'a webhook event could not be enqueued; it is tried again');
        if (this.unstored.size < REMEMBERED_IDS) this.unstored.set(delivery.id, delivery);
      },
    );
  }

  /**
   * Tries again to enqueue the deliveries the store refused, one at a time while the store refuses
   * (those left when the gateway stops are enqueued at its next start).
   */
  private storeAgain(): void {
    const first = this.unstored.values().next().value;
    if (!first || this.storingAgain) return;
    this.storingAgain = true;
    this.options.store.enqueue(first).then(
      () => {
        this.unstored.delete(first.id);
        this.storingAgain = false;
        this.storeAgain();
        this.pump();
      },
      () => {
        this.storingAgain = false;
      },
    );
  }

  /** Stops the loop and abandons the attempts in flight (not recorded: they are tried again later). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.closing.abort();
    await Promise.allSettled([...this.inFlight]);
    await this.agent.close().catch(() => undefined);
  }

  /** The delivery of the event of the job's status, or null when its webhook does not ask for it. */
  private deliveryFor(job: JobRecord, now: number): WebhookDelivery | null {
    const event = eventOf(job.status);
    if (!job.webhook || !event || !job.webhook.events.includes(event)) return null;
    const id = deliveryIdOf(job.id, event);
    const body = JSON.stringify({ id, type: event, created: Math.floor(now), data: { job: this.options.view(job) } });
    return { id, job_id: job.id, key_id: job.key_id, event, url: job.webhook.url, body, state: 'pending', created_at: now, next_attempt_at: now, attempts: [] };
  }

  private remember(id: string): void {
    if (this.remembered.size >= REMEMBERED_IDS) this.remembered.delete(this.remembered.values().next().value!);
    this.remembered.add(id);
  }

  /**
   * Enqueues the end event of every recently ended job with a webhook that asks for it and has none
   * yet. Only jobs that ended within a delivery's lifetime (24 hours with the default retry base) are
   * looked at, newest admitted first, down to those admitted a day before that: an older event would be
   * given up at once. So a start-up costs the last day's jobs, not the whole registry.
   */
  private async catchUp(): Promise<void> {
    const lifetime = deliveryLifetimeSeconds(this.options.retryBaseSeconds);
    const endedSince = Date.now() / 1000 - lifetime;
    const admittedSince = endedSince - DAY_SECONDS;
    for (let offset = 0; !this.closing.signal.aborted; offset += CATCH_UP_PAGE) {
      const page = this.options.jobs.list({ statuses: ENDED_STATUSES, offset, limit: CATCH_UP_PAGE });
      const now = Date.now() / 1000;
      const recent = page.filter((job) => (job.finished_at ?? 0) >= endedSince);
      const wanted = recent.flatMap((job) => this.deliveryFor(job, now) ?? []);
      const stored = await this.options.store.existing(wanted.map((delivery) => delivery.id));
      for (const delivery of wanted) {
        this.remember(delivery.id);
        if (!stored.has(delivery.id) && (await this.options.store.enqueue(delivery))) {
          this.options.log.info({ delivery_id: delivery.id, job_id: delivery.job_id, event: delivery.event }, 'webhook event enqueued at start-up');
        }
      }
      if (page.length < CATCH_UP_PAGE || page.at(-1)!.admitted_at < admittedSince) return;
    }
  }

  /** Claims due deliveries while there is room, and sends them. */
  private pump(): void {
    if (this.closing.signal.aborted) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    const room = MAX_IN_FLIGHT - this.inFlight.size;
    if (room <= 0) return;
    this.claiming = true;
    const held = new Map(this.inFlightByKey);
    for (const keyId of this.leasesHeldElsewhere) held.set(keyId, PER_KEY_IN_FLIGHT);
    this.options.store
      .claimDue(Date.now() / 1000, room, LEASE_SECONDS, { perKey: PER_KEY_IN_FLIGHT, held })
      .then((claims) => this.leased(claims))
      .then((leased) => {
        for (const { claim, lease } of leased) {
          const keyId = claim.delivery.key_id;
          this.inFlightByKey.set(keyId, (this.inFlightByKey.get(keyId) ?? 0) + 1);
          const attempt: Promise<void> = this.attempt(claim).finally(() => {
            lease?.release();
            // One of the key's leases is free now, whoever holds the others.
            this.leasesHeldElsewhere.delete(keyId);
            this.inFlight.delete(attempt);
            const left = this.inFlightByKey.get(keyId)! - 1;
            if (left > 0) this.inFlightByKey.set(keyId, left);
            else this.inFlightByKey.delete(keyId);
            this.pump();
          });
          this.inFlight.add(attempt);
        }
      })
      .catch((error: unknown) => this.options.log.warn({ err: error }, 'due webhook deliveries could not be read'))
      .finally(() => {
        this.claiming = false;
        if (this.again) {
          this.again = false;
          this.pump();
        }
      });
  }

  /**
   * The claims that got one of their key's shared leases (all of them without `leases`), each with its
   * lease. A claim whose key has no lease left is given back at once, and its key is left out of claims
   * until the next tick (a claim made at once fills the room with other keys' deliveries).
   */
  private async leased(claims: DeliveryClaim[]): Promise<Array<{ claim: DeliveryClaim; lease?: DeliveryLease }>> {
    const { leases, store, log } = this.options;
    if (!leases) return claims.map((claim) => ({ claim }));
    const taken = await Promise.all(claims.map((claim) => leases.take(claim.delivery.key_id, PER_KEY_IN_FLIGHT, ATTEMPT_LEASE_MS)));
    return claims.flatMap((claim, i) => {
      const lease = taken[i];
      if (lease) return [{ claim, lease }];
      this.leasesHeldElsewhere.add(claim.delivery.key_id);
      // The room it took goes to the other keys at once.
      this.again = true;
      store.releaseClaim(claim).catch((error: unknown) => {
        log.warn({ err: error, delivery_id: claim.delivery.id }, 'a webhook delivery could not be given back; it is tried again once its claim runs out');
      });
      return [];
    });
  }

  /** Sends one attempt and records it, with when to try again or how it ended. */
  private async attempt(claim: DeliveryClaim): Promise<void> {
    const { delivery } = claim;
    const { secret, keys, allowPrivate, retryBaseSeconds, log } = this.options;
    const key = keys.get(delivery.key_id);
    let attempt;
    try {
      attempt = key
        ? await sendDelivery(delivery, {
            signingSecrets: signingSecretsOf(secret, key, Date.now() / 1000),
            agent: this.agent,
            allowPrivate,
            signal: this.closing.signal,
          })
        : { at: Date.now() / 1000, status: null, error: 'the key was deleted: there is no secret to sign the event with', duration_ms: 0 };
    } catch {
      return; // the gateway is closing
    }
    const ok = attempt.status !== null && attempt.status >= 200 && attempt.status < 300;
    const retryAt = ok || !key ? null : nextAttemptAt(delivery.created_at, delivery.attempts.length + 1, Date.now() / 1000, retryBaseSeconds);
    const state = ok ? 'delivered' : retryAt === null ? 'failed' : 'pending';
    const fields = { delivery_id: delivery.id, job_id: delivery.job_id, event: delivery.event, status: attempt.status, error: attempt.error };
    if (!ok)
      log.warn(
        { ...fields, attempt: delivery.attempts.length + 1, next_attempt_at: retryAt },
        state === 'failed' ? 'webhook delivery failed for good' : 'webhook delivery failed; it is tried again',
      );
    await this.options.store.recordAttempt(claim, attempt, { state, next_attempt_at: retryAt }).catch((error: unknown) => {
      log.warn({ err: error, delivery_id: delivery.id }, 'a webhook attempt could not be recorded; the delivery is tried again');
    });
  }
}
