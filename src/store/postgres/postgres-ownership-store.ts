// The PostgreSQL ownership store: who owns each prompt, clientId and file, and each key's ComfyUI user, replicated in memory.

import { claimsFull } from '../../errors.js';
import { ClaimRetention, type ClaimRetentionOptions } from '../claim-retention.js';
import { foldCase } from '../file-name-case.js';
import type { OwnedKind, OwnershipStore } from '../types.js';
import type { PostgresDatabase } from './database.js';
import { DeferredWrites } from './deferred-writes.js';
import { CHANNELS } from './migrations.js';
import { ReplicaFeed } from './replica.js';
import { WriteRounds } from './write-rounds.js';
import { ShardedMap } from '../sharded-map.js';

export interface PostgresOwnershipStoreOptions {
  database: PostgresDatabase;
  /** Safety-net reload interval (default 30 s). */
  reloadIntervalMs?: number;
  /** How long prompt and clientId claims are kept, and how many may be held (defaults in claim-retention.ts). */
  retention?: ClaimRetentionOptions;
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

/** A notification: the whole record, only its seq when the record is too long to announce, or a released claim (`g`: its key). */
type Announcement = { k: string; i: string; o: string; a: number; r: boolean; u: string | null } | { seq: number } | { k: string; i: string; g: string };

/** A key's claim on `kind:id`, made at `at`. */
interface Claim {
  kind: string;
  id: string;
  keyId: string;
  at: number;
}

/** The record id of a claim or a row: `kind:id`. */
const claimKey = (claim: { kind: string; id: string }): string => `${claim.kind}:${claim.id}`;

/** A write made while the database could not be reached: applied here at once, written once it is back. */
type PendingWrite =
  | { op: 'claim'; kind: OwnedKind; id: string; keyId: string; at: number }
  | { op: 'release'; kind: OwnedKind; id: string; keyId: string }
  | { op: 'outputs'; promptId: string }
  | { op: 'comfy-user'; keyId: string; comfyUser: string; at: number };

const COMFY_USER = 'comfy-user';
/** File claims moved to their folded id per statement (see foldFileIds). */
const FOLD_PAGE = 10_000;
const COLUMNS = 'kind, id, key_id, at, outputs_recorded, comfy_user, extract(epoch from updated_at)::float8 AS updated';

/**
 * Ownership in the `ownership` table. Lookups are served from memory. A claim is an
 * `INSERT … ON CONFLICT DO NOTHING` (the claims made in one turn of the event loop in one, see
 * `WriteRounds`), so the first key wins even across replicas; each change is announced with the record
 * itself, so other replicas apply it without a query (an announcement naming another owner than the one
 * held is checked against the table instead); a released claim is announced as
 * gone, as are a key's claims past its share, and expired claims are forgotten by every replica by the same rule. While the database cannot be
 * reached, claims (and the other writes) are granted here and written once it is back (up to 100,000),
 * so user keys keep working; if another replica granted the same id meanwhile, the first to be written
 * wins everywhere.
 */
export class PostgresOwnershipStore implements OwnershipStore {
  private readonly database: PostgresDatabase;
  private readonly records = new ShardedMap<OwnershipRecord>();
  private readonly promptsByKey = new Map<string, Set<string>>();
  /** File claims read at open whose ids are not case-folded (recorded before ids were), for foldFileIds. */
  private readonly unfoldedFileIds = new Set<string>();
  private opened = false;
  private readonly feed: ReplicaFeed<Announcement>;
  private readonly retention: ClaimRetention;
  private readonly pending = new DeferredWrites<PendingWrite>({ write: (write) => this.writeDeferred(write) });
  /** Claims sent a round at a time: each round's in one statement. */
  private readonly claimRounds = new WriteRounds<Claim, OwnershipRow>({
    keyOf: claimKey,
    groupOf: () => 'claim',
    sendGroup: (claims) => this.claimRows(claims),
    sendAlone: (claim) => this.claimRow(claim),
  });

