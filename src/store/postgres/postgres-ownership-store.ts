// The PostgreSQL ownership store: who owns each prompt, clientId and file, and each key's ComfyUI user, replicated in memory.

import { ClaimOrder } from '../claim-retention.js';
import type { OwnedKind, OwnershipStore } from '../types.js';
import { isConnectionError, type PostgresDatabase } from './database.js';
import { CHANNELS } from './migrations.js';
import { ReplicaFeed } from './replica.js';

export interface PostgresOwnershipStoreOptions {
  database: PostgresDatabase;
  /** Safety-net reload interval (default 30 s). */
  reloadIntervalMs?: number;
  /** Prompt and clientId claims kept, each (default `CLAIMS_KEPT`); older ones are forgotten. */
  claimsKept?: number;
}

interface OwnershipRecord {
  key_id: string;
  at: number;
  outputs_recorded: boolean;
  comfy_user: string | null;
}

interface OwnershipRow extends OwnershipRecord {
  kind: string;
  id: string;
  updated: number;
}

/** A notification: the whole record, or only its seq when the record is too long to announce. */
type Announcement = { k: string; i: string; o: string; a: number; r: boolean; u: string | null } | { seq: number };

/** A write made while the database could not be reached: applied here at once, written once it is back. */
type PendingWrite =
  | { op: 'claim'; kind: OwnedKind; id: string; keyId: string; at: number }
  | { op: 'outputs'; promptId: string }
  | { op: 'comfy-user'; keyId: string; comfyUser: string; at: number };

/** Writes kept while the database is away; past this, writes fail as they would without the buffer. */
const MAX_PENDING_WRITES = 100_000;
const PENDING_RETRY_MS = 500;

const COMFY_USER = 'comfy-user';
const COLUMNS = 'kind, id, key_id, at, outputs_recorded, comfy_user, extract(epoch from updated_at)::float8 AS updated';

/**
 * Ownership in the `ownership` table. Lookups are served from memory. A claim is one
 * `INSERT … ON CONFLICT DO NOTHING`, so the first key wins even across replicas; each change is announced
 * with the record itself, so other replicas apply it without a query. While the database cannot be
 * reached, claims (and the other writes) are granted here and written once it is back (up to 100,000),
 * so user keys keep working; if another replica granted the same id meanwhile, the first to be written
 * wins everywhere.
 */
export class PostgresOwnershipStore implements OwnershipStore {
  private readonly database: PostgresDatabase;
  private readonly records = new Map<string, OwnershipRecord>();
  private readonly promptsByKey = new Map<string, Set<string>>();
  private readonly feed: ReplicaFeed<Announcement>;
  private readonly order: ClaimOrder;
  private pending: PendingWrite[] = [];
  private pendingTimer: NodeJS.Timeout | null = null;
  private writingPending: Promise<void> | null = null;

  constructor(options: PostgresOwnershipStoreOptions) {
    this.database = options.database;
    this.order = new ClaimOrder(options.claimsKept);
    this.feed = new ReplicaFeed<Announcement>({
      database: this.database,
      channel: CHANNELS.ownership,
      reloadIntervalMs: options.reloadIntervalMs ?? 30_000,
      parse: (payload) => {
        try {
          return JSON.parse(payload) as Announcement;
        } catch {
          return null;
        }
      },
      onPayloads: async (announcements) => {
        const seqs: number[] = [];
        for (const a of announcements) {
          if ('seq' in a) seqs.push(a.seq);
          else this.apply(a.k, a.i, { key_id: a.o, at: a.a, outputs_recorded: a.r, comfy_user: a.u });
        }
        if (seqs.length === 0) return;
        const { rows } = await this.database.query<OwnershipRow>(`SELECT ${COLUMNS} FROM ownership WHERE seq = ANY($1)`, [seqs]);
        for (const row of rows) this.apply(row.kind, row.id, row);
      },
      reloadSince: async (since) => {
        const { rows } = await this.database.query<OwnershipRow>(`SELECT ${COLUMNS} FROM ownership WHERE updated_at > to_timestamp($1) ORDER BY seq`, [since]);
        let newest: number | null = null;
        for (const row of rows) {
          this.apply(row.kind, row.id, row);
          newest = Math.max(newest ?? 0, row.updated);
        }
        return newest;
      },
    });
  }

