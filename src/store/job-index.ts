// The job registry in memory: jobs by id and by upstream id, and per key and per status in order of admission.

import { fileId } from '../isolation/files.js';
import { JOB_STATUSES } from './job-record.js';
import { BlockList } from './block-list.js';
import { OutputPrefixes } from './output-prefixes.js';
import { ShardedMap } from './sharded-map.js';
import { ACTIVE_JOB_STATUSES, type AdmissionPlace, type JobRecord, type JobStatus, type JobStore } from './types.js';

/** A job in the lists; the same object in all of them, its record replaced as the job changes. */
interface Entry {
  record: JobRecord;
  /** Breaks ties between jobs admitted at the same time: the order they were indexed in. */
  order: number;
}

function compare(a: Entry, b: Entry): number {
  return a.record.admitted_at - b.record.admitted_at || a.order - b.order;
}

function placeOf(entry: Entry): AdmissionPlace {
  return { admittedAt: entry.record.admitted_at, order: entry.order };
}

function isAtOrBefore(entry: Entry, place: AdmissionPlace): boolean {
  return entry.record.admitted_at < place.admittedAt || (entry.record.admitted_at === place.admittedAt && entry.order <= place.order);
}

/** Entries sorted oldest admitted first. Adding or removing one costs its distance from the newest end, within a block. */
class AdmissionOrder {
  private readonly items = new BlockList<Entry>();

  get length(): number {
    return this.items.length;
  }

  add(entry: Entry): void {
    const last = this.items.at(this.items.length - 1);
    if (!last || compare(last, entry) < 0) this.items.push(entry);
    else this.items.insertAt(this.firstNotBefore(entry), entry);
  }

  /** Removes these entries (all of them in this list) in one pass from the oldest of them. */
  remove(gone: ReadonlySet<Entry>): void {
    let oldest: Entry | undefined;
    for (const entry of gone) if (!oldest || compare(entry, oldest) < 0) oldest = entry;
    if (!oldest) return;
    this.items.removeFrom(this.firstNotBefore(oldest), (entry) => gone.has(entry), gone.size);
  }

  /** The entry `offset` places from the newest (0: the newest). */
  fromNewest(offset: number): Entry | undefined {
    return this.items.at(this.items.length - 1 - offset);
  }

  /** Every entry's record, oldest first. */
  records(): JobRecord[] {
    return this.items.map((entry) => entry.record);
  }

  /** Up to `limit` entries just after `place` (undefined: from the oldest), oldest first. */
  after(place: AdmissionPlace | undefined, limit: number): Entry[] {
    const start = place ? this.items.firstIndexNot((item) => isAtOrBefore(item, place)) : 0;
    return this.items.slice(start, limit);
  }

  /** The entry `offset` places from the oldest. */
  fromOldest(offset: number): Entry | undefined {
    return this.items.at(offset);
  }

  /** The index of the first entry not ordered before `entry`. */
  private firstNotBefore(entry: Entry): number {
    return this.items.firstIndexNot((item) => compare(item, entry) < 0);
  }
}

/** The jobs of one key, or of every key: all of them, and those of each status. */
class Scope {
  readonly all = new AdmissionOrder();
  readonly byStatus = new Map<JobStatus, AdmissionOrder>(JOB_STATUSES.map((status) => [status, new AdmissionOrder()]));

  status(status: JobStatus): AdmissionOrder {
    return this.byStatus.get(status)!;
  }

  /** The lists `list` and `count` read for these statuses (undefined: every status). */
  lists(statuses: readonly JobStatus[] | undefined): AdmissionOrder[] {
    const wanted = new Set(statuses ?? JOB_STATUSES);
    if (wanted.size === JOB_STATUSES.length) return [this.all];
    return [...wanted].flatMap((status) => this.byStatus.get(status) ?? []);
  }
}

/**
 * Every job in memory, with the orders the registry is read in, so that a page of `list`, a `count`, a
 * lookup by upstream id and `active` cost what they return, not the number of jobs held. Records are
 * stored as given and must not be changed in place.
 */
