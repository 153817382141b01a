// The PostgreSQL job registry: the `jobs` table, with every job replicated in memory and kept in step across replicas.

import { IndexedJobReads } from '../job-index.js';
import { parseJobRecord, patchedJob } from '../job-record.js';
import { JobSweeper, type JobRetentionOptions } from '../job-retention.js';
import type { JobPatch, JobRecord, JobStatus, JobStore } from '../types.js';
import { isConnectionError, type PostgresDatabase } from './database.js';
import { DeferredWrites } from './deferred-writes.js';
import {
  eachJobRevisionPageChangedSince,
  idOf,
  insertJob,
  insertJobs,
  jobRows,
  updateJob,
  updateJobs,
  updateShape,
  type JobRow,
  type JobWrite,
} from './job-statements.js';
import { CHANNELS } from './migrations.js';
import { ReplicaFeed } from './replica.js';
import { WriteRounds } from './write-rounds.js';

export interface PostgresJobStoreOptions extends JobRetentionOptions {
  database: PostgresDatabase;
  /** Safety-net reload interval (default 30 s). */
  reloadIntervalMs?: number;
  /** Writes kept while the database cannot be reached (default `MAX_DEFERRED_WRITES`). */
  maxDeferredWrites?: number;
}

/** A notification: the whole row, or the id and rev of a row too long to announce. */
type Announcement = JobRow | { fetch: string; rev: number };

/**
 * Jobs in the `jobs` table, read from memory. `create` is an `INSERT … ON CONFLICT DO NOTHING`, so an id
 * is taken once across replicas; `update` sets only the patched columns, so changes made by several
 * replicas to different fields do not undo each other. Each change is announced with the row (or its
 * id, when too long) and applied by the revision it carries, so a late notification never brings back
 * an older state. The writes made in one turn of the event loop go together (`WriteRounds`): one
 * `INSERT` for the creates, one `UPDATE` for each set of columns patched.
 *
 * While the database cannot be reached, a write is applied here and answered as memory allows (an id
 * this replica knows is taken; `ifStatus` is checked against memory), and queued (up to 100,000); the
 * queue is written in order once the database answers, before any newer write. Until a job's queued
 * writes are written, rows read for it do not replace what memory has. A queued write that does not take
 * leaves the table's row in force: a create that lost its id to another replica's job (with the writes
 * queued after it for that job), or an update of a job the table no longer has or no longer has in the
 * status it required. Other errors reject, as does a write past the bound.
 */
export class PostgresJobStore extends IndexedJobReads implements JobStore {
  private readonly database: PostgresDatabase;
  /** The revision of each job in memory, as last read (a write queued here does not change it). */
  private readonly revs = new Map<string, number>();
  private readonly feed: ReplicaFeed<Announcement>;
  private readonly sweeper: JobSweeper;
  private readonly deferred: DeferredWrites<JobWrite>;
  /** Writes sent a round at a time, after what `deferred` holds. */
  private readonly rounds: WriteRounds<JobWrite, JobRow>;
  private readonly changeListeners = new Set<() => void>();

  constructor(options: PostgresJobStoreOptions) {
    super();
    this.database = options.database;
    this.deferred = new DeferredWrites<JobWrite>({
      write: (write) => this.writeDeferred(write),
      idOf,
      ...(options.maxDeferredWrites !== undefined ? { max: options.maxDeferredWrites } : {}),
    });
    this.rounds = new WriteRounds<JobWrite, JobRow>({
      keyOf: idOf,
      groupOf: (write) => (write.op === 'create' ? 'create' : `update:${updateShape(write.patch)}`),
      sendGroup: (writes) => {
        const creates = writes.flatMap((write) => (write.op === 'create' ? [write.job] : []));
        const updates = writes.flatMap((write) => (write.op === 'update' ? [write] : []));
        return creates.length > 0 ? insertJobs(this.database, creates) : updateJobs(this.database, updates);
      },
      sendAlone: (write) => this.writeAlone(write),
      before: async () => {
        while (this.deferred.size > 0) await this.deferred.flush();
      },
    });
    this.feed = new ReplicaFeed<Announcement>({
      database: this.database,
      channel: CHANNELS.jobs,
      reloadIntervalMs: options.reloadIntervalMs ?? 30_000,
      onPayloads: async (announcements) => {
        const fetch: string[] = [];
        let changed = false;
        for (const a of announcements) {
          if (!('fetch' in a)) changed = this.apply(a) || changed;
          else if ((this.revs.get(a.fetch) ?? -1) < a.rev) fetch.push(a.fetch);
        }
        if (fetch.length > 0) for (const row of await jobRows(this.database, fetch)) changed = this.apply(row) || changed;
        if (changed) this.changedElsewhere();
      },
      reloadSince: async (since) => {
        // In admission order, so that each job is added at the newest end of the lists (revisions decide, not order).
        let newest: number | null = null;
        let changed = false;
        await eachJobRevisionPageChangedSince(this.database, since, async (revisions) => {
          const stale: string[] = [];
          for (const { id, rev, updated } of revisions) {
            if ((this.revs.get(id) ?? -1) < rev) stale.push(id);
            newest = Math.max(newest ?? 0, updated);
          }
          if (stale.length > 0) for (const row of await jobRows(this.database, stale)) changed = this.apply(row) || changed;
        });
        if (changed) this.changedElsewhere();
        return newest;
      },
    });
    this.sweeper = new JobSweeper(options, (cutoff, limit) => this.forgetBatch(cutoff, limit));
  }

  async open(): Promise<void> {
    await this.feed.open();
    this.sweeper.start();
  }

