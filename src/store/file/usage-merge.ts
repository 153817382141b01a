// Merges a usage journal set aside into a new `api_usage.json`: the heavy part of a compaction, run in a worker thread while the gateway serves.

import { unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import { syncDirectory, writeFileAtomic } from './atomic-write.js';
import { lineBatchesOf, parseJournalLine } from './journal.js';
import {
  addToHourly,
  addToTotals,
  emptyHeader,
  HOURLY_KEPT_SECONDS,
  isCountedEntry,
  isUsageRecord,
  keptRecordChunks,
  loadUsageFile,
  pruneHourly,
  type RecordChunk,
  usageFileLines,
  type UsageHeader,
  type UsageJournalEntry,
} from './usage-file.js';

export interface UsageMerge {
  usagePath: string;
  /** The journal set aside: merged, then deleted. */
  asidePath: string;
  retentionDays: number;
  /** Unix seconds: records older than the retention before it are dropped. */
  now: number;
}

/**
 * Writes a new `api_usage.json` (atomically) holding the old one's records and the journal's, without
 * those past the retention, and a header with the totals and the journal's id; then deletes the journal.
 * @throws StoreCorruptError for a usage file that does not load; the file-system error when writing fails (the files are then as they were).
 */
export async function mergeUsageJournal({ usagePath, asidePath, retentionDays, now }: UsageMerge): Promise<void> {
  const loaded = await loadUsageFile(usagePath);
  const previous = loaded?.header ?? emptyHeader();
  // The last hour's request times are not carried in the header: they are read from the records' end at start-up.
  const header: UsageHeader = {
    version: 1,
    merged_journal: null,
    daily_totals: previous.daily_totals,
    hourly_requests: previous.hourly_requests ?? {},
  };
  for (const record of loaded?.legacyRecords ?? []) addToHourly(header.hourly_requests!, record);
  const oldestKept = now - retentionDays * 86_400;
  // The journal set aside is read twice, so it is never in memory whole: for the header and the numbers
  // of the lines that are records to keep, then for those lines, as they are (each is the record exactly
  // as the usage file holds it; 429s, prompts and jobs live in the header's totals only).
  const keptLineNumbers: number[] = [];
  let lineNumber = 0;
  for await (const lines of lineBatchesOf(asidePath)) {
    for (const line of lines) {
      lineNumber += 1;
      if (line.length === 0) continue;
      const usage = parseJournalLine(asidePath, line, lineNumber) as UsageJournalEntry;
      if ('journal_id' in usage) {
        header.merged_journal ??= usage.journal_id;
        continue;
      }
      if (!isCountedEntry(usage)) continue;
      addToTotals(header.daily_totals, usage);
      addToHourly(header.hourly_requests!, usage);
      if (isUsageRecord(usage) && usage.timestamp >= oldestKept) keptLineNumbers.push(lineNumber);
    }
  }
  header.hourly_requests = pruneHourly(header.hourly_requests!, now - HOURLY_KEPT_SECONDS);
  async function* keptJournalLines(): AsyncGenerator<string[]> {
    let lineNumber = 0;
    let next = 0;
    for await (const lines of lineBatchesOf(asidePath)) {
      const kept: string[] = [];
      for (const line of lines) {
        lineNumber += 1;
        if (keptLineNumbers[next] !== lineNumber) continue;
        kept.push(line);
        next += 1;
      }
      yield kept;
    }
  }
  async function* records(): AsyncGenerator<RecordChunk> {
    yield* keptRecordChunks(usagePath, loaded, oldestKept);
    yield* keptJournalLines();
  }
  await writeFileAtomic(usagePath, usageFileLines(header, records()));
  await unlink(asidePath);
  await syncDirectory(dirname(asidePath));
}

/** How long the merge thread waits for the next merge before it stops: under load merges come every few seconds, and starting a thread costs about 55 ms of CPU. */
const MERGE_THREAD_KEPT_MS = 30_000;

/**
 * Runs `mergeUsageJournal` in a worker thread, one merge at a time. The thread is kept for the next
 * merge while they come within MERGE_THREAD_KEPT_MS of each other, and stopped after that; it never
 * keeps the process alive.
 */
export class UsageMergeThread {
  private worker: Worker | null = null;
  private idleTimer: NodeJS.Timeout | null = null;

  /** The id of the thread kept (Worker.threadId), null while none is. */
  get threadId(): number | null {
    return this.worker?.threadId ?? null;
  }

  /** @throws an Error with the merge's message and code, or the thread's own failure. */
  merge(merge: UsageMerge): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    const worker = (this.worker ??= this.start());
    return new Promise((resolve, reject) => {
      const settle = (error: Error | null): void => {
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        if (this.worker === worker) this.idleTimer = setTimeout(() => this.stop(), MERGE_THREAD_KEPT_MS).unref();
        if (error) reject(error);
        else resolve();
      };
      const onMessage = (failure: { message: string; code?: string } | null): void =>
        settle(failure ? Object.assign(new Error(failure.message), failure.code ? { code: failure.code } : {}) : null);
      const onError = (error: Error): void => {
        this.worker = null;
        settle(error);
      };
      const onExit = (code: number): void => {
        this.worker = null;
        settle(new Error(`the usage merge thread stopped (exit code ${code})`));
      };
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
      worker.postMessage(merge);
    });
  }

  /** Stops the thread; call when no merge is under way. */
  stop(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    void this.worker?.terminate();
    this.worker = null;
  }

  private start(): Worker {
    const worker = new Worker(new URL('./usage-merge-worker.js', import.meta.url));
    worker.unref();
    // A thread that fails or stops between merges is dropped (an 'error' with no listener would throw here); the next merge starts another.
    const drop = (): void => {
      if (this.worker === worker) this.worker = null;
    };
    worker.on('error', drop).on('exit', drop);
    return worker;
  }
}