export class JobIndex {
  private readonly byId = new ShardedMap<Entry>();
  /** Per backend, its jobs by the prompt_id ComfyUI knows them by there (read for every event). */
  private readonly byUpstream = new Map<string, ShardedMap<Entry>>();
  /** Per backend, its jobs queued or running in ComfyUI (placement reads it). */
  private readonly sentByBackend = new Map<string, number>();
  /** Per output file (however spelt: see outputKey), the newest job that produced it (a file is on its job's backend). */
  private readonly byOutput = new ShardedMap<Entry>();
  /** The prefixes of the jobs' output files, by shape (save prompts are checked against them). */
  private readonly prefixes = new OutputPrefixes();
  private readonly everyKey = new Scope();
  private readonly byKey = new Map<string, Scope>();
  private nextOrder = 0;

  get size(): number {
    return this.byId.size;
  }

  get(id: string): JobRecord | undefined {
    return this.byId.get(id)?.record;
  }

  byUpstreamId(backend: string, upstreamId: string): JobRecord | undefined {
    return this.byUpstream.get(backend)?.get(upstreamId)?.record;
  }

  /** How many jobs are queued or running on `backend`. */
  sentTo(backend: string): number {
    return this.sentByBackend.get(backend) ?? 0;
  }

  /** The newest job among those that produced this file. */
  producerOf(type: string, subfolder: string, filename: string): JobRecord | undefined {
    return this.byOutput.get(outputKey(type, subfolder, filename))?.record;
  }

  /** The prefixes of known output files of this shape (see prefixShape), each with the keys whose jobs saved files under it. */
  outputPrefixes(shape: string): Array<{ prefix: string; keyIds: string[] }> {
    return this.prefixes.ofShape(shape);
  }

  /** Adds a job, or replaces the job with its id. */
  set(record: JobRecord): void {
    const entry = this.byId.get(record.id);
    if (!entry) {
      this.add({ record, order: this.nextOrder++ });
      return;
    }
    const before = entry.record;
    if (before.key_id !== record.key_id || before.admitted_at !== record.admitted_at) {
      // Not a change a patch makes: placed again as a new job.
      this.deleteMany([record.id]);
      this.add({ record, order: entry.order });
      return;
    }
    // Most changes (queued, running, ended) keep the job's upstream id: its entry there stays as it is.
    const upstreamKept = before.backend === record.backend && before.upstream_id === record.upstream_id;
    this.forgetSent(before);
    if (!upstreamKept) this.forgetUpstreamId(entry);
    entry.record = record;
    this.noteSent(record);
    this.noteUpstreamId(entry);
    this.noteOutputs(entry, before);
    if (before.status !== record.status) {
      for (const scope of [this.everyKey, this.byKey.get(record.key_id)!]) {
        scope.status(before.status).remove(new Set([entry]));
        scope.status(record.status).add(entry);
      }
    }
  }

  delete(id: string): void {
    this.deleteMany([id]);
  }

  /** Removes jobs, each list touched once, from the oldest job it loses. */
  deleteMany(ids: Iterable<string>): void {
    const gone = new Map<AdmissionOrder, Set<Entry>>();
    const drop = (list: AdmissionOrder, entry: Entry): void => {
      let entries = gone.get(list);
      if (!entries) gone.set(list, (entries = new Set()));
      entries.add(entry);
    };
    const keys = new Set<string>();
    for (const id of ids) {
      const entry = this.byId.get(id);
      if (!entry) continue;
      this.byId.delete(id);
      this.forgetSent(entry.record);
      this.forgetUpstreamId(entry);
      this.forgetOutputs(entry);
      const { key_id, status } = entry.record;
      keys.add(key_id);
      for (const scope of [this.everyKey, this.byKey.get(key_id)!]) {
        drop(scope.all, entry);
        drop(scope.status(status), entry);
      }
    }
    for (const [list, entries] of gone) list.remove(entries);
    for (const key of keys) if (this.byKey.get(key)?.all.length === 0) this.byKey.delete(key);
  }

