// A key's row in PostgreSQL's `api_keys`: its columns, and the statements that read and write one row.

import type { QueryResult, QueryResultRow } from 'pg';
import type { KeyPatch, KeyRecord } from '../types.js';

/** Where a statement runs: the pool, or a client in a transaction. */
export interface Queryable {
  query<R extends QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/** A row of `api_keys` as `COLUMNS` reads it: a key (its role as stored) and its replication columns. */
export interface KeyRow extends Omit<KeyRecord, 'role'> {
  role: string;
  deleted: boolean;
  version: string;
  updated: number;
}

/** The columns of a key row, its `updated_at` as Unix seconds. */
export const COLUMNS = `key_id, name, created_at, last_used, rate_limit, is_active, metadata, role, expires_at, key_prefix, key_hash,
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

/** The key a row holds. */
export function toRecord(row: KeyRow): KeyRecord {
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

/** Inserts a key; a tombstone with the same id (a deleted key) is not brought back. Resolves the row, or null. */
export async function insertKey(client: Queryable, record: KeyRecord): Promise<KeyRow | null> {
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

/** Applies a patch to a live key; resolves its new row, or undefined when no live key has that id. */
export async function updateKeyRow(db: Queryable, keyId: string, patch: KeyPatch): Promise<KeyRow | undefined> {
  const sets: string[] = [];
  const values: unknown[] = [keyId];
  for (const [field, value] of Object.entries(patch)) {
    const encode = PATCHABLE[field];
    if (!encode || value === undefined) continue;
    values.push(encode(value));
    sets.push(`${field} = $${values.length}${JSON_COLUMNS.has(field) ? '::jsonb' : ''}`);
  }
  if (sets.length === 0) sets.push('key_id = key_id');
  const { rows } = await db.query<KeyRow>(`UPDATE api_keys SET ${sets.join(', ')} WHERE key_id = $1 AND NOT deleted RETURNING ${COLUMNS}`, values);
  return rows[0];
}

/** Turns a live key into a tombstone (so that the delete reaches replicas as a change); resolves its row, or undefined when there was none. */
export async function deleteKeyRow(db: Queryable, keyId: string): Promise<KeyRow | undefined> {
  const { rows } = await db.query<KeyRow>(`UPDATE api_keys SET deleted = true WHERE key_id = $1 AND NOT deleted RETURNING ${COLUMNS}`, [keyId]);
  return rows[0];
}
