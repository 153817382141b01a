// The gateway's queue of held jobs: released round-robin across keys, first in, first out within a key; admin `front` jobs first.

import { ShardedMap } from '../store/sharded-map.js';

/** A held job as the queue sees it. */
export interface QueuedJob {
  id: string;
  keyId: string;
  /** An admin key's `front: true`: ahead of every other held job. */
  front: boolean;
  /** When it was admitted (Unix seconds): whatever order jobs are queued in, a key's go oldest first. */
  admittedAt: number;
  /** The backend an admin key pinned it to; absent or null: any. */
  pin?: string | null;
}

/**
 * Held jobs in release order. Keys take turns: after a job of one key is released, the next comes
 * from the key after it (in the order the keys first queued), so one key's hundred jobs delay another
 * key's single job by at most one job per key ahead of it.
 */
export class FairQueue {
  /** Each key's held job ids, oldest first; the map's order is the keys' turn order. */
  private readonly byKey = new Map<string, string[]>();
  private readonly fronted: QueuedJob[] = [];
  private readonly jobs = new ShardedMap<QueuedJob>();
  /**
   * The key whose job was released last: the turn passes to the key after it. Its entry in `byKey` is kept while
   * it has no held jobs, so that jobs it queues afterwards come back to its place in the turn order, after the other keys.
   */
  private lastKey: string | null = null;

  get size(): number {
    return this.jobs.size;
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  /** Queues a job in its key's place by admission: at the end, unless it is older than jobs queued before it (restored, or put back). */
  add(job: QueuedJob): void {
    if (this.jobs.has(job.id)) return;
    this.jobs.set(job.id, job);
    if (job.front) {
      insertByAdmission(this.fronted, job, job.admittedAt, (other) => other.admittedAt);
      return;
    }
    const ids = this.byKey.get(job.keyId);
    if (ids) insertByAdmission(ids, job.id, job.admittedAt, (id) => this.jobs.get(id)!.admittedAt);
    else this.byKey.set(job.keyId, [job.id]);
  }

  /** Takes a job out (released or cancelled); false when it was not held. */
  remove(id: string): boolean {
    const keyId = this.jobs.get(id)?.keyId;
    if (keyId === undefined) return false;
    this.jobs.delete(id);
    const fronted = this.fronted.findIndex((job) => job.id === id);
    if (fronted >= 0) {
      this.fronted.splice(fronted, 1);
      return true;
    }
    const ids = this.byKey.get(keyId)!;
    ids.splice(ids.indexOf(id), 1);
    if (ids.length === 0 && keyId !== this.lastKey) this.byKey.delete(keyId);
    return true;
  }

  /**
   * The next job to release among those `mayRelease` allows (each key's oldest), taking its turn;
   * undefined when none may go. The job stays queued until `remove`.
   */
  next(mayRelease: (keyId: string, job: QueuedJob) => boolean): QueuedJob | undefined {
    const fronted = this.fronted.find((job) => mayRelease(job.keyId, job));
    if (fronted) return fronted;
    for (const keyId of this.turnOrder()) {
      const oldest = this.byKey.get(keyId)![0];
      if (oldest === undefined) continue;
      const job = this.jobs.get(oldest)!;
      if (!mayRelease(keyId, job)) continue;
      this.tookTurn(keyId);
      return job;
    }
    return undefined;
  }

  /** Notes that a job of this key went to ComfyUI (released, or without being held): the turn passes to the key after it. */
  tookTurn(keyId: string): void {
    const previous = this.lastKey;
    this.lastKey = keyId;
    if (previous !== null && previous !== keyId && this.byKey.get(previous)?.length === 0) this.byKey.delete(previous);
  }

  /** How many held jobs go before this one if every key may release (0: it is next); undefined when it is not held. */
  position(id: string): number | undefined {
    const keyId = this.jobs.get(id)?.keyId;
    if (keyId === undefined) return undefined;
    const fronted = this.fronted.findIndex((job) => job.id === id);
    if (fronted >= 0) return fronted;
    const index = this.byKey.get(keyId)!.indexOf(id);
    let ahead = this.fronted.length + index;
    let beforeInTurn = true;
    for (const other of this.turnOrder()) {
      if (other === keyId) {
        beforeInTurn = false;
        continue;
      }
      const count = this.byKey.get(other)!.length;
      // Each earlier round releases one job of every other key; in the current round, only keys before this one.
      ahead += Math.min(count, index) + (beforeInTurn && count > index ? 1 : 0);
    }
    return ahead;
  }

  /** The keys with held jobs (and the one that took the last turn, held jobs or not), starting with the one whose turn is next. */
  private turnOrder(): string[] {
    const keys = [...this.byKey.keys()];
    const start = this.lastKey === null ? 0 : keys.indexOf(this.lastKey) + 1;
    return [...keys.slice(start), ...keys.slice(0, start)];
  }
}

/** Inserts `item` after every item admitted no later than `admittedAt` (a push when it is the newest, as it nearly always is). */
function insertByAdmission<T>(items: T[], item: T, admittedAt: number, admittedAtOf: (item: T) => number): void {
  let low = 0;
  let high = items.length;
  if (high === 0 || admittedAtOf(items[high - 1]!) <= admittedAt) {
    items.push(item);
    return;
  }
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (admittedAtOf(items[middle]!) <= admittedAt) low = middle + 1;
    else high = middle;
  }
  items.splice(low, 0, item);
}
