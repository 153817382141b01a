// A durable keyed table in two files: a JSON snapshot (one object keyed by id) and a journal of the changes since.

import { stat, unlink } from 'node:fs/promises';
import { jsonStringContent } from '../../json/json-text.js';
import { StoreCorruptError } from '../types.js';
import { removeLeftoverTemporaries, replaceWith, writeFileAtomic, writeTemporary } from './atomic-write.js';
import { withDirLock } from './dir-lock.js';
import { appendDurably, dropPartialTail, OpenJournal, readJournal } from './journal.js';
import { readTextNoFollow } from './no-follow.js';
import { oneAtATime } from './one-at-a-time.js';
import { readSnapshotByLine, snapshotLines } from './snapshot-layout.js';
import { IndexedRecords, MapRecords, type SecondaryKeys, type SnapshotIndex, type TableRecords } from './table-records.js';
import { OrderedShardedMap } from '../sharded-map.js';

/**
 * One change: a whole record put under its id, some fields of a record set (the others kept), or an
 * id removed. A patch sets fields to values, so replaying it over a record that already has them
 * changes nothing; replayed over a snapshot written after its record was removed, it is skipped.
 */
export type TableOp<T> = { op: 'put'; id: string; value: T } | { op: 'patch'; id: string; fields: Partial<T> } | { op: 'delete'; id: string };

export interface JournaledTableOptions<T> {
  snapshotPath: string;
  journalPath: string;
  lockPath: string;
  /** Turns a stored value into a record, or says what is wrong with it. */
  parse(value: unknown): T | string;
  /**
   * A record as the JSON text its journal lines and snapshot hold (default `JSON.stringify`): a table whose
   * records carry JSON text may write it in raw, as long as `parse` reads the result back.
   */
  valueText?(value: T): string;
  /** A patch's fields as the JSON text its journal line holds (default `JSON.stringify`), as `parse` reads them back over a record. */
  patchText?(fields: Partial<T>): string;
  /**
   * Called for every change applied to memory, with the record before and after (undefined when absent);
   * not for the records of a snapshot loaded through `indexSnapshot`.
   */
  onChange?(id: string, before: T | undefined, after: T | undefined): void;
  /**
   * Given, this process's own changes are applied without `parse`: the record in memory becomes `ownRecord(record,
   * fields)` of a patch's record and fields, or `ownRecord(value, {})` of a put's value. It must make what `parse` would
   * make of the record with the fields set, for records and fields of type T. Records read from the files are parsed.
   */
  ownRecord?(record: T, fields: Partial<T>): T;
  /** Values besides the id that `findBySecondary` finds a record by. */
  secondaryKeys?: SecondaryKeys<T>;
  /**
   * Indexes a snapshot instead of reading every record into memory, or resolves null to have it read
   * the plain way (which also words what is wrong with a file).
   */
  indexSnapshot?(path: string): Promise<SnapshotIndex<T> | null>;
  /**
   * `shared` (the default): other processes write too, so each change takes the lock file and first
   * reads what the others appended; pass `pollIntervalMs` to pick their changes up between writes.
   * `this-process`: this process is the only writer, so changes skip the lock and are committed in
   * groups: every change made while one append is being fsynced goes into the next append together.
   * Its snapshot is rewritten beside the appends, which wait only for the final swap of the files.
   */
  writers?: 'shared' | 'this-process';
  /** Look for changes written by other processes this often (shared writers only). */
  pollIntervalMs?: number;
  /** Told how long each durable append took, in seconds (for metrics). */
  onWrite?(seconds: number): void;
  /**
   * How large the journal may grow, as a share of the snapshot, before the snapshot is rewritten
   * (default a quarter). Each rewrite costs the whole snapshot, so a table whose records are written
   * several times each (a job's) does less work per change with a larger share, and replays a longer
   * journal when it opens.
   */
  journalShare?: number;
  /**
   * How large the journal may grow before the snapshot is rewritten, however small the snapshot (default
   * 256 KiB). A table whose changes carry large values that later changes drop (a held job's prompt)
   * would otherwise rewrite a small snapshot every few changes.
   */
  minJournalBytes?: number;
}

/** A change applied in memory and waiting for its group's append (single-writer tables). */
interface PendingChange<T> {
  ops: TableOp<T>[];
  /** Each changed id with its record before the change, to undo it if the append fails. */
  before: Array<[string, T | undefined]>;
  result: unknown;
  resolve(result: unknown): void;
  reject(error: unknown): void;
}

