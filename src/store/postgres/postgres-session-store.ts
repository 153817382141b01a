// The PostgreSQL session store: browser sessions under the SHA-256 of their id, replicated in memory.

import { MAX_SESSIONS_PER_KEY, type Session, type SessionStore } from '../types.js';
import { hashSessionId, newSessionId } from '../session-ids.js';
import type { PostgresDatabase } from './database.js';
import { CHANNELS } from './migrations.js';
import { ReplicaFeed } from './replica.js';

export interface PostgresSessionStoreOptions {
  database: PostgresDatabase;
  /** Safety-net reload interval (default 30 s). */
  reloadIntervalMs?: number;
}

interface SessionRow {
  id_hash: string;
  key_id: string;
  key_hash: string;
  created_at: number;
  expires_at: number;
  revoked: boolean;
  updated: number;
}

const COLUMNS = 'id_hash, key_id, key_hash, created_at, expires_at, revoked, extract(epoch from updated_at)::float8 AS updated';
const CLEANUP_INTERVAL_MS = 3600_000;
/** First half of the advisory lock taken per key while a session is created, so replicas keep to the cap together. */
const SESSION_CAP_LOCK_CLASS = 0x73657373;

/**
 * Sessions in the `sessions` table, looked up in memory. A sign-out, the end of a key's sessions and
 * the cap on sessions per key mark rows revoked (and every replica drops them when the change is
 * announced); expired rows are deleted now and then.
 */
export class PostgresSessionStore implements SessionStore {
  private readonly database: PostgresDatabase;
  private readonly sessions = new Map<string, Session>();
  /** Revoked ids seen, with their expiry, so a late read never brings one back. */
  private readonly revoked = new Map<string, number>();
  private readonly feed: ReplicaFeed<string>;
  private cleanupTimer: NodeJS.Timeout | null = null;

  constructor(options: PostgresSessionStoreOptions) {
    this.database = options.database;
    this.feed = new ReplicaFeed<string>({
      database: this.database,
      channel: CHANNELS.sessions,
      reloadIntervalMs: options.reloadIntervalMs ?? 30_000,
      parse: (payload) => payload || null,
      onPayloads: async (hashes) => {
        const { rows } = await this.database.query<SessionRow>(`SELECT ${COLUMNS} FROM sessions WHERE id_hash = ANY($1)`, [[...new Set(hashes)]]);
        for (const row of rows) this.apply(row);
      },
      reloadSince: async (since) => {
        const { rows } = await this.database.query<SessionRow>(`SELECT ${COLUMNS} FROM sessions WHERE updated_at > to_timestamp($1) AND expires_at > $2`, [
          since,
          Date.now() / 1000,
        ]);
        let newest: number | null = null;
        for (const row of rows) {
          this.apply(row);
          newest = Math.max(newest ?? 0, row.updated);
        }
        return newest;
      },
    });
  }

  async open(): Promise<void> {
    await this.feed.open();
    this.cleanupTimer = setInterval(() => void this.cleanup().catch(() => undefined), CLEANUP_INTERVAL_MS).unref();
  }

  async create(keyId: string, keyHash: string, ttlSeconds: number, now: number): Promise<{ id: string; session: Session }> {
    const id = newSessionId();
    const session: Session = { keyId, keyHash, createdAt: now, expiresAt: now + ttlSeconds };
    const rows = await this.database.transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [SESSION_CAP_LOCK_CLASS, keyId]);
      const created = await client.query<SessionRow>(
        `INSERT INTO sessions (id_hash, key_id, key_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING ${COLUMNS}`,
        [hashSessionId(id), keyId, keyHash, session.createdAt, session.expiresAt],
      );
      const dropped = await client.query<SessionRow>(
        `UPDATE sessions SET revoked = true WHERE id_hash IN (
           SELECT id_hash FROM sessions WHERE key_id = $1 AND NOT revoked AND expires_at > $2 ORDER BY created_at DESC, updated_at DESC OFFSET $3
         ) RETURNING ${COLUMNS}`,
        [keyId, now, MAX_SESSIONS_PER_KEY],
      );
      return [...created.rows, ...dropped.rows];
    });
    for (const row of rows) this.apply(row);
    return { id, session };
  }

  find(id: string, now: number): Session | undefined {
    const session = this.sessions.get(hashSessionId(id));
    return session && session.expiresAt > now ? session : undefined;
  }

  async delete(id: string): Promise<void> {
    const hash = hashSessionId(id);
    const { rows } = await this.database.query<SessionRow>(`UPDATE sessions SET revoked = true WHERE id_hash = $1 RETURNING ${COLUMNS}`, [hash]);
    if (rows[0]) this.apply(rows[0]);
    else this.sessions.delete(hash);
  }

  async deleteForKey(keyId: string): Promise<void> {
    const { rows } = await this.database.query<SessionRow>(`UPDATE sessions SET revoked = true WHERE key_id = $1 AND NOT revoked RETURNING ${COLUMNS}`, [
      keyId,
    ]);
    for (const row of rows) this.apply(row);
  }

  async close(): Promise<void> {
    if (this.cleanupTimer) clearInterval(this.cleanupTimer);
    this.cleanupTimer = null;
    await this.feed.close();
  }

  /** Waits for the notifications received so far to be applied. */
  settled(): Promise<void> {
    return this.feed.settled();
  }

  private apply(row: SessionRow): void {
    if (row.revoked || this.revoked.has(row.id_hash)) {
      this.sessions.delete(row.id_hash);
      this.revoked.set(row.id_hash, row.expires_at);
      return;
    }
    this.sessions.set(row.id_hash, { keyId: row.key_id, keyHash: row.key_hash, createdAt: row.created_at, expiresAt: row.expires_at });
  }

  /** Forgets expired sessions here, and deletes those expired for a day from the table. */
  private async cleanup(): Promise<void> {
    const now = Date.now() / 1000;
    for (const [hash, session] of this.sessions) if (session.expiresAt <= now) this.sessions.delete(hash);
    for (const [hash, expiresAt] of this.revoked) if (expiresAt <= now) this.revoked.delete(hash);
    await this.database.query('DELETE FROM sessions WHERE expires_at < $1', [now - 86_400]);
  }
}
