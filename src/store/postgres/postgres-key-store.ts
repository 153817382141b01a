// The PostgreSQL key store: keys in `api_keys`, served from an in-memory replica that notifications keep fresh.

import type { PoolClient } from 'pg';
import type { PromptPolicy } from '../../policy/schema.js';
import type { KeyPatch, KeyRecord, KeyStore } from '../types.js';
import type { PostgresDatabase } from './database.js';
import { BOOTSTRAP_LOCK_ID, CHANNELS } from './migrations.js';
import { ReplicaFeed } from './replica.js';

export interface PostgresKeyStoreOptions {
  database: PostgresDatabase;
  /** How often keys changed since the last reload are read again, as a safety net under notifications (default 30 s). */
  reloadIntervalMs?: number;
  /** How often batched `last_used` times are written (default 2 s). */
  touchFlushMs?: number;
}

interface KeyRow {
  key_id: string;
  name: string;
  created_at: number;
  last_used: number | null;
  rate_limit: number;
  is_active: boolean;
  metadata: Record<string, unknown>;
  role: string;
  expires_at: number | null;
  key_prefix: string | null;
  key_hash: string;
  previous_key_hash: string | null;
  previous_key_valid_until: number | null;
  max_queued: number | null;
  max_running: number | null;
  daily_execution_seconds: number | null;
  policy: PromptPolicy | null;
  webhook_url: string | null;
  deleted: boolean;
  version: string;
  updated: number;
}

const COLUMNS = `key_id, name, created_at, last_used, rate_limit, is_active, metadata, role, expires_at, key_prefix, key_hash,
  previous_key_hash, previous_key_valid_until, max_queued, max_running, daily_execution_seconds, policy, webhook_url, deleted, version,
  extract(epoch from updated_at)::float8 AS updated`;

/** The columns a patch may set, with how each value is sent. */
const PATCHABLE: Record<string, (value: unknown) => unknown> = {
  name: (v) => v,
  last_used: (v) => v,
  rate_limit: (v) => v,
  is_active: (v) => v,
  metadata: (v) => JSON.stringify(v ?? {}),
  role: (v) => v,
  expires_at: (v) => v,
  key_prefix: (v) => v,
  key_hash: (v) => v,
  previous_key_hash: (v) => v,
  previous_key_valid_until: (v) => v,
  max_queued: (v) => v,
  max_running: (v) => v,
  daily_execution_seconds: (v) => v,
  policy: (v) => (v == null ? null : JSON.stringify(v)),
  webhook_url: (v) => v,
};

/** Columns of type jsonb: their parameter is JSON text. */
const JSON_COLUMNS = new Set(['metadata', 'policy']);

function toRecord(row: KeyRow): KeyRecord {
  return {
    key_id: row.key_id,
    name: row.name,
    created_at: row.created_at,
    last_used: row.last_used,
    rate_limit: row.rate_limit,
    is_active: row.is_active,
    metadata: row.metadata ?? {},
    role: row.role === 'admin' ? 'admin' : 'user',
    expires_at: row.expires_at,
    key_prefix: row.key_prefix,
    key_hash: row.key_hash,
    previous_key_hash: row.previous_key_hash,
    previous_key_valid_until: row.previous_key_valid_until,
    max_queued: row.max_queued,
    max_running: row.max_running,
    daily_execution_seconds: row.daily_execution_seconds,
    policy: row.policy ?? null,
    webhook_url: row.webhook_url ?? null,
  };
}

/**
 * Keys in PostgreSQL. Every read (`findByHash`, `get`, `list`) is served from memory: the table is read
 * at open, and each change is announced by a trigger with `pg_notify` in the transaction that makes it,
 * so every replica applies it within milliseconds of the commit. Rows changed since the newest one seen
 * are also read again every `reloadIntervalMs`, in case a notification was missed. Deleted keys stay as
 * tombstones, so a delete reaches replicas by the same path and the store never becomes pristine again.
 * Writes resolve once committed; they reject (and change nothing) while the database is unreachable,
 * and lookups keep answering from memory meanwhile.
 */
export class PostgresKeyStore implements KeyStore {
  private readonly database: PostgresDatabase;
  private readonly byId = new Map<string, KeyRecord>();
  private readonly byHash = new Map<string, KeyRecord>();
  /** The version of every key seen, tombstones included, so a late read never brings back an older state. */
  private readonly versions = new Map<string, number>();
  private readonly feed: ReplicaFeed<string>;
  private readonly touchFlushMs: number;
  private pendingTouches = new Map<string, number>();
  private touchTimer: NodeJS.Timeout | null = null;
  private everHadKey = false;
  private readonly changeListeners = new Set<(keyId: string, key: KeyRecord | undefined) => void>();