  create(job: JobRecord): Promise<boolean> {
    return this.written(
      async () => {
        const row = await this.rounds.write({ op: 'create', job });
        if (row) this.apply(row);
        return row !== undefined;
      },
      () => {
        if (this.index.get(job.id)) return false;
        const created = { ...job };
        this.index.set(created);
        this.deferred.push({ op: 'create', job: created });
        return true;
      },
    );
  }

  update(id: string, patch: JobPatch, options: { ifStatus?: JobStatus } = {}): Promise<JobRecord | undefined> {
    return this.written(
      async () => {
        const { ifStatus } = options;
        // A patch that sets nothing only reads the row.
        const row =
          updateShape(patch) === '' ? await updateJob(this.database, id, patch, ifStatus) : await this.rounds.write({ op: 'update', id, patch, ifStatus });
        return row ? this.applied(row) : undefined;
      },
      () => {
        const current = this.index.get(id);
        if (!current || (options.ifStatus !== undefined && current.status !== options.ifStatus)) return undefined;
        const next = patchedJob(current, patch);
        this.index.set(next);
        this.deferred.push({ op: 'update', id, patch: { ...patch }, ifStatus: options.ifStatus });
        return next;
      },
    );
  }

  onChangedElsewhere(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Writes made while the database could not be reached and not written yet. */
  pendingWrites(): number {
    return this.deferred.size;
  }

  /** Writes what was written here while the database could not be reached, in order; rejects while it still cannot be reached. */
  writePending(): Promise<void> {
    return this.deferred.flush();
  }

  async close(): Promise<void> {
    await this.sweeper.stop();
    await this.rounds.drained();
    await this.deferred.close();
    await this.feed.close();
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

  /**
   * Makes a write: after the writes still queued, so that the table takes them in the order they were
   * made; while the database cannot be reached, `deferred` applies it here and queues it instead.
   */
  private async written<R>(write: () => Promise<R>, deferred: () => R): Promise<R> {
    try {
      while (this.deferred.size > 0) await this.deferred.flush();
      return await write();
    } catch (error) {
      if (!this.deferred.accepts(error)) throw error;
      return deferred();
    }
  }

  /** One write in a statement of its own. */
  private writeAlone(write: JobWrite): Promise<JobRow | undefined> {
    return write.op === 'create' ? insertJob(this.database, write.job) : updateJob(this.database, write.id, write.patch, write.ifStatus);
  }

  /**
   * Writes the oldest write made while the database could not be reached; resolves how to apply its
   * outcome once it has left the queue. A write that did not take leaves the table's rows in force.
   */
  private async writeDeferred(write: JobWrite): Promise<() => void> {
    let row: JobRow | undefined;
    try {
      row = await this.writeAlone(write);
    } catch (error) {
      // Refused for good (not for want of the database): the table's rows stand.
      if (isConnectionError(error)) throw error;
    }
    if (!row && write.op === 'create') {
      // An earlier try may have been written before its answer was lost: the row is then this write's.
      const [taken] = await jobRows(this.database, [write.job.id]);
      if (taken && isSameJob(taken, write.job)) row = taken;
    }
    if (row) {
      const written = row;
      return () => this.apply(written);
    }
    const id = idOf(write);
    const [stored] = await jobRows(this.database, [id]);
    return () => {
      // The job a failed create meant is not in the table: the writes queued after it for that job are dropped too.
      if (write.op === 'create') {
        const followers = lostFollowers(this.deferred.writes, id);
        this.deferred.removeWhere((w) => followers.has(w));
      }
      if (!this.deferred.touches(id)) this.reset(id, stored);
    };
  }

  /** Makes memory hold the table's row for `id` (none: no job), whatever revision memory had. */
  private reset(id: string, row: JobRow | undefined): void {
    const job = row ? parseJobRecord(row) : undefined;
    if (!row || !job || typeof job === 'string') {
      this.index.delete(id);
      this.revs.delete(id);
      return;
    }
    this.index.set(job);
    this.revs.set(id, row.rev);
  }

  /** Applies a row this replica wrote; resolves the job as it now is. */
  private applied(row: JobRow): JobRecord | undefined {
    this.apply(row);
    return this.index.get(row.id);
  }

  /** Takes a row into memory unless memory already holds that job at the same or a later revision; true when it did. */
  private apply(row: JobRow): boolean {
    if ((this.revs.get(row.id) ?? -1) >= row.rev) return false;
    const job = parseJobRecord(row);
    if (typeof job === 'string') return false;
    // Memory holds writes still queued for this job: it takes the table's row when they are written.
    if (this.deferred.touches(job.id)) return false;
    this.index.set(job);
    this.revs.set(job.id, row.rev);
    return true;
  }

  /** Tells the listeners that rows written elsewhere were taken into memory. */
  private changedElsewhere(): void {
    for (const listener of this.changeListeners) listener();
  }
}

/** The writes, in `writes`, of a job whose create did not take: its updates, until a create takes its id anew. */
function lostFollowers(writes: readonly JobWrite[], id: string): Set<JobWrite> {
  const dropped = new Set<JobWrite>();
  for (const write of writes) {
    if (write.op === 'create' && write.job.id === id) break;
    if (write.op === 'update' && write.id === id) dropped.add(write);
  }
  return dropped;
}

/** Whether two records are the same job: the same key and admission time. */
function isSameJob(a: { key_id: string; admitted_at: number }, b: { key_id: string; admitted_at: number }): boolean {
  return a.key_id === b.key_id && a.admitted_at === b.admitted_at;
}
