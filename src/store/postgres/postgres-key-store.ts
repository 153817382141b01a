// The PostgreSQL key store: keys in `api_keys`, served from an in-memory replica that notifications keep fresh.

import type { KeyPatch, KeyRecord, KeyStore } from '../types.js';
import type { PostgresDatabase } from './database.js';
import { COLUMNS, deleteKeyRow, insertKey, toRecord, updateKeyRow, type KeyRow } from './key-row.js';
import { BOOTSTRAP_LOCK_ID, CHANNELS } from './migrations.js';
import { ReplicaFeed } from './replica.js';

export interface PostgresKeyStoreOptions {
  database: PostgresDatabase;
  /** How often keys changed since the last reload are read again, as a safety net under notifications (default 30 s). */
  reloadIntervalMs?: number;
  /** How often batched `last_used` times are written (default 2 s). */
  touchFlushMs?: number;
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
    const row = await updateKeyRow(this.database, keyId, patch);
    if (!row) return undefined;
    this.apply(row);
    return this.byId.get(keyId) ?? toRecord(row);
  }

  async delete(keyId: string): Promise<boolean> {
    const row = await deleteKeyRow(this.database, keyId);
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
