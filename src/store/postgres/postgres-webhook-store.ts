// The PostgreSQL webhook delivery outbox: the `webhook_deliveries` table, shared by the replicas, each attempt claimed by one of them.

import { randomUUID } from 'node:crypto';
import { parseDelivery } from '../delivery-record.js';
import { JobSweeper } from '../job-retention.js';
import type { ClaimShares, DeliveryAttempt, DeliveryClaim, DeliveryState, WebhookDelivery, WebhookDeliveryStore } from '../types.js';
import type { PostgresDatabase } from './database.js';

export interface PostgresWebhookStoreOptions {
  database: PostgresDatabase;
  /** Seconds a delivered or failed delivery is kept after it was created. */
  retentionSeconds: number;
  /** How often old deliveries are looked for, in milliseconds (default 60 s). */
  sweepIntervalMs?: number;
}

const COLUMNS = 'id, job_id, key_id, event, url, body, state, created_at, next_attempt_at, attempts';
/** The columns of the rows a claim leases (`w`), named apart from those of the rows it took. */
const LEASED_COLUMNS = COLUMNS.split(', ')
  .map((column) => `w.${column}`)
  .join(', ');

/** Deliveries forgotten in one statement. */
const DELETE_BATCH = 1000;

/**
 * Deliveries in `webhook_deliveries`, read from the table (not replicated in memory: only the sender
 * and the admin API read them). A replica claims due rows with one `UPDATE … FROM (SELECT … FOR
 * UPDATE SKIP LOCKED)`, keys taking turns, that sets a lease and a token; only the token's holder
 * records the attempt.
 */
export class PostgresWebhookStore implements WebhookDeliveryStore {
  private readonly database: PostgresDatabase;
  private readonly sweeper: JobSweeper;
  private opened = false;

  constructor(options: PostgresWebhookStoreOptions) {
    this.database = options.database;
    this.sweeper = new JobSweeper(
      { retentionSeconds: options.retentionSeconds, ...(options.sweepIntervalMs ? { sweepIntervalMs: options.sweepIntervalMs } : {}) },
      (cutoff, limit) => this.forgetBatch(cutoff, limit),
    );
  }

  open(): Promise<void> {
    this.database.retain();
    this.opened = true;
    this.sweeper.start();
    return Promise.resolve();
  }

  async enqueue(d: WebhookDelivery): Promise<boolean> {
    const { rowCount } = await this.database.query(
      `INSERT INTO webhook_deliveries (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) ON CONFLICT (id) DO NOTHING`,
      [d.id, d.job_id, d.key_id, d.event, d.url, d.body, d.state, d.created_at, d.next_attempt_at, JSON.stringify(d.attempts)],
    );
    return rowCount === 1;
  }

  async existing(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const { rows } = await this.database.query<{ id: string }>('SELECT id FROM webhook_deliveries WHERE id = ANY($1)', [ids]);
    return new Set(rows.map((row) => row.id));
  }

