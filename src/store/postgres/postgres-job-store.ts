// The PostgreSQL job registry: the `jobs` table, with every job replicated in memory and kept in step across replicas.

import { JobIndex } from '../job-index.js';
import { parseJobRecord, patchedFields } from '../job-record.js';
import { JobSweeper, type JobRetentionOptions } from '../job-retention.js';
import type { JobPatch, JobRecord, JobStatus, JobStore } from '../types.js';
import type { PostgresDatabase } from './database.js';
import { CHANNELS } from './migrations.js';
import { ReplicaFeed } from './replica.js';

export interface PostgresJobStoreOptions extends JobRetentionOptions {
  database: PostgresDatabase;
  /** Safety-net reload interval (default 30 s). */
  reloadIntervalMs?: number;
}

/** A row as read (`updated`: its `updated_at` in Unix seconds) or announced (without `updated`). */
type JobRow = JobRecord & { renamed_from: string | null; rev: number; updated?: number };

/** A notification: the whole row, or the id and rev of a row too long to announce. */
type Announcement = JobRow | { fetch: string; rev: number };

/** An id a job was renamed away from, remembered for a while so that late news of it is not taken for a job. */
interface RenamedAway {
  key_id: string;
  admitted_at: number;
  rev: number;
  /** When it was noted (ms), to forget it after `RENAMED_AWAY_KEPT_MS`. */
  at: number;
}

/** Longer than any notification or reload can lag behind the rename. */
const RENAMED_AWAY_KEPT_MS = 10 * 60_000;

const COLUMNS =
  'id, key_id, client_id, backend, upstream_id, status, admitted_at, forwarded_at, started_at, finished_at, execution_seconds, outputs, error, request, front, ' +
  'renamed_from, rev::float8 AS rev, extract(epoch from updated_at)::float8 AS updated';

/** The columns a job is created with, in the order of the INSERT's parameters. */
const INSERT_COLUMNS = [
  'id',
  'key_id',
  'client_id',
  'backend',
  'upstream_id',
  'status',
  'admitted_at',
  'forwarded_at',
  'started_at',
  'finished_at',
  'execution_seconds',
  'outputs',
  'error',
  'request',
  'front',
] as const satisfies ReadonlyArray<keyof JobRecord>;

/** The columns a patch may set (every field but id, key_id and admitted_at). */
const PATCH_COLUMNS: ReadonlySet<string> = new Set(INSERT_COLUMNS.filter((column) => column !== 'id' && column !== 'key_id' && column !== 'admitted_at'));
const JSON_COLUMNS: ReadonlySet<string> = new Set(['outputs', 'error', 'request']);

const UNIQUE_VIOLATION = '23505';

/**
 * Jobs in the `jobs` table, read from memory. `create` is one `INSERT … ON CONFLICT DO NOTHING`, so an id
 * is taken once across replicas; `update` sets only the patched columns, so changes made by several
 * replicas to different fields do not undo each other; `rename` is one `UPDATE` of the id (one
 * transaction) that records the old id in `renamed_from`, so that every replica, told or reloading,
 * drops the old id. Each change is announced with the row (or its id, when too long) and applied by the
 * revision it carries, so a late notification never brings back an older state. Writes fail with the
 * database error while it cannot be reached; reads go on from memory.
 */
export class PostgresJobStore implements JobStore {
  private readonly database: PostgresDatabase;
  private readonly index = new JobIndex();
  /** The revision of each job in memory. */
  private readonly revs = new Map<string, number>();
  private readonly renamedAway = new Map<string, RenamedAway>();
  private readonly feed: ReplicaFeed<Announcement>;
  private readonly sweeper: JobSweeper;