  constructor(options: PostgresOwnershipStoreOptions) {
    this.database = options.database;
    this.retention = new ClaimRetention(options.retention);
    this.feed = new ReplicaFeed<Announcement>({
      database: this.database,
      channel: CHANNELS.ownership,
      reloadIntervalMs: options.reloadIntervalMs ?? 30_000,
      onPayloads: async (announcements) => {
        const seqs: number[] = [];
        const disputed = new Map<string, { kind: string; id: string }>();
        for (const a of announcements) {
          if ('seq' in a) seqs.push(a.seq);
          else if ('g' in a) this.forgetHere(a.k, a.i, a.g);
          else if (this.isDisputed(a.k, a.i, a.o)) disputed.set(`${a.k}:${a.i}`, { kind: a.k, id: a.i });
          else this.apply(a.k, a.i, { key_id: a.o, at: a.a, outputs_recorded: a.r, comfy_user: a.u });
        }
        if (seqs.length > 0) {
          // Rows read from the table: what they say holds.
          const { rows } = await this.database.query<OwnershipRow>(`SELECT ${COLUMNS} FROM ownership WHERE seq = ANY($1)`, [seqs]);
          for (const row of rows) this.apply(row.kind, row.id, row);
        }
        if (disputed.size > 0) await this.reconcile([...disputed.values()]);
      },
      reloadSince: async (since) => {
        let newest: number | null = null;
        await this.database.eachPage<OwnershipRow>(`SELECT ${COLUMNS} FROM ownership WHERE updated_at > to_timestamp($1) ORDER BY seq`, [since], (rows) => {
          for (const row of rows) {
            this.apply(row.kind, row.id, row);
            newest = Math.max(newest ?? 0, row.updated);
          }
        });
        return newest;
      },
    });
  }

  async open(): Promise<void> {
    await this.feed.open();
    this.opened = true;
    await this.foldFileIds();
  }

  /**
   * Moves the file claims recorded before file ids were case-folded to their folded id (every replica does
   * it as it opens; a second move finds nothing). Of claims whose names differ only by case (two keys' files
   * on a case-sensitive disk), the one already folded, else the oldest, keeps the name; the others are
   * forgotten (on a case-insensitive disk they were one file).
   */
  private async foldFileIds(): Promise<void> {
    const unfolded = [...this.unfoldedFileIds].flatMap((id) => {
      const record = this.records.get(`file:${id}`);
      return record ? [{ id, at: record.at }] : [];
    });
    this.unfoldedFileIds.clear();
    unfolded.sort((a, b) => a.at - b.at);
    for (let start = 0; start < unfolded.length; start += FOLD_PAGE) {
      const ids = unfolded.slice(start, start + FOLD_PAGE).map((record) => record.id);
      const { rows } = await this.database.query<OwnershipRow>(
        `INSERT INTO ownership (kind, id, key_id, at)
         SELECT 'file', moved.folded, ownership.key_id, ownership.at
         FROM ownership JOIN unnest($1::text[], $2::text[]) AS moved (id, folded) USING (id) WHERE ownership.kind = 'file'
         ORDER BY ownership.at ON CONFLICT (kind, id) DO NOTHING RETURNING ${COLUMNS}`,
        [ids, ids.map(foldCase)],
      );
      for (const row of rows) this.apply(row.kind, row.id, row);
      await this.database.query(
        `WITH gone AS (DELETE FROM ownership WHERE kind = 'file' AND id = ANY($1) RETURNING kind, id, key_id)
         SELECT pg_notify($2, json_build_object('k', kind, 'i', id, 'g', key_id)::text) FROM gone`,
        [ids, CHANNELS.ownership],
      );
      for (const id of ids) this.forgetHere('file', id, this.records.get(`file:${id}`)?.key_id ?? '');
    }
  }

  ownerOf(kind: OwnedKind, id: string): string | undefined {
    return this.records.get(`${kind}:${id}`)?.key_id;
  }

  async claim(kind: OwnedKind, id: string, keyId: string): Promise<string> {
    // A claim here is one the table holds or held: refusing another key on it is never wrong.
    const at = Date.now() / 1000;
    const known = this.records.get(`${kind}:${id}`);
    if (known) {
      if (known.key_id === keyId && this.retention.needsRenewal(kind, known.at, at)) await this.renew(kind, id, keyId, at);
      return known.key_id;
    }
    const expired = this.retention.expired(kind, at);
    const outgrown = this.retention.pastShare(kind, keyId, expired);
    if (this.retention.isFull(kind, expired.length + outgrown.length)) throw claimsFull(kind, this.retention.cap);
    const forgettingOutgrown = this.forgetOutgrown(kind, keyId, outgrown);
    let owner: string;
    try {
      owner = await this.writeClaim(kind, id, keyId, at);
    } catch (error) {
      if (!this.pending.accepts(error)) throw error;
      this.apply(kind, id, { key_id: keyId, at, outputs_recorded: false, comfy_user: null });
      this.pending.push({ op: 'claim', kind, id, keyId, at });
      owner = keyId;
    }
    await forgettingOutgrown;
    await this.forgetExpired(kind, expired, at);
    return owner;
  }