  async open(): Promise<void> {
    this.database.retain();
    try {
      await this.feed.start();
    } catch (error) {
      this.feed.stop();
      await this.database.release();
      throw error;
    }
  }

  ownerOf(kind: OwnedKind, id: string): string | undefined {
    return this.records.get(`${kind}:${id}`)?.key_id;
  }

  async claim(kind: OwnedKind, id: string, keyId: string): Promise<string> {
    // An owner never changes once set, so the replica's answer is final.
    const known = this.records.get(`${kind}:${id}`);
    if (known) return known.key_id;
    const at = Date.now() / 1000;
    let owner: string;
    try {
      owner = await this.writeClaim(kind, id, keyId, at);
    } catch (error) {
      if (!this.canDefer(error)) throw error;
      this.apply(kind, id, { key_id: keyId, at, outputs_recorded: false, comfy_user: null });
      this.defer({ op: 'claim', kind, id, keyId, at });
      owner = keyId;
    }
    await this.forgetOldest(kind);
    return owner;
  }

  /**
   * Forgets the oldest claims of `kind` once too many are held: here, and in the table (other replicas
   * forget the same ones by the same rule). A delete that fails is left to the next batch.
   */
  private async forgetOldest(kind: OwnedKind): Promise<void> {
    const forgotten = this.order.overflow(kind);
    if (forgotten.length === 0) return;
    for (const id of forgotten) {
      const record = this.records.get(`${kind}:${id}`);
      this.records.delete(`${kind}:${id}`);
      this.order.removed(kind, id);
      if (kind === 'prompt' && record) this.promptsByKey.get(record.key_id)?.delete(id);
    }
    await this.database.query('DELETE FROM ownership WHERE kind = $1 AND id = ANY($2)', [kind, forgotten]).catch(() => undefined);
  }

  /** Inserts a claim unless one exists; resolves the owner, as written. */
  private async writeClaim(kind: string, id: string, keyId: string, at: number): Promise<string> {
    const inserted = await this.database.query<OwnershipRow>(
      `INSERT INTO ownership (kind, id, key_id, at) VALUES ($1, $2, $3, $4) ON CONFLICT (kind, id) DO NOTHING RETURNING ${COLUMNS}`,
      [kind, id, keyId, at],
    );
    // On a conflict the winner is read in a statement of its own, whose snapshot includes the winner's commit.
    const row = inserted.rows[0] ?? (await this.database.query<OwnershipRow>(`SELECT ${COLUMNS} FROM ownership WHERE kind = $1 AND id = $2`, [kind, id])).rows[0];
    if (!row) throw new Error(`ownership of ${kind} ${id} could not be read back`);
    this.apply(row.kind, row.id, row);
    return row.key_id;
  }

  recentPrompts(keyId: string, limit: number): Array<{ promptId: string; outputsRecorded: boolean }> {
    const prompts = [...(this.promptsByKey.get(keyId) ?? [])].map((promptId) => ({ promptId, record: this.records.get(`prompt:${promptId}`)! }));
    prompts.sort((a, b) => b.record.at - a.record.at);
    return prompts.slice(0, limit).map(({ promptId, record }) => ({ promptId, outputsRecorded: record.outputs_recorded }));
  }

  async markOutputsRecorded(promptId: string): Promise<void> {
    const current = this.records.get(`prompt:${promptId}`);
    if (!current || current.outputs_recorded) return;
    try {
      await this.writeOutputsRecorded(promptId);
    } catch (error) {
      if (!this.canDefer(error)) throw error;
      current.outputs_recorded = true;
      this.defer({ op: 'outputs', promptId });
    }
  }

  private async writeOutputsRecorded(promptId: string): Promise<void> {
    const { rows } = await this.database.query<OwnershipRow>(
      `UPDATE ownership SET outputs_recorded = true WHERE kind = 'prompt' AND id = $1 AND NOT outputs_recorded RETURNING ${COLUMNS}`,
      [promptId],
    );
    const current = this.records.get(`prompt:${promptId}`);
    if (rows[0]) this.apply('prompt', promptId, rows[0]);
    else if (current) current.outputs_recorded = true;
  }

