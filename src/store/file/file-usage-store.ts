// The JSON-file usage store: records are appended to a journal within a flush interval, and merged into `api_usage.json` in the background.

import { randomBytes } from 'node:crypto';
import { rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { UsageRecord, UsageStore } from '../types.js';
import { UsageReports } from '../usage-reports.js';
import { removeLeftoverTemporaries, syncDirectory, writeFileAtomic } from './atomic-write.js';
import { dropPartialTail, readJournal, type JournalChunk } from './journal.js';
import { LineBuffer } from '../../log/line-buffer.js';
import { openNoFollow } from './no-follow.js';
import { oneAtATime } from './one-at-a-time.js';
import { countedEntryLine, usageRecordLine } from './usage-record-line.js';
import { mergeUsageJournal, UsageMergeThread } from './usage-merge.js';
import {
  emptyHeader,
  isCountedEntry,
  isUsageRecord,
  loadUsageFile,
  recentRecordTimes,
  usageFileLines,
  type CountedEntry,
  type UsageJournalEntry,
} from './usage-file.js';

export interface FileUsageStoreOptions {
  directory: string;
  /** Raw records older than this are dropped when the file is compacted; daily totals are kept for good. */
  retentionDays: number;
  /** How often buffered records are appended and fsynced. */
  flushIntervalMs?: number;
  /** The journal is merged into `api_usage.json` once it is larger than this and than a quarter of the file. */
  minCompactBytes?: number;
  /** Told how long each append of buffered records took, in seconds. */
  onWrite?(seconds: number): void;
  /**
   * Only read the files, for a process beside the gateway (the CLI): open() neither cuts a torn journal
   * line nor merges or deletes a journal set aside, no timer runs, and record, flush and compaction throw.
   * The gateway stays the only process that writes usage, so its appends are never disturbed.
   */
  readOnly?: boolean;
}

const RECENT_WINDOW_SECONDS = 3600;
const COMPACT_CHECK_MS = 5000;
/** A read-only open retries this often when a compaction moved the files while it read them. */
const READ_ONLY_ATTEMPTS = 5;

/**
 * Usage in `api_usage.json` plus `api_usage.journal`. Recording only updates in-memory daily totals and
 * buffers a line; a timer appends the buffer and fsyncs it every `flushIntervalMs`. When the journal has
 * grown past a quarter of the main file, it is renamed aside and merged into a new main file, streamed
 * line by line, so the cost per record stays constant however much is stored.
 */
export class FileUsageStore extends UsageReports implements UsageStore {
  readonly usagePath: string;
  private readonly journalPath: string;
  private readonly compactingPath: string;
  private readonly retentionDays: number;
  private readonly flushIntervalMs: number;
  private readonly minCompactBytes: number;
  private readonly onWrite: ((seconds: number) => void) | undefined;
  private readonly readOnly: boolean;
  /** Journal lines not yet appended. */
  private readonly waiting = new LineBuffer();
  private journal: FileHandle | null = null;
  private journalId = newJournalId();
  /** Every operation on the journal file runs through this, one at a time. */
  private readonly serially = oneAtATime();
  private compacting: Promise<void> | null = null;
  private readonly mergeThread = new UsageMergeThread();
  private writeError: Error | null = null;
  private timers: NodeJS.Timeout[] = [];

  constructor(options: FileUsageStoreOptions) {
    super();
    this.usagePath = join(options.directory, 'api_usage.json');
    this.journalPath = join(options.directory, 'api_usage.journal');
    this.compactingPath = join(options.directory, 'api_usage.journal.compacting');
    this.retentionDays = options.retentionDays;
    this.flushIntervalMs = options.flushIntervalMs ?? 200;
    this.minCompactBytes = options.minCompactBytes ?? 4 * 1024 * 1024;
    this.onWrite = options.onWrite;
    this.readOnly = options.readOnly ?? false;
  }

  async open(): Promise<void> {
    if (this.readOnly) return this.openReadOnly();
    const { aside, asideMerged, active } = await this.load();
    if (aside && asideMerged) await unlink(this.compactingPath);
    if (active) await dropPartialTail(this.journalPath, active);
    // This process is the usage files' only writer: a temporary file now is what a crash left mid-compaction.
    await removeLeftoverTemporaries(this.usagePath);
    if (aside && !asideMerged) await this.mergeAside({ inWorker: false });
    this.timers.push(setInterval(() => void this.flush().catch(() => undefined), this.flushIntervalMs).unref());
    this.timers.push(setInterval(() => void this.compactIfDue().catch(() => undefined), COMPACT_CHECK_MS).unref());
  }

  /**
   * Loads without writing. A gateway may compact meanwhile (journal renamed aside, merged, main file
   * replaced, aside deleted); a load that saw the files move is done again, so nothing is missed or
   * counted twice. Appends to the journal do not matter: the lines read so far are complete records.
   */
  private async openReadOnly(): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      const before = await this.fileIdentities();
      await this.load();
      if ((await this.fileIdentities()) === before || attempt === READ_ONLY_ATTEMPTS) return;
    }
  }

  /** The inodes of the main file, the journal set aside and the journal: they change when a compaction moves files. */
  private async fileIdentities(): Promise<string> {
    const paths = [this.usagePath, this.compactingPath, this.journalPath];
    const stats = await Promise.all(paths.map((path) => stat(path).catch(() => null)));
    return stats.map((s) => s?.ino ?? 0).join(':');
  }

  /** Reads the main file and both journals into memory; the files are not touched. */
  private async load(): Promise<{ aside: JournalChunk | null; asideMerged: boolean; active: JournalChunk | null }> {
    const loaded = await loadUsageFile(this.usagePath);
    const header = loaded?.header ?? emptyHeader();
    this.replaceCounts(header.daily_totals, header.hourly_requests ?? {});
    const since = Date.now() / 1000 - RECENT_WINDOW_SECONDS;
    const recent: Record<string, number[]> = header.recent ?? (loaded && !loaded.legacyRecords ? await recentRecordTimes(this.usagePath, since) : {});
    for (const record of loaded?.legacyRecords ?? []) {
      (recent[record.key_id] ??= []).push(record.timestamp);
      this.countHour(record);
    }

    const aside = await readJournal(this.compactingPath, 0);
    const asideMerged = aside !== null && journalIdOf(aside.entries) === header.merged_journal;
    if (aside && !asideMerged) this.replay(aside.entries, recent);

    // A torn last line is not among the entries read: it is cut (by a writable open) or ignored.
    const active = await readJournal(this.journalPath, 0);
    if (active) {
      this.replay(active.entries, recent);
      this.journalId = journalIdOf(active.entries) ?? this.journalId;
    }
    this.recentAtOpen = new Map(Object.entries(recent).map(([keyId, times]) => [keyId, times.filter((t) => t >= since)]));
    return { aside, asideMerged, active };
  }

  private assertWritable(): void {
    if (this.readOnly) throw this.readOnlyError();
  }

  private readOnlyError(): Error {
    return new Error(`the usage store in ${join(this.usagePath, '..')} was opened read-only`);
  }

  record(record: UsageRecord): void {
    this.assertWritable();
    this.countEntry(record);
    this.waiting.add(usageRecordLine(record));
  }

  recordRateLimited(keyId: string, at: number): void {
    this.journalEntry({ rate_limited: true, key_id: keyId, timestamp: at });
  }

  recordPromptAdmitted(keyId: string, at: number): void {
    this.journalEntry({ prompt_admitted: true, key_id: keyId, timestamp: at });
  }

  recordJobRun(keyId: string, at: number, executionSeconds: number, outputs: number): void {
    this.journalEntry({ job_run: true, key_id: keyId, timestamp: at, execution_seconds: executionSeconds, outputs });
  }

  /** Counts an entry that only adds to its day's totals, and buffers its journal line (it never becomes a record of the main file). */
  private journalEntry(entry: Exclude<CountedEntry, UsageRecord>): void {
    this.assertWritable();
    this.countEntry(entry);
    this.waiting.add(countedEntryLine(entry));
  }

  async ensureCreated(): Promise<void> {
    this.assertWritable();
    await createUsageFileIfMissing(this.usagePath);
  }

  lastWriteError(): Error | null {
    return this.writeError;
  }

  /** Appends the buffered lines and fsyncs them. */
  flush(): Promise<void> {
    if (this.readOnly) return Promise.reject(this.readOnlyError());
    return this.serially(() => this.writeBuffer());
  }

  async close(): Promise<void> {
    if (this.readOnly) return;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.compacting?.catch(() => undefined);
    this.mergeThread.stop();
    await this.flush();
    await this.journal?.close();
    this.journal = null;
  }

  private async writeBuffer(): Promise<void> {
    if (this.waiting.size === 0) return;
    const lines = this.waiting.take();
    let sizeBefore: number | null = null;
    try {
      this.journal ??= await openNoFollow(this.journalPath, 'append');
      sizeBefore = (await this.journal.stat()).size;
      // A new journal starts with its id.
      const text = sizeBefore === 0 ? Buffer.concat([Buffer.from(`${JSON.stringify({ journal_id: this.journalId })}\n`), lines]) : lines;
      const started = performance.now();
      // writeFile, unlike write, never stops short: on a full disk it writes all or throws ENOSPC.
      await this.journal.writeFile(text);
      await this.journal.datasync();
      this.onWrite?.((performance.now() - started) / 1000);
      this.writeError = null;
    } catch (error) {
      // Kept for the next attempt; nothing recorded is dropped while the disk refuses writes. What a failed
      // write left is cut off: a partial line would be glued to the next append into a line no reader can parse.
      if (sizeBefore !== null) await this.journal?.truncate(sizeBefore).catch(() => undefined);
      this.waiting.putBack(lines);
      await this.journal?.close().catch(() => undefined);
      this.journal = null;
      this.writeError = error as Error;
      throw error;
    }
  }

  private async compactIfDue(): Promise<void> {
    if (this.compacting) return;
    const [journal, main] = await Promise.all([stat(this.journalPath).catch(() => null), stat(this.usagePath).catch(() => null)]);
    if (!journal || journal.size < Math.max(this.minCompactBytes, (main?.size ?? 0) / 4)) return;
    await this.compact();
  }

  /** Moves the journal aside (a new one takes the next records) and merges it into the main file. */
  compact(): Promise<void> {
    if (this.readOnly) return Promise.reject(this.readOnlyError());
    this.compacting ??= (async () => {
      await this.serially(async () => {
        await this.writeBuffer();
        await this.journal?.close();
        this.journal = null;
        this.journalId = newJournalId();
        await rename(this.journalPath, this.compactingPath);
        await syncDirectory(join(this.journalPath, '..'));
      });
      await this.mergeAside({ inWorker: true });
    })().finally(() => {
      this.compacting = null;
    });
    return this.compacting;
  }

  /**
   * Merges the journal set aside into a new `api_usage.json`, then deletes it: in a worker thread while
   * serving (the merge reads and writes every record; the thread is kept for the next merge), in this
   * one at start-up, where a broken file must stop the start with its own error.
   */
  private async mergeAside(options: { inWorker: boolean }): Promise<void> {
    if (!(await stat(this.compactingPath).catch(() => null))) return;
    const merge = { usagePath: this.usagePath, asidePath: this.compactingPath, retentionDays: this.retentionDays, now: Date.now() / 1000 };
    await (options.inWorker ? this.mergeThread.merge(merge) : mergeUsageJournal(merge));
  }

  private replay(entries: unknown[], recent: Record<string, number[]>): void {
    for (const entry of entries as UsageJournalEntry[]) {
      if (!isCountedEntry(entry)) continue;
      this.countEntry(entry);
      if (isUsageRecord(entry)) (recent[entry.key_id] ??= []).push(entry.timestamp);
    }
  }
}

/** Creates an empty `api_usage.json` unless one exists; safe against a concurrent creator. */
export async function createUsageFileIfMissing(path: string): Promise<void> {
  async function* none(): AsyncGenerator<string[]> {}
  try {
    await writeFileAtomic(path, usageFileLines(emptyHeader(), none()), { exclusive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

function newJournalId(): string {
  return randomBytes(9).toString('base64url');
}

function journalIdOf(entries: unknown[]): string | null {
  const first = entries[0] as { journal_id?: unknown } | undefined;
  return typeof first?.journal_id === 'string' ? first.journal_id : null;
}