  constructor(options: PostgresKeyStoreOptions) {
    this.database = options.database;
    this.touchFlushMs = options.touchFlushMs ?? 2000;
    this.feed = new ReplicaFeed<string>({
      database: this.database,
      channel: CHANNELS.keys,
      reloadIntervalMs: options.reloadIntervalMs ?? 30_000,
      parse: (payload) => payload || null,
      onPayloads: async (ids) => {
        const unique = [...new Set(ids)];
        const { rows } = await this.database.query<KeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE key_id = ANY($1)`, [unique]);
        for (const row of rows) this.apply(row);
        // A key removed with a plain DELETE (by hand) has no row left.
        for (const id of unique) if (!rows.some((row) => row.key_id === id)) this.forget(id);
      },
      reloadSince: (since) => this.reloadSince(since),
    });
  }

  async open(): Promise<void> {
    await this.feed.open();
    this.touchTimer = setInterval(() => void this.flushTouches().catch(() => undefined), this.touchFlushMs).unref();
  }

  onKeyChange(listener: (keyId: string, key: KeyRecord | undefined) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  findByHash(keyHash: string): KeyRecord | undefined {
    return this.byHash.get(keyHash);
  }

  get(keyId: string): KeyRecord | undefined {
    return this.byId.get(keyId);
  }

  list(): KeyRecord[] {
    return [...this.byId.values()];
  }

  ids(): IterableIterator<string> {
    return this.byId.keys();
  }

  size(): number {
    return this.byId.size;
  }

  isPristine(): boolean {
    return !this.everHadKey;
  }

  async create(record: KeyRecord, options: { onlyIfPristine?: boolean } = {}): Promise<boolean> {
    const row = await this.database.transaction(async (client) => {
      if (options.onlyIfPristine) {
        // Replicas creating "the first key" at once take turns here; only the first finds the table empty.
        await client.query('SELECT pg_advisory_xact_lock($1)', [BOOTSTRAP_LOCK_ID]);
        const { rows } = await client.query('SELECT 1 FROM api_keys LIMIT 1');
        if (rows.length > 0) return null;
      }
      const inserted = await insertKey(client, record);
      if (!inserted) throw new Error(`a key with key_id ${record.key_id} already exists`);
      return inserted;
    });
    if (!row) {
      this.everHadKey = true;
      return false;
    }
    this.apply(row);
    return true;
  }

  async update(keyId: string, patch: KeyPatch): Promise<KeyRecord | undefined> {
    const sets: string[] = [];
    const values: unknown[] = [keyId];
    for (const [field, value] of Object.entries(patch)) {
      const encode = PATCHABLE[field];
      if (!encode || value === undefined) continue;
      values.push(encode(value));
      sets.push(`${field} = $${values.length}${JSON_COLUMNS.has(field) ? '::jsonb' : ''}`);
    }
    if (sets.length === 0) sets.push('key_id = key_id');
    const { rows } = await this.database.query<KeyRow>(`UPDATE api_keys SET ${sets.join(', ')} WHERE key_id = $1 AND NOT deleted RETURNING ${COLUMNS}`, values);
    const row = rows[0];
    if (!row) return undefined;
    this.apply(row);
    return this.byId.get(keyId) ?? toRecord(row);
  }

  async delete(keyId: string): Promise<boolean> {
    const { rows } = await this.database.query<KeyRow>(`UPDATE api_keys SET deleted = true WHERE key_id = $1 AND NOT deleted RETURNING ${COLUMNS}`, [keyId]);
    const row = rows[0];
    if (!row) return false;
    this.apply(row);
    return true;
  }

  touch(keyId: string, at: number): void {
    const record = this.byId.get(keyId);
    if (!record) return;
    record.last_used = at;
    this.pendingTouches.set(keyId, Math.max(at, this.pendingTouches.get(keyId) ?? 0));
  }

  async checkWritable(): Promise<void> {
    await this.database.query('SELECT 1');
  }

  async close(): Promise<void> {
    if (this.touchTimer) clearInterval(this.touchTimer);
    this.touchTimer = null;
    await this.flushTouches().catch(() => undefined);
    await this.feed.close();
  }

  /** Waits for the notifications received so far to be applied (for tests and the migrate command). */
  async settled(): Promise<void> {
    await this.feed.settled();
  }

  /** Writes the batched `last_used` times; they are kept for the next try when the write fails. */
  private async flushTouches(): Promise<void> {
    if (this.pendingTouches.size === 0) return;
    const touches = this.pendingTouches;
    this.pendingTouches = new Map();
    try {
      await this.database.query(
        `UPDATE api_keys AS k SET last_used = GREATEST(COALESCE(k.last_used, 0), t.at)
         FROM unnest($1::text[], $2::float8[]) AS t(key_id, at) WHERE k.key_id = t.key_id`,
        [[...touches.keys()], [...touches.values()]],
      );
    } catch (error) {
      for (const [keyId, at] of touches) this.pendingTouches.set(keyId, Math.max(at, this.pendingTouches.get(keyId) ?? 0));
      throw error;
    }
  }

  private async reloadSince(since: number): Promise<number | null> {
    let newest: number | null = null;
    await this.database.eachPage<KeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE updated_at > to_timestamp($1)`, [since], (rows) => {
      for (const row of rows) {
        this.apply(row);
        newest = Math.max(newest ?? 0, row.updated);
      }
    });
    if (since > 0) await this.forgetRemovedByHand();
    return newest;
  }

  /**
   * Keys removed by hand with a plain DELETE whose notification was missed leave no row to reload: drops
   * what the table no longer has. Memory holds every live row once reloaded, so the same count of live
   * keys on both sides means none is left over, and the ids are read (a page at a time) only otherwise.
   */
  private async forgetRemovedByHand(): Promise<void> {
    const { rows } = await this.database.query<{ live: number }>('SELECT count(*)::int AS live FROM api_keys WHERE NOT deleted');
    if (rows[0]!.live > 0) this.everHadKey = true;
    if (rows[0]!.live === this.byId.size) return;
    const present = new Set<string>();
    await this.database.eachPage<{ key_id: string }>('SELECT key_id FROM api_keys WHERE NOT deleted', [], (live) => {
      for (const row of live) present.add(row.key_id);
    });
    for (const id of [...this.byId.keys()]) if (!present.has(id)) this.forget(id);
  }

  /** Puts a row read from the table into memory, unless a newer version is already there. */
  private apply(row: KeyRow): void {
    this.everHadKey = true;
    const version = Number(row.version);
    const known = this.versions.get(row.key_id) ?? 0;
    if (version < known) return;
    const before = this.byId.get(row.key_id);
    if (version === known && before) {
      // Same content; only last_used may have moved on (it does not change the version).
      before.last_used = Math.max(before.last_used ?? 0, row.last_used ?? 0) || null;
      return;
    }
    this.versions.set(row.key_id, version);
    this.unindex(before);
    if (row.deleted) {
      this.byId.delete(row.key_id);
      this.announce(row.key_id, undefined);
      return;
    }
    const record = toRecord(row);
    const touched = this.pendingTouches.get(record.key_id);
    record.last_used = Math.max(record.last_used ?? 0, before?.last_used ?? 0, touched ?? 0) || null;
    this.byId.set(record.key_id, record);
    this.byHash.set(record.key_hash, record);
    if (record.previous_key_hash) this.byHash.set(record.previous_key_hash, record);
    this.announce(record.key_id, record);
  }

  private forget(keyId: string): void {
    const known = this.byId.get(keyId);
    this.unindex(known);
    this.byId.delete(keyId);
    if (known) this.announce(keyId, undefined);
  }

  /** Tells the listeners of a change applied here: this process's own, or another's read from the database. */
  private announce(keyId: string, key: KeyRecord | undefined): void {
    for (const listener of this.changeListeners) listener(keyId, key);
  }

  private unindex(record: KeyRecord | undefined): void {
    if (!record) return;
    for (const hash of [record.key_hash, record.previous_key_hash]) if (hash && this.byHash.get(hash) === record) this.byHash.delete(hash);
  }
}

/** Inserts a key; a tombstone with the same id (a deleted key) is not brought back. Resolves the row, or null. */
async function insertKey(client: PoolClient, record: KeyRecord): Promise<KeyRow | null> {
  const { rows } = await client.query<KeyRow>(
    `INSERT INTO api_keys (key_id, name, created_at, last_used, rate_limit, is_active, metadata, role, expires_at, key_prefix, key_hash, previous_key_hash,
       previous_key_valid_until, max_queued, max_running, daily_execution_seconds, policy, webhook_url)
     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, $18)
     ON CONFLICT (key_id) DO NOTHING RETURNING ${COLUMNS}`,
    [
      record.key_id,
      record.name,
      record.created_at,
      record.last_used,
      record.rate_limit,
      record.is_active,
      JSON.stringify(record.metadata ?? {}),
      record.role,
      record.expires_at,
      record.key_prefix,
      record.key_hash,
      record.previous_key_hash,
      record.previous_key_valid_until,
      record.max_queued,
      record.max_running,
      record.daily_execution_seconds,
      record.policy === null ? null : JSON.stringify(record.policy),
      record.webhook_url,
    ],
  );
  return rows[0] ?? null;
}