  async claimDue(now: number, limit: number, leaseSeconds: number, shares?: ClaimShares): Promise<DeliveryClaim[]> {
    const token = randomUUID();
    const held = [...(shares?.held ?? [])];
    // Each key with due rows locks its oldest ones, as many as its cap leaves (skipping those another
    // replica is claiming, so that replica's claim leaves this one the next); the earliest turns are leased.
    const { rows } = await this.database.query<{ turn: number; next_attempt_at: number }>(
      `WITH due_keys AS (
         SELECT d.key_id, coalesce(h.held, 0) AS held
         FROM (SELECT DISTINCT key_id FROM webhook_deliveries
               WHERE state = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)) d
         LEFT JOIN unnest($5::text[], $6::int[]) AS h(key_id, held) ON h.key_id = d.key_id
         WHERE $7::int IS NULL OR coalesce(h.held, 0) < $7
       ), locked AS (
         SELECT k.held, l.* FROM due_keys k CROSS JOIN LATERAL (
           SELECT id, key_id, next_attempt_at, seq FROM webhook_deliveries
           WHERE key_id = k.key_id AND state = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
           ORDER BY next_attempt_at, seq LIMIT least($2, coalesce($7 - k.held, $2))
           FOR UPDATE SKIP LOCKED) l
       ), taken AS (
         SELECT id, (held + row_number() OVER (PARTITION BY key_id ORDER BY next_attempt_at, seq))::int AS turn, next_attempt_at, seq
         FROM locked ORDER BY turn, next_attempt_at, seq LIMIT $2)
       UPDATE webhook_deliveries w SET lease_until = $1::float8 + $3::float8, lease_token = $4
       FROM taken WHERE w.id = taken.id
       RETURNING ${LEASED_COLUMNS}, taken.turn`,
      [now, limit, leaseSeconds, token, held.map(([keyId]) => keyId), held.map(([, count]) => count), shares?.perKey ?? null],
    );
    // RETURNING keeps no order.
    return rows
      .sort((a, b) => a.turn - b.turn || a.next_attempt_at - b.next_attempt_at)
      .flatMap((row) => {
        const delivery = parseDelivery(row);
        return typeof delivery === 'string' ? [] : [{ delivery, token }];
      });
  }

  async recordAttempt(claim: DeliveryClaim, attempt: DeliveryAttempt, next: { state: DeliveryState; next_attempt_at: number | null }): Promise<boolean> {
    const { rowCount } = await this.database.query(
      `UPDATE webhook_deliveries SET attempts = attempts || $3::jsonb, state = $4, next_attempt_at = $5, lease_until = NULL, lease_token = NULL
       WHERE id = $1 AND lease_token = $2`,
      [claim.delivery.id, claim.token, JSON.stringify([attempt]), next.state, next.next_attempt_at],
    );
    return rowCount === 1;
  }

  async releaseClaim(claim: DeliveryClaim): Promise<void> {
    await this.database.query('UPDATE webhook_deliveries SET lease_until = NULL, lease_token = NULL WHERE id = $1 AND lease_token = $2', [
      claim.delivery.id,
      claim.token,
    ]);
  }

  async get(id: string): Promise<WebhookDelivery | undefined> {
    const { rows } = await this.database.query(`SELECT ${COLUMNS} FROM webhook_deliveries WHERE id = $1`, [id]);
    const delivery = rows[0] ? parseDelivery(rows[0]) : undefined;
    return typeof delivery === 'string' ? undefined : delivery;
  }

  async list(options: { jobId?: string; state?: DeliveryState; offset: number; limit: number }): Promise<{ deliveries: WebhookDelivery[]; hasMore: boolean }> {
    const { rows } = await this.database.query(
      `SELECT ${COLUMNS} FROM webhook_deliveries
       WHERE ($1::text IS NULL OR job_id = $1) AND ($2::text IS NULL OR state = $2)
       ORDER BY created_at DESC, seq DESC LIMIT $3 OFFSET $4`,
      [options.jobId ?? null, options.state ?? null, options.limit + 1, options.offset],
    );
    const deliveries = rows.flatMap((row) => {
      const delivery = parseDelivery(row);
      return typeof delivery === 'string' ? [] : [delivery];
    });
    return { deliveries: deliveries.slice(0, options.limit), hasMore: rows.length > options.limit };
  }

  async close(): Promise<void> {
    await this.sweeper.stop();
    if (this.opened) await this.database.release();
    this.opened = false;
  }

  /** Deletes delivered and failed deliveries created before `cutoff`, a batch at a time; pending ones stay. */
  private async forgetBatch(cutoff: number, limit: number): Promise<number> {
    const { rowCount } = await this.database.query(
      `DELETE FROM webhook_deliveries WHERE id IN (
         SELECT id FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1 ORDER BY created_at LIMIT $2)`,
      [cutoff, Math.min(limit, DELETE_BATCH)],
    );
    return rowCount ?? 0;
  }
}
