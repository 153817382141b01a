// The JSON-file key store: `api_keys.json` (the reference's format) plus a journal of changes since it was written.

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseStoredKey } from '../key-record.js';
import { StoreCorruptError, type KeyPatch, type KeyRecord, type KeyStore } from '../types.js';
import { writeFileAtomic } from './atomic-write.js';
import { withDirLock } from './dir-lock.js';
import { appendDurably, dropPartialTail, readJournal } from './journal.js';

/** A batch of `last_used` times. */
type TouchEntry = { op: 'touch'; last_used: Record<string, number> };

/** One line of `api_keys.journal`. */
type KeyJournalEntry = { op: 'put'; key: KeyRecord } | { op: 'delete'; key_id: string } | TouchEntry;

export interface FileKeyStoreOptions {
  /** The user directory holding `api_keys.json`. */
  directory: string;
  /** How often to look for changes written by another process (the CLI). */
  pollIntervalMs?: number;
  /** How often batched `last_used` times are written. */
  touchFlushMs?: number;
}

const MIN_COMPACT_BYTES = 256 * 1024;

/**
 * Keys in `api_keys.json`, read whole at start and kept in memory (lookups by hash are one Map get).
 * Each change is appended to `api_keys.journal` and fsynced before it is acknowledged; the snapshot is
 * rewritten atomically once the journal grows past a quarter of it. Several processes may write the
 * same folder: they take turns through a lock file, and each picks up the others' changes by polling.
 */
export class FileKeyStore implements KeyStore {
  readonly keysPath: string;
  readonly journalPath: string;
  private readonly lockPath: string;
  private readonly pollIntervalMs: number;
  private readonly touchFlushMs: number;
  private byId = new Map<string, KeyRecord>();
  private byHash = new Map<string, KeyRecord>();
  private pendingTouches = new Map<string, number>();
  private journalOffset = 0;
  private journalIno = 0;
  private snapshotIno = 0;
  private snapshotBytes = 0;
  private timers: NodeJS.Timeout[] = [];
  private polling = false;

  constructor(options: FileKeyStoreOptions) {
    this.keysPath = join(options.directory, 'api_keys.json');
    this.journalPath = join(options.directory, 'api_keys.journal');
    this.lockPath = join(options.directory, '.api_keys.lock');
    this.pollIntervalMs = options.pollIntervalMs ?? 500;
    this.touchFlushMs = options.touchFlushMs ?? 2000;
  }

  async open(): Promise<void> {
    await this.reload();
    const chunk = await readJournal(this.journalPath, this.journalOffset);
    if (chunk && chunk.partialBytes > 0) {
      await withDirLock(this.lockPath, async () => {
        const latest = await readJournal(this.journalPath, this.journalOffset);
        if (latest) await dropPartialTail(this.journalPath, latest);
      });
    }
    this.timers.push(setInterval(() => void this.poll(), this.pollIntervalMs).unref());
    this.timers.push(setInterval(() => void this.flushTouches().catch(() => undefined), this.touchFlushMs).unref());
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

  size(): number {
    return this.byId.size;
  }

  isPristine(): boolean {
    return this.byId.size === 0 && this.snapshotIno === 0 && this.journalOffset === 0;
  }

  create(record: KeyRecord, options: { onlyIfPristine?: boolean } = {}): Promise<boolean> {
    return this.change(() => {
      if (options.onlyIfPristine && !this.isPristine()) return { entries: [], result: false };
      return { entries: [{ op: 'put', key: record }], result: true };
    });
  }

  update(keyId: string, patch: KeyPatch): Promise<KeyRecord | undefined> {
    return this.change(() => {
      const current = this.byId.get(keyId);
      if (!current) return { entries: [], result: undefined };
      const updated: KeyRecord = { ...current, ...patch };
      return { entries: [{ op: 'put', key: updated }], result: updated };
    });
  }

  delete(keyId: string): Promise<boolean> {
    return this.change(() => {
      if (!this.byId.has(keyId)) return { entries: [], result: false };
      return { entries: [{ op: 'delete', key_id: keyId }], result: true };
    });
  }

  touch(keyId: string, at: number): void {
    const record = this.byId.get(keyId);
    if (!record) return;
    record.last_used = at;
    this.pendingTouches.set(keyId, at);
  }

  async checkWritable(): Promise<void> {
    await withDirLock(this.lockPath, async () => undefined, 1000);
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.flushTouches();
  }

  /** Writes the batched `last_used` times, if any. */
  private async flushTouches(): Promise<void> {
    if (this.pendingTouches.size === 0) return;
    await this.change(() => ({ entries: [], result: undefined }));
  }

  /**
   * Under the lock: catches up with other writers, plans a change against the current keys, appends it
   * (with any batched touches) durably, and only then applies it in memory.
   */
  private change<T>(plan: () => { entries: KeyJournalEntry[]; result: T }): Promise<T> {
    return withDirLock(this.lockPath, async () => {
      await this.catchUp();
      // With the lock held, bytes after the last full line are torn (a writer died mid-append): cut them,
      // or this append would be glued to them into a line no reader can parse.
      const tail = await readJournal(this.journalPath, this.journalOffset);
      if (tail) await dropPartialTail(this.journalPath, tail);
      const { entries, result } = plan();
      const touches = this.takeTouches();
      if (touches) entries.unshift(touches);
      if (entries.length === 0) return result;
      const text = entries.map((entry) => JSON.stringify(entry) + '\n').join('');
      try {
        await appendDurably(this.journalPath, text);
      } catch (error) {
        if (touches) for (const [id, at] of Object.entries(touches.last_used)) this.pendingTouches.set(id, at);
        throw error;
      }
      const journal = await stat(this.journalPath);
      this.journalIno = journal.ino;
      this.journalOffset = journal.size;
      for (const entry of entries) this.apply(entry);
      if (this.snapshotIno === 0 || this.journalOffset > Math.max(MIN_COMPACT_BYTES, this.snapshotBytes / 4)) {
        await this.compact();
      }
      return result;
    });
  }

  private takeTouches(): TouchEntry | null {
    if (this.pendingTouches.size === 0) return null;
    const entry: TouchEntry = { op: 'touch', last_used: Object.fromEntries(this.pendingTouches) };
    this.pendingTouches = new Map();
    return entry;
  }

  /** Rewrites the snapshot from memory, then starts a fresh journal. Called with the lock held. */
  private async compact(): Promise<void> {
    const records = [...this.byId.values()];
    await writeFileAtomic(this.keysPath, snapshotLines(records));
    await writeFileAtomic(this.journalPath, '');
    const [snapshot, journal] = await Promise.all([stat(this.keysPath), stat(this.journalPath)]);
    this.snapshotIno = snapshot.ino;
    this.snapshotBytes = snapshot.size;
    this.journalIno = journal.ino;
    this.journalOffset = 0;
  }

  /** Picks up what other processes wrote: new journal lines, or a whole new snapshot. */
  private async catchUp(): Promise<void> {
    const [snapshot, journal] = await Promise.all([statOrNull(this.keysPath), statOrNull(this.journalPath)]);
    const snapshotIno = snapshot?.ino ?? 0;
    const journalIno = journal?.ino ?? 0;
    if (snapshotIno !== this.snapshotIno || (journalIno !== this.journalIno && this.journalOffset > 0)) {
      await this.reload();
      return;
    }
    if (!journal || journal.size === this.journalOffset) return;
    const chunk = await readJournal(this.journalPath, this.journalOffset);
    if (!chunk) return;
    for (const entry of chunk.entries) this.apply(entry as KeyJournalEntry);
    this.journalOffset = chunk.nextOffset;
    this.journalIno = chunk.ino;
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await this.catchUp();
    } catch {
      // A read racing a compaction by another process; the next poll sees the finished files.
    } finally {
      this.polling = false;
    }
  }