/** A promise that settles once every change of a batch of pending changes is appended or undone, and the function that settles it. */
interface BatchDone {
  done: Promise<void>;
  settle(): void;
}

const DEFAULT_MIN_JOURNAL_BYTES = 256 * 1024;
const DEFAULT_JOURNAL_SHARE = 0.25;

/**
 * Records kept in memory and on disk. A change resolves only once it is appended to the journal and
 * fsynced, so a change that resolved survives a crash. The snapshot is rewritten atomically
 * once the journal outgrows a share of it (`journalShare`); replaying a journal over any snapshot written since gives
 * the same records, so a crash between the two steps is harmless. Writers in several processes take
 * turns through a lock file, and each first reads what the others appended.
 */
export class JournaledTable<T> {
  private readonly options: JournaledTableOptions<T>;
  private records: TableRecords<T>;
  private journalOffset = 0;
  private journalIno = 0;
  private snapshotIno = 0;
  private snapshotBytes = 0;
  private pollTimer: NodeJS.Timeout | null = null;
  /** Changes and polls of this process run one at a time, so a poll never applies lines older than a change. */
  private readonly inTurn = oneAtATime();
  private readonly pending: PendingChange<T>[] = [];
  /** Settles once the changes now in `pending` are appended or undone: one promise for them all, not one per change. */
  private pendingDone: BatchDone | null = null;
  private committing: Promise<void> | null = null;
  /** Settles once the latest change made so far is appended, or its append failed (single-writer tables). */
  private latestChange: Promise<void> = Promise.resolve();
  /** Appends that failed so far (single-writer tables). */
  private failedAppends = 0;
  /** Appends and the swap that ends a compaction take turns (single-writer tables). */
  private readonly inFileTurn = oneAtATime();
  /** The compaction running beside the appends (single-writer tables). */
  private compaction: { done: Promise<void>; abandoned: boolean } | null = null;
  /**
   * Single-writer tables: from the start of a snapshot rewrite until the new snapshot is in place, changes
   * are appended to the next journal (`<journal>.next`) instead, and this is its size; null otherwise.
   */
  private nextJournalBytes: number | null = null;
  private readonly nextJournalPath: string;
  /** The journal and the next journal, kept open between a single-writer table's appends. */
  private readonly openJournal: OpenJournal;
  private readonly openNextJournal: OpenJournal;
  /** Ids changed in memory whose changes wait for their append (single-writer tables), with how many such changes each has. */
  private readonly undurable = new Map<string, number>();
  /** A record as its journal lines and snapshot hold it. */
  private readonly valueText: (value: T) => string;
  /** A patch's fields as its journal line holds them. */
  private readonly patchText: (fields: Partial<T>) => string;

  constructor(options: JournaledTableOptions<T>) {
    this.options = options;
    this.valueText = options.valueText ?? ((value) => JSON.stringify(value));
    this.patchText = options.patchText ?? ((fields) => JSON.stringify(fields));
    this.records = new MapRecords(options.secondaryKeys);
    this.nextJournalPath = nextJournalPathOf(options.journalPath);
    this.openJournal = new OpenJournal(options.journalPath);
    this.openNextJournal = new OpenJournal(this.nextJournalPath);
  }

  /** Loads the files; cuts a journal line torn by a crash and removes temporary files one left. @throws StoreCorruptError */
  async open(): Promise<void> {
    await this.reload();
    await this.locked(async () => {
      const latest = await readJournal(this.options.journalPath, this.journalOffset);
      if (latest) await dropPartialTail(this.options.journalPath, latest);
      const next = this.nextJournalBytes === null ? null : await readJournal(this.nextJournalPath, this.nextJournalBytes);
      if (next) await dropPartialTail(this.nextJournalPath, next);
      await removeLeftoverTemporaries(this.options.snapshotPath);
      await removeLeftoverTemporaries(this.options.journalPath);
      // Shared writers neither append to a next journal nor follow one: one left by a single-writer run goes into the snapshot.
      if (this.options.writers !== 'this-process' && this.nextJournalBytes !== null) await this.compact();
    });
    if (this.options.pollIntervalMs) this.pollTimer = setInterval(() => void this.poll(), this.options.pollIntervalMs).unref();
  }

  get(id: string): T | undefined {
    return this.records.get(id);
  }

  *values(): IterableIterator<T> {
    for (const [, value] of this.records.entries()) yield value;
  }