  /** Jobs newest admitted first, one key's or every key's, of the given statuses; see `JobStore.list`. */
  list(options: { keyId?: string; statuses?: readonly JobStatus[]; offset: number; limit: number }): JobRecord[] {
    const scope = options.keyId === undefined ? this.everyKey : this.byKey.get(options.keyId);
    if (!scope || options.limit <= 0) return [];
    const lists = scope.lists(options.statuses);
    const offset = Math.max(0, options.offset);
    const page: JobRecord[] = [];
    if (lists.length === 1) {
      for (let i = offset; page.length < options.limit; i += 1) {
        const entry = lists[0]!.fromNewest(i);
        if (!entry) break;
        page.push(entry.record);
      }
      return page;
    }
    let skipped = 0;
    for (const entry of merged(lists, 'newest')) {
      if (skipped < offset) skipped += 1;
      else page.push(entry.record);
      if (page.length >= options.limit) break;
    }
    return page;
  }

  count(options: { keyId?: string; statuses?: readonly JobStatus[] }): number {
    const scope = options.keyId === undefined ? this.everyKey : this.byKey.get(options.keyId);
    return scope ? scope.lists(options.statuses).reduce((n, list) => n + list.length, 0) : 0;
  }

  /** Held, queued and running jobs (or only those of `statuses`), oldest admitted first. */
  active(statuses: readonly JobStatus[] = ACTIVE_JOB_STATUSES): JobRecord[] {
    const lists = statuses.filter((status) => ACTIVE_JOB_STATUSES.includes(status)).map((status) => this.everyKey.status(status));
    if (lists.length === 1) return lists[0]!.records();
    return [...merged(lists, 'oldest')].map((entry) => entry.record);
  }

  /** See `JobStore.heldPage`. */
  heldPage(after: AdmissionPlace | undefined, limit: number): { jobs: JobRecord[]; end: AdmissionPlace | undefined } {
    const entries = this.everyKey.status('held').after(after, limit);
    const last = entries[entries.length - 1];
    return { jobs: entries.map((entry) => entry.record), end: last ? placeOf(last) : after };
  }

  /**
   * Up to `limit` finished jobs that finished before `cutoff` (Unix seconds; a finished job without
   * `finished_at` counts from its admission). Only jobs admitted before the cutoff can qualify, so the
   * search costs those, not the whole registry.
   */
  expired(cutoff: number, limit: number): string[] {
    const ids: string[] = [];
    for (const status of JOB_STATUSES) {
      if (ACTIVE_JOB_STATUSES.includes(status)) continue;
      const list = this.everyKey.status(status);
      for (let i = 0; ids.length < limit; i += 1) {
        const entry = list.fromOldest(i);
        if (!entry || entry.record.admitted_at >= cutoff) break;
        if ((entry.record.finished_at ?? entry.record.admitted_at) < cutoff) ids.push(entry.record.id);
      }
    }
    return ids;
  }

  private add(entry: Entry): void {
    const { id, key_id, status } = entry.record;
    this.byId.set(id, entry);
    this.noteSent(entry.record);
    this.noteUpstreamId(entry);
    this.noteOutputs(entry);
    let scope = this.byKey.get(key_id);
    if (!scope) this.byKey.set(key_id, (scope = new Scope()));
    for (const s of [this.everyKey, scope]) {
      s.all.add(entry);
      s.status(status).add(entry);
    }
  }

  /** Counts a job queued or running in its backend's ComfyUI. */
  private noteSent(record: JobRecord): void {
    if (isSent(record)) this.sentByBackend.set(record.backend, this.sentTo(record.backend) + 1);
  }

  /** Undoes `noteSent`. */
  private forgetSent(record: JobRecord): void {
    if (!isSent(record)) return;
    const left = this.sentTo(record.backend) - 1;
    if (left > 0) this.sentByBackend.set(record.backend, left);
    else this.sentByBackend.delete(record.backend);
  }

  /** Finds the job by the prompt_id its backend knows it by (the last job noted with that id, should ComfyUI give one twice). */
  private noteUpstreamId(entry: Entry): void {
    const { backend, upstream_id } = entry.record;
    if (upstream_id === null) return;
    let ofBackend = this.byUpstream.get(backend);
    if (!ofBackend) this.byUpstream.set(backend, (ofBackend = new ShardedMap()));
    if (ofBackend.get(upstream_id) !== entry) ofBackend.set(upstream_id, entry);
  }

