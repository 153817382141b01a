// Browser sessions in `sessions.json` (+ journal), stored under the SHA-256 of their id so the file holds no usable cookie.

import { join } from 'node:path';
import { MAX_SESSIONS_PER_KEY, type Session, type SessionStore } from '../types.js';
import { hashSessionId, newSessionId } from '../session-ids.js';
import { JournaledTable } from './journaled-table.js';

function parseSession(value: unknown): Session | string {
  const v = value as Partial<Session> | null;
  if (typeof v !== 'object' || v === null || typeof v.keyId !== 'string' || typeof v.createdAt !== 'number' || typeof v.expiresAt !== 'number') {
    return 'needs keyId, createdAt and expiresAt';
  }
  // A session written before sessions were bound to a secret matches none, and so has ended.
  return { keyId: v.keyId, keyHash: typeof v.keyHash === 'string' ? v.keyHash : '', createdAt: v.createdAt, expiresAt: v.expiresAt };
}

/**
 * The JSON-file session store. The gateway and the CLI both write it (the CLI ends the sessions of a key
 * it disables, expires or deletes), taking turns through its lock file; the gateway picks the CLI's
 * changes up within `pollIntervalMs`, and one started later reads them from the files.
 */
export class FileSessionStore implements SessionStore {
  private readonly table: JournaledTable<Session>;

  constructor(options: { directory: string; pollIntervalMs?: number; onWrite?(seconds: number): void }) {
    this.table = new JournaledTable({
      snapshotPath: join(options.directory, 'sessions.json'),
      journalPath: join(options.directory, 'sessions.journal'),
      lockPath: join(options.directory, '.sessions.lock'),
      pollIntervalMs: options.pollIntervalMs ?? 500,
      ...(options.onWrite ? { onWrite: options.onWrite } : {}),
      parse: parseSession,
    });
  }

  open(): Promise<void> {
    return this.table.open();
  }

  async create(keyId: string, keyHash: string, ttlSeconds: number, now: number): Promise<{ id: string; session: Session }> {
    const id = newSessionId();
    const session: Session = { keyId, keyHash, createdAt: now, expiresAt: now + ttlSeconds };
    await this.table.change(() => {
      // Later written first, so that of two sessions made at the same time the older is dropped.
      const entries = [...this.table.entries()].reverse();
      const expired = entries.filter(([, s]) => s.expiresAt <= now);
      const beyondCap = entries
        .filter(([, s]) => s.keyId === keyId && s.expiresAt > now)
        .sort(([, a], [, b]) => b.createdAt - a.createdAt)
        .slice(MAX_SESSIONS_PER_KEY - 1);
      const dropped = [...expired, ...beyondCap].map(([hash]) => ({ op: 'delete' as const, id: hash }));
      return { ops: [...dropped, { op: 'put' as const, id: hashSessionId(id), value: session }], result: undefined };
    });
    return { id, session };
  }

  find(id: string, now: number): Session | undefined {
    const session = this.table.get(hashSessionId(id));
    return session && session.expiresAt > now ? session : undefined;
  }

  async delete(id: string): Promise<void> {
    const hash = hashSessionId(id);
    await this.table.change(() => ({ ops: this.table.get(hash) ? [{ op: 'delete', id: hash }] : [], result: undefined }));
  }

  async deleteForKey(keyId: string): Promise<void> {
    await this.table.change(() => ({
      ops: [...this.table.entries()].filter(([, s]) => s.keyId === keyId).map(([hash]) => ({ op: 'delete' as const, id: hash })),
      result: undefined,
    }));
  }

  async close(): Promise<void> {
    await this.table.close();
  }
}