  /** The record one of whose `secondaryKeys` is `value`. */
  findBySecondary(value: string): T | undefined {
    return this.records.findBySecondary(value);
  }

  entries(): IterableIterator<[string, T]> {
    return this.records.entries();
  }

  ids(): IterableIterator<string> {
    return this.records.ids();
  }

  get size(): number {
    return this.records.size;
  }

  /**
   * Whether the record under `id` (or its absence) is known to be as it is on disk: a single-writer
   * table's, when no change of it waits for its append. Never for a shared table, whose other writers'
   * changes are read only at the next change or poll.
   */
  isDurable(id: string): boolean {
    return this.options.writers === 'this-process' && !this.undurable.has(id);
  }

  /** True while nothing was ever written: no snapshot and no journal. */
  isPristine(): boolean {
    return this.records.size === 0 && this.snapshotIno === 0 && this.journalOffset === 0 && !this.nextJournalBytes;
  }

  /**
   * Under the lock: catches up with other writers, asks `plan` for the changes (it sees the latest
   * records), makes them durable, then applies them in memory.
   * @throws the file-system error when the journal cannot be written; memory is then unchanged.
   */
  change<R>(plan: () => { ops: TableOp<T>[]; result: R }): Promise<R> {
    if (this.options.writers === 'this-process') return this.changeInGroup(plan);
    return this.inTurn(() =>
      this.locked(async () => {
        await this.catchUp();
        // Bytes after the last complete line can only be an append torn by a writer that died.
        const tail = await readJournal(this.options.journalPath, this.journalOffset);
        if (tail) await dropPartialTail(this.options.journalPath, tail);
        const { ops, result } = plan();
        if (ops.length === 0) return result;
        await this.timed(() => appendDurably(this.options.journalPath, journalLines(ops, this.valueText, this.patchText)));
        const journal = await stat(this.options.journalPath);
        this.journalIno = journal.ino;
        this.journalOffset = journal.size;
        for (const op of ops) this.apply(op, { own: true });
        // The change is durable in the journal: a snapshot rewrite that fails (a full disk) must not undo its answer.
        // The old snapshot is intact, and the rewrite is tried again after the next change.
        if (this.isDueForCompaction()) await this.compact().catch(() => undefined);
        return result;
      }),
    );
  }

  /**
   * The single-writer path: `plan` sees every change made so far (durable or waiting for its append),
   * its ops apply in memory at once, and it resolves when the append that carries them is fsynced. A
   * change with no ops still waits for the changes made before it (not for those made after), since its
   * result may rest on them; when one of their appends failed, it is planned again on what is left.
   * @throws the file-system error when the append fails; the group's changes are then undone in memory.
   */
  private changeInGroup<R>(plan: () => { ops: TableOp<T>[]; result: R }): Promise<R> {
    const { ops, result } = plan();
    if (ops.length === 0) {
      const failures = this.failedAppends;
      return this.latestChange.then(() => (this.failedAppends === failures ? result : this.changeInGroup(plan)));
    }
    const before = ops.map((op): [string, T | undefined] => [op.id, this.records.get(op.id)]);
    for (const op of ops) {
      this.apply(op, { own: true });
      this.undurable.set(op.id, (this.undurable.get(op.id) ?? 0) + 1);
    }
    const change = new Promise<R>((resolve, reject) => {
      this.pending.push({ ops, before, result, resolve: resolve as (result: unknown) => void, reject });
    });
    this.pendingDone ??= batchDone();
    this.latestChange = this.pendingDone.done;
    this.committing ??= this.commitPending();
    return change;
  }

  /** Ends a pending change: its ids no longer wait for an append, and its caller gets its result or `error`. */
  private settle(change: PendingChange<T>, error?: unknown): void {
    for (const op of change.ops) {
      const left = this.undurable.get(op.id)! - 1;
      if (left === 0) this.undurable.delete(op.id);
      else this.undurable.set(op.id, left);
    }
    if (error === undefined) change.resolve(change.result);
    else change.reject(error);
  }