  /** Renews the owner's clientId claim (a renewal lost while the database is away only shortens its life). */
  private async renew(kind: OwnedKind, id: string, keyId: string, at: number): Promise<void> {
    const { rows } = await this.database
      .query<OwnershipRow>(`UPDATE ownership SET at = $4 WHERE kind = $1 AND id = $2 AND key_id = $3 RETURNING ${COLUMNS}`, [kind, id, keyId, at])
      .catch(() => ({ rows: [] as OwnershipRow[] }));
    if (rows[0]) this.apply(kind, id, rows[0]);
  }

  /**
   * Forgets expired claims: here, and in the table unless another replica renewed them meanwhile (other
   * replicas forget the same ones by the same rule). A delete that fails is left to a later claim.
   */
  private async forgetExpired(kind: OwnedKind, ids: string[], now: number): Promise<void> {
    if (ids.length === 0) return;
    for (const id of ids) this.forgetHere(kind, id, this.records.get(`${kind}:${id}`)?.key_id ?? '');
    const cutoff = now - this.retention.retentionSeconds;
    await this.database.query('DELETE FROM ownership WHERE kind = $1 AND id = ANY($2) AND at < $3', [kind, ids, cutoff]).catch(() => undefined);
  }

  /**
   * Forgets claims of the key past its share: here at once (so that its other claims under way pick its
   * next oldest), and in the table, announced as releases are, so that every replica forgets them; a row is
   * deleted only while the key holds it and has not renewed it since through another replica (whose
   * announcement brings it back here). A delete that fails is left to a later claim.
   */
  private async forgetOutgrown(kind: OwnedKind, keyId: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const ats = ids.map((id) => this.records.get(`${kind}:${id}`)?.at ?? 0);
    for (const id of ids) this.forgetHere(kind, id, keyId);
    await this.database
      .query(
        `WITH gone AS (
           DELETE FROM ownership USING unnest($2::text[], $3::float8[]) AS outgrown (id, at)
           WHERE ownership.kind = $1 AND ownership.id = outgrown.id AND ownership.key_id = $4 AND ownership.at <= outgrown.at
           RETURNING ownership.kind, ownership.id, ownership.key_id)
         SELECT pg_notify($5, json_build_object('k', kind, 'i', id, 'g', key_id)::text) FROM gone`,
        [kind, ids, ats, keyId, CHANNELS.ownership],
      )
      .catch(() => undefined);
  }

  async release(kind: OwnedKind, id: string, keyId: string): Promise<void> {
    if (this.records.get(`${kind}:${id}`)?.key_id !== keyId) return;
    try {
      await this.writeRelease(kind, id, keyId);
    } catch (error) {
      if (!this.pending.accepts(error)) throw error;
      this.pending.push({ op: 'release', kind, id, keyId });
    }
    this.forgetHere(kind, id, keyId);
  }

  /** Deletes the key's claim and announces it, so every replica forgets it. */
  private async writeRelease(kind: string, id: string, keyId: string): Promise<void> {
    await this.database.query(
      `WITH gone AS (DELETE FROM ownership WHERE kind = $1 AND id = $2 AND key_id = $3 RETURNING kind, id, key_id)
       SELECT pg_notify($4, json_build_object('k', kind, 'i', id, 'g', key_id)::text) FROM gone`,
      [kind, id, keyId, CHANNELS.ownership],
    );
  }

  /** Drops a record from memory if `keyId` owns it. */
  private forgetHere(kind: string, id: string, keyId: string): void {
    const recordId = `${kind}:${id}`;
    if (this.records.get(recordId)?.key_id !== keyId) return;
    this.retention.changed(kind, id, this.records.get(recordId), undefined);
    this.records.delete(recordId);
    if (kind === 'prompt') this.promptsByKey.get(keyId)?.delete(id);
  }

  /** True when this replica holds `kind:id` for another key than `keyId`. */
  private isDisputed(kind: string, id: string, keyId: string): boolean {
    const known = this.records.get(`${kind}:${id}`);
    return known !== undefined && known.key_id !== keyId;
  }