  /** Undoes `noteUpstreamId` for the job's record as it is now. */
  private forgetUpstreamId(entry: Entry): void {
    const { backend, upstream_id } = entry.record;
    if (upstream_id === null) return;
    const ofBackend = this.byUpstream.get(backend);
    if (ofBackend?.get(upstream_id) === entry) ofBackend.delete(upstream_id);
  }

  /** Indexes the files the job made since `before` (all of them when it is new). */
  private noteOutputs(entry: Entry, before?: JobRecord): void {
    const { outputs } = entry.record;
    for (const file of before && before.outputs.length <= outputs.length ? outputs.slice(before.outputs.length) : outputs) {
      this.byOutput.set(outputKey(file.type, file.subfolder, file.filename), entry);
      this.prefixes.noted(entry.record.key_id, file);
    }
  }

  private forgetOutputs(entry: Entry): void {
    for (const file of entry.record.outputs) {
      const key = outputKey(file.type, file.subfolder, file.filename);
      if (this.byOutput.get(key) === entry) this.byOutput.delete(key);
      this.prefixes.forgotten(entry.record.key_id, file);
    }
  }
}

/**
 * A file's entry in `byOutput`: its ownership id, so that every spelling the ownership records read as one file
 * (`sub/` and `./sub`, another case) finds the one newest job that made a file of that name.
 */
const outputKey = fileId;

/** Whether the job is in its backend's ComfyUI queue (queued or running). */
function isSent(job: JobRecord): boolean {
  return job.status === 'queued' || job.status === 'running';
}

/** The entries of several lists as one list, newest or oldest first, reading each only as far as needed. */
function* merged(lists: AdmissionOrder[], from: 'newest' | 'oldest'): Generator<Entry> {
  const at = (list: AdmissionOrder, i: number): Entry | undefined => (from === 'newest' ? list.fromNewest(i) : list.fromOldest(i));
  const positions = lists.map(() => 0);
  for (;;) {
    let best = -1;
    let bestEntry: Entry | undefined;
    for (let l = 0; l < lists.length; l += 1) {
      const entry = at(lists[l]!, positions[l]!);
      if (!entry) continue;
      if (!bestEntry || (from === 'newest' ? compare(entry, bestEntry) > 0 : compare(entry, bestEntry) < 0)) {
        best = l;
        bestEntry = entry;
      }
    }
    if (!bestEntry) return;
    positions[best]! += 1;
    yield bestEntry;
  }
}

/** The read half of a job store, served from its in-memory index; each store adds its writes. */
export abstract class IndexedJobReads implements Pick<
  JobStore,
  'get' | 'byUpstreamId' | 'sentTo' | 'producerOf' | 'outputPrefixes' | 'list' | 'count' | 'active' | 'heldPage'
> {
  protected readonly index = new JobIndex();

  get(id: string): JobRecord | undefined {
    return this.index.get(id);
  }

  byUpstreamId(backend: string, upstreamId: string): JobRecord | undefined {
    return this.index.byUpstreamId(backend, upstreamId);
  }

  sentTo(backend: string): number {
    return this.index.sentTo(backend);
  }

  producerOf(type: string, subfolder: string, filename: string): JobRecord | undefined {
    return this.index.producerOf(type, subfolder, filename);
  }

  outputPrefixes(shape: string): Array<{ prefix: string; keyIds: string[] }> {
    return this.index.outputPrefixes(shape);
  }

  list(options: { keyId?: string; statuses?: readonly JobStatus[]; offset: number; limit: number }): JobRecord[] {
    return this.index.list(options);
  }

  count(options: { keyId?: string; statuses?: readonly JobStatus[] }): number {
    return this.index.count(options);
  }

  active(statuses?: readonly JobStatus[]): JobRecord[] {
    return this.index.active(statuses);
  }

  heldPage(after: AdmissionPlace | undefined, limit: number): { jobs: JobRecord[]; end: AdmissionPlace | undefined } {
    return this.index.heldPage(after, limit);
  }
}