  /** Appends and fsyncs the waiting changes, a group at a time, until none wait. */
  private async commitPending(): Promise<void> {
    // Let the changes made in this turn of the event loop join the first group.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.pending.length > 0) {
      const group = this.pending.splice(0);
      const groupDone = this.pendingDone;
      this.pendingDone = null;
      const ops: TableOp<T>[] = [];
      // A loop, not flatMap: V8's flatMap took more than the rest of a group's bookkeeping.
      for (const change of group) for (const op of change.ops) ops.push(op);
      try {
        await this.inFileTurn(async () => {
          try {
            await this.appendGroup(ops);
          } catch (error) {
            // The snapshot being written may hold these changes, which are now undone.
            if (this.compaction) this.compaction.abandoned = true;
            throw error;
          }
        });
        for (const change of group) this.settle(change);
        if (!this.compaction && this.isDueForCompaction()) this.compactBesideAppends();
      } catch (error) {
        this.failedAppends += 1;
        for (const change of [...group].reverse()) for (const [id, record] of [...change.before].reverse()) this.restore(id, record);
        for (const change of group) this.settle(change, error ?? new Error('append failed'));
      }
      groupDone?.settle();
    }
    this.committing = null;
  }

  private isDueForCompaction(): boolean {
    const share = this.options.journalShare ?? DEFAULT_JOURNAL_SHARE;
    const journalBytes = this.journalOffset + (this.nextJournalBytes ?? 0);
    const least = this.options.minJournalBytes ?? DEFAULT_MIN_JOURNAL_BYTES;
    return this.snapshotIno === 0 || journalBytes > Math.max(least, this.snapshotBytes * share);
  }

  /**
   * Appends a group of changes where they go now (the journal, or the next journal while a snapshot
   * is rewritten) and waits until they are on disk; the bytes a failed append left are cut first.
   */
  private async appendGroup(ops: TableOp<T>[]): Promise<void> {
    const rotated = this.nextJournalBytes !== null;
    const journal = rotated ? this.openNextJournal : this.openJournal;
    const completeUpTo = rotated ? this.nextJournalBytes! : this.journalOffset;
    const written = await this.timed(() => journal.append(journalLines(ops, this.valueText, this.patchText), completeUpTo));
    if (rotated) {
      this.nextJournalBytes = written.size;
    } else {
      this.journalIno = written.ino;
      this.journalOffset = written.size;
    }
  }

  /**
   * Rewrites the snapshot from memory while appends go on to the next journal, then, between two
   * appends, puts it in place and the next journal in place of the journal. The new snapshot holds
   * every change of the journal (they were in memory before it was written); replaying the next
   * journal over it gives the records, whichever of its changes it already holds. A crash between the
   * two renames leaves the new snapshot, the journal and the next journal, which replay to the same
   * records. Abandoned when an append failed meanwhile (the snapshot may hold a change that was
   * undone); a failed or abandoned rewrite leaves the files as they were, appends still going to the
   * next journal, and is tried again after a later change.
   */
  private compactBesideAppends(): void {
    // The changes appended before now are in memory, so in the snapshot about to be written.
    this.nextJournalBytes ??= 0;
    const compaction = { done: Promise.resolve(), abandoned: false };
    this.compaction = compaction;
    compaction.done = (async () => {
      const { snapshotPath, journalPath } = this.options;
      const temp = await writeTemporary(snapshotPath, snapshotLines(this.records.members(this.valueText)));
      await this.inFileTurn(async () => {
        if (compaction.abandoned) return;
        await replaceWith(temp, snapshotPath);
        // The open journal is about to be replaced, and the next journal renamed.
        await Promise.all([this.openJournal.close(), this.openNextJournal.close()]);
        if (await statOrNull(this.nextJournalPath)) await replaceWith(this.nextJournalPath, journalPath);
        else await writeFileAtomic(journalPath, '');
        const [snapshot, journal] = await Promise.all([stat(snapshotPath), stat(journalPath)]);
        this.snapshotIno = snapshot.ino;
        this.snapshotBytes = snapshot.size;
        this.journalIno = journal.ino;
        this.journalOffset = journal.size;
        this.nextJournalBytes = null;
      }).finally(() => unlink(temp).catch(() => undefined)); // gone already once it was put in place
    })()
      .catch(() => undefined)
      .finally(() => {
        this.compaction = null;
      });
  }

  /** Runs a durable append, telling `onWrite` how long it took. */
  private async timed<R>(append: () => Promise<R>): Promise<R> {
    const started = performance.now();
    const result = await append();
    this.options.onWrite?.((performance.now() - started) / 1000);
    return result;
  }

  /** Puts a record back as it was (undefined: absent), telling `onChange`. */
  private restore(id: string, record: T | undefined): void {
    const current = this.records.get(id);
    if (record === undefined) this.records.delete(id);
    else this.records.set(id, record);
    this.options.onChange?.(id, current, record);
  }

  /** Resolves when the lock can be taken, i.e. the folder is there and writable. */
  async checkWritable(): Promise<void> {
    await withDirLock(this.options.lockPath, async () => undefined, 1000);
  }

  /** Resolves once the appends and the snapshot rewrite in flight, if any, are done. */
  async idle(): Promise<void> {
    await this.committing;
    await this.compaction?.done;
  }

  /** Stops polling and waits for the appends and the compaction in flight, so nothing is written after it resolves. */
  async close(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    await this.idle();
    await Promise.all([this.openJournal.close(), this.openNextJournal.close()]);
  }

  private locked<R>(task: () => Promise<R>): Promise<R> {
    return withDirLock(this.options.lockPath, task);
  }

  /** Rewrites the snapshot from memory, then starts an empty journal (and drops a next journal, now in the snapshot). Called with the lock held. */
  private async compact(): Promise<void> {
    await writeFileAtomic(this.options.snapshotPath, snapshotLines(this.records.members(this.valueText)));
    await writeFileAtomic(this.options.journalPath, '');
    if (this.nextJournalBytes !== null) {
      await unlink(this.nextJournalPath);
      this.nextJournalBytes = null;
    }
    const [snapshot, journal] = await Promise.all([stat(this.options.snapshotPath), stat(this.options.journalPath)]);
    this.snapshotIno = snapshot.ino;
    this.snapshotBytes = snapshot.size;
    this.journalIno = journal.ino;
    this.journalOffset = 0;
  }

  /** Applies what other processes wrote: new journal lines, or a whole new snapshot. */
  private async catchUp(): Promise<void> {
    const [snapshot, journal] = await Promise.all([statOrNull(this.options.snapshotPath), statOrNull(this.options.journalPath)]);
    if ((snapshot?.ino ?? 0) !== this.snapshotIno || ((journal?.ino ?? 0) !== this.journalIno && this.journalOffset > 0)) {
      await this.reload();
      return;
    }
    if (!journal || journal.size === this.journalOffset) return;
    const chunk = await readJournal(this.options.journalPath, this.journalOffset);
    if (!chunk) return;
    for (const op of chunk.entries) this.apply(op as TableOp<T>);
    this.journalOffset = chunk.nextOffset;
    this.journalIno = chunk.ino;
  }

  private poll(): Promise<void> {
    return this.inTurn(() =>
      this.catchUp().catch(() => {
        // A read that raced another process's compaction; the next poll sees the finished files.
      }),
    );
  }

  /** Loads the snapshot and replays the whole journal, telling `onChange` about every difference. */
  private async reload(): Promise<void> {
    const { snapshotPath, journalPath } = this.options;
    const snapshot = await statOrNull(snapshotPath);
    const loaded = snapshot ? await this.loadSnapshot(snapshotPath) : new MapRecords(this.options.secondaryKeys);
    const previous = this.records;
    this.records = loaded;
    const chunk = await readJournal(journalPath, 0);
    // A next journal is there while a snapshot rewrite is under way, or was when the gateway stopped: its changes follow the journal's.
    const next = await readJournal(this.nextJournalPath, 0);
    for (const op of [...(chunk?.entries ?? []), ...(next?.entries ?? [])]) this.apply(op as TableOp<T>, { notify: false });
    // Telling of every record would read an indexed snapshot whole.
    if (previous instanceof MapRecords && loaded instanceof MapRecords) {
      for (const [id, before] of previous.entries()) if (!loaded.has(id)) this.options.onChange?.(id, before, undefined);
      for (const [id, after] of loaded.entries()) if (previous.get(id) !== after) this.options.onChange?.(id, previous.get(id), after);
    }
    this.snapshotIno = snapshot?.ino ?? 0;
    this.snapshotBytes = snapshot?.size ?? 0;
    this.journalOffset = chunk?.nextOffset ?? 0;
    this.journalIno = chunk?.ino ?? 0;
    this.nextJournalBytes = next ? next.nextOffset : null;
  }

  /**
   * Reads the snapshot's records in file order: through `indexSnapshot` when it takes the file, else a
   * chunk at a time when it is in the layout this table writes, so neither the file nor its whole parse
   * is ever in memory; anything else (a file laid out by another program, or one that would not load)
   * is parsed whole, which also words the error.
   */
  private async loadSnapshot(path: string): Promise<TableRecords<T>> {
    const index = await this.options.indexSnapshot?.(path);
    if (index) return new IndexedRecords(index, this.options.secondaryKeys);
    const byLine = await readSnapshotByLine(path, this.options.parse);
    if (byLine) return new MapRecords(this.options.secondaryKeys, byLine);
    const loaded = new OrderedShardedMap<T>();
    for (const [id, value] of Object.entries(parseSnapshot(path, await readTextNoFollow(path)))) {
      loaded.set(id, this.parseOrThrow(path, id, value));
    }
    return new MapRecords(this.options.secondaryKeys, loaded);
  }

  /** Applies a change in memory: one of this process's own (`own`), or one read from the files; `notify: false` does not tell `onChange`. */
  private apply(op: TableOp<T>, { own = false, notify = true }: { own?: boolean; notify?: boolean } = {}): void {
    const before = this.records.get(op.id);
    if (op.op === 'put' || op.op === 'patch') {
      const value = own && this.options.ownRecord ? this.ownRecord(op, before) : this.readRecord(op, before);
      if (value === undefined) return;
      this.records.set(op.id, value);
      if (notify) this.options.onChange?.(op.id, before, value);
    } else if (op.op === 'delete') {
      if (!this.records.delete(op.id)) return;
      if (notify) this.options.onChange?.(op.id, before, undefined);
    } else {
      throw new StoreCorruptError(this.options.journalPath, 'an entry has an unknown op');
    }
  }

  /** The record one of this process's own puts or patches makes, through `ownRecord`; undefined for a patch of no record. */
  private ownRecord(op: TableOp<T> & { op: 'put' | 'patch' }, before: T | undefined): T | undefined {
    if (op.op === 'put') return this.options.ownRecord!(op.value, {});
    return before === undefined ? undefined : this.options.ownRecord!(before, op.fields);
  }

  /** The record a put or patch read from the files makes, parsed; undefined for a patch of no record. */
  private readRecord(op: TableOp<T> & { op: 'put' | 'patch' }, before: T | undefined): T | undefined {
    const stored = op.op === 'put' ? op.value : patchedValue(this.options.journalPath, op.id, before, op.fields);
    return stored === undefined ? undefined : this.parseOrThrow(this.options.journalPath, op.id, stored);
  }

  private parseOrThrow(file: string, id: string, value: unknown): T {
    const parsed = this.options.parse(value);
    if (typeof parsed === 'string') throw new StoreCorruptError(file, `record ${JSON.stringify(id)}: ${parsed}`);
    return parsed;
  }
}