  comfyUserOf(keyId: string): string | undefined {
    return this.records.get(`${COMFY_USER}:${keyId}`)?.comfy_user ?? undefined;
  }

  async setComfyUser(keyId: string, comfyUser: string): Promise<void> {
    const at = Date.now() / 1000;
    try {
      await this.writeComfyUser(keyId, comfyUser, at);
    } catch (error) {
      if (!this.canDefer(error)) throw error;
      this.apply(COMFY_USER, keyId, { key_id: keyId, at, outputs_recorded: false, comfy_user: comfyUser });
      this.defer({ op: 'comfy-user', keyId, comfyUser, at });
    }
  }

  private async writeComfyUser(keyId: string, comfyUser: string, at: number): Promise<void> {
    const { rows } = await this.database.query<OwnershipRow>(
      `INSERT INTO ownership (kind, id, key_id, at, comfy_user) VALUES ($1, $2, $2, $3, $4)
       ON CONFLICT (kind, id) DO UPDATE SET comfy_user = excluded.comfy_user, at = excluded.at RETURNING ${COLUMNS}`,
      [COMFY_USER, keyId, at, comfyUser],
    );
    this.apply(COMFY_USER, keyId, rows[0]!);
  }

  /** Writes made while the database was away and not written yet. */
  pendingWrites(): number {
    return this.pending.length;
  }

  /** Writes what was granted while the database was away, in order; stops at the first connection failure. */
  writePending(): Promise<void> {
    this.writingPending ??= (async () => {
      try {
        while (this.pending.length > 0) {
          const write = this.pending[0]!;
          try {
            if (write.op === 'claim') await this.writeClaim(write.kind, write.id, write.keyId, write.at);
            else if (write.op === 'outputs') await this.writeOutputsRecorded(write.promptId);
            else await this.writeComfyUser(write.keyId, write.comfyUser, write.at);
          } catch (error) {
            // Still away: try again later. Any other refusal would repeat forever: the write is dropped.
            if (isConnectionError(error)) throw error;
          }
          this.pending.shift();
        }
      } finally {
        this.writingPending = null;
      }
    })();
    return this.writingPending;
  }

  private canDefer(error: unknown): boolean {
    return isConnectionError(error) && this.pending.length < MAX_PENDING_WRITES;
  }

  private defer(write: PendingWrite): void {
    this.pending.push(write);
    this.pendingTimer ??= setInterval(() => {
      if (this.pending.length === 0) {
        clearInterval(this.pendingTimer!);
        this.pendingTimer = null;
        return;
      }
      void this.writePending().catch(() => undefined);
    }, PENDING_RETRY_MS).unref();
  }

  async close(): Promise<void> {
    if (this.pendingTimer) clearInterval(this.pendingTimer);
    this.pendingTimer = null;
    if (this.pending.length > 0) await this.writePending().catch(() => undefined);
    this.feed.stop();
    await this.database.release();
  }

  /** Waits for the notifications received so far to be applied. */
  settled(): Promise<void> {
    return this.feed.settled();
  }

  private apply(kind: string, id: string, row: OwnershipRecord): void {
    const recordId = `${kind}:${id}`;
    const before = this.records.get(recordId);
    const record: OwnershipRecord = {
      key_id: row.key_id,
      at: row.at,
      // Outputs once recorded stay recorded, whatever order notifications arrive in.
      outputs_recorded: row.outputs_recorded || before?.outputs_recorded === true,
      comfy_user: row.comfy_user ?? null,
    };
    this.records.set(recordId, record);
    if (!before) this.order.added(kind, id);
    if (kind !== 'prompt') return;
    if (before && before.key_id !== record.key_id) this.promptsByKey.get(before.key_id)?.delete(id);
    let prompts = this.promptsByKey.get(record.key_id);
    if (!prompts) this.promptsByKey.set(record.key_id, (prompts = new Set()));
    prompts.add(id);
  }
}
