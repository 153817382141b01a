// The keys in PostgreSQL's `api_keys` read and written a row at a time, without the in-memory replica a gateway keeps.

import type { KeyPatch, KeyRecord, KeyRows } from '../types.js';
import type { PostgresDatabase } from './database.js';
import { COLUMNS, deleteKeyRow, insertKey, toRecord, updateKeyRow, type KeyRow } from './key-row.js';

/** The live keys in the order `keys list` shows them, read through the index `api_keys_listed` (no sort of the table). */
export const LIVE_KEYS_OLDEST_FIRST = `SELECT ${COLUMNS} FROM api_keys WHERE NOT deleted ORDER BY created_at, key_id`;

/**
 * Each call is one statement on the rows it needs, found by key_id (the primary key); `eachPage`
 * reads the live keys through a cursor, a page at a time. Nothing is loaded at open and nothing is
 * listened to, so a command's cost does not grow with the table. Every write goes through the table's
 * triggers, which announce it (`pg_notify`) to the gateways' replicas as a gateway's own writes are.
 */
export class PostgresKeyRows implements KeyRows {
  private readonly database: PostgresDatabase;

  constructor(options: { database: PostgresDatabase }) {
    this.database = options.database;
  }

  async get(keyId: string): Promise<KeyRecord | undefined> {
    const { rows } = await this.database.query<KeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE key_id = $1 AND NOT deleted`, [keyId]);
    return rows[0] && toRecord(rows[0]);
  }

  async create(record: KeyRecord): Promise<void> {
    // A conflict with a tombstone counts too: a deleted key's id is never used again.
    if (!(await insertKey(this.database, record))) throw new Error(`a key with key_id ${record.key_id} already exists`);
  }

  async update(keyId: string, patch: KeyPatch): Promise<KeyRecord | undefined> {
    const row = await updateKeyRow(this.database, keyId, patch);
    return row && toRecord(row);
  }

  async delete(keyId: string): Promise<boolean> {
    return (await deleteKeyRow(this.database, keyId)) !== undefined;
  }

  eachPage(onPage: (records: KeyRecord[]) => void | Promise<void>): Promise<void> {
    return this.database.eachPage<KeyRow>(LIVE_KEYS_OLDEST_FIRST, [], (rows) => onPage(rows.map(toRecord)));
  }
}