  /** Loads the snapshot and replays the whole journal. */
  private async reload(): Promise<void> {
    const byId = new Map<string, KeyRecord>();
    const snapshot = await statOrNull(this.keysPath);
    if (snapshot) {
      for (const record of parseSnapshot(this.keysPath, await readFile(this.keysPath, 'utf8'))) {
        byId.set(record.key_id, record);
      }
    }
    const previousTouches = this.pendingTouches;
    this.byId = byId;
    this.byHash = new Map([...byId.values()].map((record) => [record.key_hash, record]));
    this.snapshotIno = snapshot?.ino ?? 0;
    this.snapshotBytes = snapshot?.size ?? 0;
    const chunk = await readJournal(this.journalPath, 0);
    for (const entry of chunk?.entries ?? []) this.apply(entry as KeyJournalEntry);
    this.journalOffset = chunk?.nextOffset ?? 0;
    this.journalIno = chunk?.ino ?? 0;
    for (const [keyId, at] of previousTouches) this.touch(keyId, at);
  }

  private apply(entry: KeyJournalEntry): void {
    switch (entry.op) {
      case 'put': {
        const record = parseStoredKey(entry.key);
        if (typeof record === 'string') throw new StoreCorruptError(this.journalPath, `a key record is invalid: ${record}`);
        const previous = this.byId.get(record.key_id);
        if (previous) {
          this.byHash.delete(previous.key_hash);
          record.last_used = latest(previous.last_used, record.last_used);
        }
        this.byId.set(record.key_id, record);
        this.byHash.set(record.key_hash, record);
        return;
      }
      case 'delete': {
        const previous = this.byId.get(entry.key_id);
        if (!previous) return;
        this.byId.delete(entry.key_id);
        this.byHash.delete(previous.key_hash);
        return;
      }
      case 'touch':
        for (const [keyId, at] of Object.entries(entry.last_used)) {
          const record = this.byId.get(keyId);
          if (record) record.last_used = latest(record.last_used, at);
        }
        return;
      default:
        throw new StoreCorruptError(this.journalPath, 'an entry has an unknown op');
    }
  }
}

function latest(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

async function statOrNull(path: string): Promise<{ ino: number; size: number } | null> {
  try {
    return await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** Parses `api_keys.json`: one object keyed by key_id. */
function parseSnapshot(path: string, text: string): KeyRecord[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new StoreCorruptError(path, `it is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new StoreCorruptError(path, 'it is not a JSON object keyed by key_id');
  }
  return Object.entries(parsed).map(([keyId, value]) => {
    const record = parseStoredKey(value);
    if (typeof record === 'string') throw new StoreCorruptError(path, `key ${JSON.stringify(keyId)}: ${record}`);
    return record;
  });
}

/** The snapshot as text chunks: one key per line, so a million keys are never one giant string. */
function* snapshotLines(records: KeyRecord[]): Generator<string> {
  yield '{';
  const batch: string[] = [];
  for (let i = 0; i < records.length; i += 1) {
    const record = records[i]!;
    batch.push(`${i === 0 ? '' : ','}\n${JSON.stringify(record.key_id)}: ${JSON.stringify(record)}`);
    if (batch.length === 1000) yield batch.splice(0).join('');
  }
  yield batch.join('') + '\n}\n';
}