  constructor(options: PostgresJobStoreOptions) {
    this.database = options.database;
    this.feed = new ReplicaFeed<Announcement>({
      database: this.database,
      channel: CHANNELS.jobs,
      reloadIntervalMs: options.reloadIntervalMs ?? 30_000,
      parse: (payload) => {
        try {
          return JSON.parse(payload) as Announcement;
        } catch {
          return null;
        }
      },
      onPayloads: async (announcements) => {
        const fetch: string[] = [];
        for (const a of announcements) {
          if (!('fetch' in a)) this.apply(a);
          else if ((this.revs.get(a.fetch) ?? -1) < a.rev) fetch.push(a.fetch);
        }
        if (fetch.length === 0) return;
        const { rows } = await this.database.query<JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE id = ANY($1)`, [fetch]);
        for (const row of rows) this.apply(row);
      },
      reloadSince: async (since) => {
        // In admission order, so that each job is added at the newest end of the lists (revisions decide, not order).
        const { rows } = await this.database.query<JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE updated_at > to_timestamp($1) ORDER BY admitted_at`, [since]);
        let newest: number | null = null;
        for (const row of rows) {
          this.apply(row);
          newest = Math.max(newest ?? 0, row.updated ?? 0);
        }
        return newest;
      },
    });
    this.sweeper = new JobSweeper(options, (cutoff, limit) => this.forgetBatch(cutoff, limit));
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
    this.sweeper.start();
  }

  get(id: string): JobRecord | undefined {
    return this.index.get(id);
  }

  byUpstreamId(backend: string, upstreamId: string): JobRecord | undefined {
    return this.index.byUpstreamId(backend, upstreamId);
  }

  list(options: { keyId?: string; statuses?: readonly JobStatus[]; offset: number; limit: number }): JobRecord[] {
    return this.index.list(options);
  }

  count(options: { keyId?: string; statuses?: readonly JobStatus[] }): number {
    return this.index.count(options);
  }

  active(): JobRecord[] {
    return this.index.active();
  }

  async create(job: JobRecord): Promise<boolean> {
    const { rows } = await this.database.query<JobRow>(
      `INSERT INTO jobs (${INSERT_COLUMNS.join(', ')}) VALUES (${INSERT_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
       ON CONFLICT (id) DO NOTHING RETURNING ${COLUMNS}`,
      INSERT_COLUMNS.map((column) => parameter(column, job[column])),
    );
    if (!rows[0]) return false;
    this.apply(rows[0]);
    return true;
  }

  async update(id: string, patch: JobPatch, options: { ifStatus?: JobStatus } = {}): Promise<JobRecord | undefined> {
    const { assignments, values } = patchAssignments(patch, 3);
    const where = `id = $1 AND ($2::text IS NULL OR status = $2)`;
    const { rows } = await this.database.query<JobRow>(
      assignments.length === 0 ? `SELECT ${COLUMNS} FROM jobs WHERE ${where}` : `UPDATE jobs SET ${assignments.join(', ')} WHERE ${where} RETURNING ${COLUMNS}`,
      [id, options.ifStatus ?? null, ...values],
    );
    return rows[0] ? this.applied(rows[0]) : undefined;
  }

  async rename(id: string, newId: string, patch: JobPatch): Promise<JobRecord | undefined> {
    if (id === newId) return undefined;
    const { assignments, values } = patchAssignments(patch, 3);
    try {
      const { rows } = await this.database.query<JobRow>(
        `UPDATE jobs SET ${['id = $2', 'renamed_from = $1', ...assignments].join(', ')} WHERE id = $1 RETURNING ${COLUMNS}`,
        [id, newId, ...values],
      );
      return rows[0] ? this.applied(rows[0]) : undefined;
    } catch (error) {
      if ((error as { code?: unknown }).code === UNIQUE_VIOLATION) return undefined;
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.sweeper.stop();
    this.feed.stop();
    await this.database.release();
  }

  /** Waits for the notifications received so far to be applied. */
  settled(): Promise<void> {
    return this.feed.settled();
  }

  /**
   * Forgets a batch of expired jobs here, then deletes a batch from the table. Every replica forgets by
   * the same rule, so deletions need no announcement; rows left by a delete that failed are found again
   * by the next sweep's query.
   */
  private async forgetBatch(cutoff: number, limit: number): Promise<number> {
    const kept = Date.now() - RENAMED_AWAY_KEPT_MS;
    for (const [id, away] of this.renamedAway) {
      if (away.at >= kept) break;
      this.renamedAway.delete(id);
    }
    const ids = this.index.expired(cutoff, limit);
    this.index.deleteMany(ids);
    for (const id of ids) this.revs.delete(id);
    const { rowCount } = await this.database.query(
      `DELETE FROM jobs WHERE id IN (
         SELECT id FROM jobs WHERE status NOT IN ('held', 'queued', 'running') AND coalesce(finished_at, admitted_at) < $1 LIMIT $2)`,
      [cutoff, limit],
    );
    return Math.max(ids.length, rowCount ?? 0);
  }

  /** Applies a row this replica wrote; resolves the job as it now is. */
  private applied(row: JobRow): JobRecord | undefined {
    this.apply(row);
    return this.index.get(row.id);
  }

  /** Takes a row into memory unless memory already holds that job at the same or a later revision. */
  private apply(row: JobRow): void {
    const job = parseJobRecord(row);
    if (typeof job === 'string') return;
    if ((this.revs.get(job.id) ?? -1) >= row.rev) return;
    const away = this.renamedAway.get(job.id);
    if (away && away.rev >= row.rev && isSameJob(away, job)) return;
    if (row.renamed_from !== null && row.renamed_from !== job.id) this.forgetRenamed(row.renamed_from, job, row.rev);
    this.index.set(job);
    this.revs.set(job.id, row.rev);
  }

  /** Drops the id a job had before `rev`, and remembers it was renamed away. */
  private forgetRenamed(oldId: string, job: JobRecord, rev: number): void {
    const old = this.index.get(oldId);
    if (old && isSameJob(old, job) && (this.revs.get(oldId) ?? -1) < rev) {
      this.index.delete(oldId);
      this.revs.delete(oldId);
    }
    const away = this.renamedAway.get(oldId);
    if (away && away.rev >= rev) return;
    this.renamedAway.delete(oldId);
    this.renamedAway.set(oldId, { key_id: job.key_id, admitted_at: job.admitted_at, rev, at: Date.now() });
  }
}

/** Whether two records are the same job under two ids: a rename keeps the key and the admission time. */
function isSameJob(a: { key_id: string; admitted_at: number }, b: { key_id: string; admitted_at: number }): boolean {
  return a.key_id === b.key_id && a.admitted_at === b.admitted_at;
}

/** A field as a query parameter: JSON columns as JSON text (SQL NULL for null). */
function parameter(column: string, value: unknown): unknown {
  if (value === undefined) return null;
  return JSON_COLUMNS.has(column) && value !== null ? JSON.stringify(value) : value;
}

/** `column = $n` for each field a patch sets, numbered from `first`, with their values. */
function patchAssignments(patch: JobPatch, first: number): { assignments: string[]; values: unknown[] } {
  const assignments: string[] = [];
  const values: unknown[] = [];
  for (const [column, value] of Object.entries(patchedFields(patch))) {
    if (!PATCH_COLUMNS.has(column)) continue;
    values.push(parameter(column, value));
    assignments.push(`${column} = $${first + values.length - 1}`);
  }
  return { assignments, values };
}