  /**
   * Settles, from the table, claims announced for another owner than the one held here, rather than
   * believing either: the row is the owner now, and no row means no owner (a claim granted while the
   * database was away and not written yet is applied again when it is written).
   */
  private async reconcile(claims: Array<{ kind: string; id: string }>): Promise<void> {
    const { rows } = await this.database.query<OwnershipRow>(
      `SELECT ${COLUMNS} FROM ownership JOIN unnest($1::text[], $2::text[]) AS claimed (kind, id) USING (kind, id)`,
      [claims.map((c) => c.kind), claims.map((c) => c.id)],
    );
    const found = new Map(rows.map((row) => [`${row.kind}:${row.id}`, row]));
    for (const { kind, id } of claims) {
      const row = found.get(`${kind}:${id}`);
      if (row) this.apply(kind, id, row);
      else this.forgetHere(kind, id, this.records.get(`${kind}:${id}`)?.key_id ?? '');
    }
  }

  /** Inserts a claim unless one exists, with the other claims of its turn; resolves the owner, as written. */
  private async writeClaim(kind: string, id: string, keyId: string, at: number): Promise<string> {
    return this.appliedOwner({ kind, id, keyId, at }, await this.claimRounds.write({ kind, id, keyId, at }));
  }

  /** Takes the row written or read for a claim into memory; resolves its owner. */
  private appliedOwner(claim: Claim, row: OwnershipRow | undefined): string {
    if (!row) throw new Error(`ownership of ${claim.kind} ${claim.id} could not be read back`);
    this.apply(row.kind, row.id, row);
    return row.key_id;
  }

  /** Inserts claims of distinct `kind:id` in one statement, each unless one exists; resolves the row of each, its own or the one that was there. */
  private async claimRows(claims: Claim[]): Promise<Map<string, OwnershipRow>> {
    const inserted = await this.database.query<OwnershipRow>(
      `INSERT INTO ownership (kind, id, key_id, at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[])
       ON CONFLICT (kind, id) DO NOTHING RETURNING ${COLUMNS}`,
      [claims.map((c) => c.kind), claims.map((c) => c.id), claims.map((c) => c.keyId), claims.map((c) => c.at)],
    );
    const rows = new Map(inserted.rows.map((row) => [claimKey(row), row]));
    const taken = claims.filter((claim) => !rows.has(claimKey(claim)));
    if (taken.length > 0) {
      // The winners are read in a statement of its own, whose snapshot includes their commits.
      const { rows: winners } = await this.database.query<OwnershipRow>(
        `SELECT ${COLUMNS} FROM ownership JOIN unnest($1::text[], $2::text[]) AS claimed (kind, id) USING (kind, id)`,
        [taken.map((c) => c.kind), taken.map((c) => c.id)],
      );
      for (const row of winners) rows.set(claimKey(row), row);
    }
    return rows;
  }

  /** One claim in a statement of its own; resolves its row, as `claimRows` does. */
  private async claimRow(claim: Claim): Promise<OwnershipRow | undefined> {
    return (await this.claimRows([claim])).get(claimKey(claim));
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
      if (!this.pending.accepts(error)) throw error;
      current.outputs_recorded = true;
      this.pending.push({ op: 'outputs', promptId });
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
      if (!this.pending.accepts(error)) throw error;
      this.apply(COMFY_USER, keyId, { key_id: keyId, at, outputs_recorded: false, comfy_user: comfyUser });
      this.pending.push({ op: 'comfy-user', keyId, comfyUser, at });
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
    return this.pending.size;
  }

  /** Writes what was granted while the database was away, in order; stops at the first connection failure. */
  writePending(): Promise<void> {
    return this.pending.flush();
  }

  /** Writes one write granted while the database was away. */
  private async writeDeferred(write: PendingWrite): Promise<void> {
    if (write.op === 'claim') this.appliedOwner(write, await this.claimRow(write));
    else if (write.op === 'release') await this.writeRelease(write.kind, write.id, write.keyId);
    else if (write.op === 'outputs') await this.writeOutputsRecorded(write.promptId);
    else await this.writeComfyUser(write.keyId, write.comfyUser, write.at);
  }

  async close(): Promise<void> {
    await this.claimRounds.drained();
    await this.pending.close();
    await this.feed.close();
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
    this.retention.changed(kind, id, before, record);
    if (kind === 'file' && !this.opened && foldCase(id) !== id) this.unfoldedFileIds.add(id);
    if (kind !== 'prompt') return;
    if (before && before.key_id !== record.key_id) this.promptsByKey.get(before.key_id)?.delete(id);
    let prompts = this.promptsByKey.get(record.key_id);
    if (!prompts) this.promptsByKey.set(record.key_id, (prompts = new Set()));
    prompts.add(id);
  }
}