/**
 * The record `id` of the journal at `path` with a patch's fields set; undefined when there is no
 * record to patch (the patch is then skipped).
 * @throws StoreCorruptError when the fields are not an object
 */
export function patchedValue(path: string, id: string, record: unknown, fields: unknown): Record<string, unknown> | undefined {
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields))
    throw new StoreCorruptError(path, `record ${JSON.stringify(id)}: a patch's fields must be an object`);
  if (record === undefined) return undefined;
  return { ...(record as Record<string, unknown>), ...fields };
}

/** Ops as journal lines, each put's record as `valueText` writes it and each patch's fields as `patchText` does. */
function journalLines<T>(ops: TableOp<T>[], valueText: (value: T) => string, patchText: (fields: Partial<T>) => string): string {
  let text = '';
  for (const op of ops) text += `${journalLine(op, valueText, patchText)}\n`;
  return text;
}

/** An op as its journal line holds it: `JSON.stringify(op)`, its record or fields as `valueText` or `patchText` write them, the id without a call to JSON.stringify. */
function journalLine<T>(op: TableOp<T>, valueText: (value: T) => string, patchText: (fields: Partial<T>) => string): string {
  const opAndId = `{"op":"${op.op}","id":"${jsonStringContent(op.id)}"`;
  if (op.op === 'put') return `${opAndId},"value":${valueText(op.value)}}`;
  return op.op === 'patch' ? `${opAndId},"fields":${patchText(op.fields)}}` : `${opAndId}}`;
}

/** Where a single-writer table appends while its snapshot is rewritten: beside its journal. */
export function nextJournalPathOf(journalPath: string): string {
  return `${journalPath}.next`;
}

async function statOrNull(path: string): Promise<{ ino: number; size: number } | null> {
  try {
    return await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

function parseSnapshot(path: string, text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new StoreCorruptError(path, `it is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new StoreCorruptError(path, 'it is not a JSON object keyed by id');
  return parsed as Record<string, unknown>;
}

function batchDone(): BatchDone {
  let settle!: () => void;
  const done = new Promise<void>((resolve) => (settle = resolve));
  return { done, settle };
}
