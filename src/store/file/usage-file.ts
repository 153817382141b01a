// The layout of `api_usage.json`: the reference's `{"records": [...]}` with a one-line header of totals first.
//
// comfy-gate writes the file as
//   {"comfy_gate": {"version":1,"merged_journal":ID,"daily_totals":{...},"hourly_requests":{...}},
//   "records": [
//   {record},
//   ...
//   ]}
// which is still one JSON object whose `records` any reader of the reference's file understands, while
// the header (first line) lets start-up read the totals without parsing every record. Records are
// written in the order their requests ended, so the last hour's are read from the end of the file.

import type { FileHandle } from 'node:fs/promises';
import { StoreCorruptError, type DailyTotals, type UsageRecord } from '../types.js';
import { utcDay } from '../../usage/day.js';
import { lineBatchesOf } from './journal.js';
import { MAX_LINE_BYTES, openNoFollow, readTextNoFollow } from './no-follow.js';

const HEADER_PREFIX = '{"comfy_gate": ';
const RECORDS_LINE = '"records": [';

/**
 * One key's totals for one UTC day: [requests, successes, failures, duration seconds, rate-limited,
 * prompts admitted, prompts run, execution seconds, outputs]. Files written before job metering hold
 * only the first five; `loadUsageFile` completes them with zeros.
 */
export type DayBucket = [number, number, number, number, number, number, number, number, number];

/** How many numbers a day bucket holds. */
export const BUCKET_SIZE = 9;

/** A bucket of zeros. */
export function emptyBucket(): DayBucket {
  return [0, 0, 0, 0, 0, 0, 0, 0, 0];
}

/** Per key, per UTC day. */
export type TotalsByKey = Record<string, Record<string, DayBucket>>;

export interface UsageHeader {
  version: 1;
  /** Id of the last journal merged into this file; a journal with this id is already counted. */
  merged_journal: string | null;
  daily_totals: TotalsByKey;
  /**
   * In files written by earlier versions only: the start times of the requests counted in the hour
   * before the file was written, per key. Newer files leave them in the records.
   */
  recent?: Record<string, number[]>;
  /** Counted requests per key per hour (hours since the epoch) for the last two days; absent in older files. */
  hourly_requests?: HourlyByKey;
}

/** Counted requests per key per hour, the hour given as hours since the epoch. */
export type HourlyByKey = Record<string, Record<string, number>>;

/** How long hourly counts are kept. */
export const HOURLY_KEPT_SECONDS = 48 * 3600;

/** A journal line of a request refused with 429. */
export interface RateLimitedEntry {
  rate_limited: true;
  key_id: string;
  timestamp: number;
}

/** A journal line of a prompt admitted for a key. */
export interface PromptAdmittedEntry {
  prompt_admitted: true;
  key_id: string;
  timestamp: number;
}

/** A journal line of a job that ran, stamped when it finished. */
export interface JobRunEntry {
  job_run: true;
  key_id: string;
  timestamp: number;
  execution_seconds: number;
  outputs: number;
}

/** A journal line that adds to a day's totals: a counted request, a 429, an admitted prompt or a job that ran. */
export type CountedEntry = UsageRecord | RateLimitedEntry | PromptAdmittedEntry | JobRunEntry;

/** A journal line: a counted entry, or the journal's id (its first line). Only counted requests are also usage records of the main file. */
export type UsageJournalEntry = CountedEntry | { journal_id: string };

export function emptyHeader(): UsageHeader {
  return { version: 1, merged_journal: null, daily_totals: {} };
}

/** What a usage file holds: its header, and the records still to be read (only for a file in the reference's own layout). */
export interface LoadedUsageFile {
  header: UsageHeader;
  legacyRecords: UsageRecord[] | null;
}

/**
 * Reads the header of `api_usage.json`, or, for a file written by the reference, every record (and derives the header).
 * Resolves null when the file does not exist.
 * @throws StoreCorruptError when the file cannot be read.
 */
export async function loadUsageFile(path: string): Promise<LoadedUsageFile | null> {
  // A file saved with CRLF line ends keeps a carriage return at the end of the header line.
  const firstLine = (await readFirstLine(path))?.replace(/\r$/, '') ?? null;
  if (firstLine === null) return null;
  if (firstLine.startsWith(HEADER_PREFIX) && firstLine.endsWith(',')) {
    try {
      const header = JSON.parse(firstLine.slice(HEADER_PREFIX.length, -1)) as UsageHeader;
      if (header.version === 1 && typeof header.daily_totals === 'object' && (header.recent === undefined || typeof header.recent === 'object')) {
        completeBuckets(header.daily_totals);
        return { header, legacyRecords: null };
      }
    } catch {
      // Falls through to reading the whole file, which reports what is wrong.
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readTextNoFollow(path));
  } catch (error) {
    throw new StoreCorruptError(path, `it is not valid JSON: ${(error as Error).message}`);
  }
  const records = (parsed as { records?: unknown }).records;
  if (!Array.isArray(records)) throw new StoreCorruptError(path, 'it has no "records" list');
  const header = emptyHeader();
  for (const record of records) {
    if (!isUsageRecord(record)) throw new StoreCorruptError(path, 'a record lacks key_id, timestamp or success');
    addToTotals(header.daily_totals, record);
  }
  return { header, legacyRecords: records as UsageRecord[] };
}

/** Completes, in place, the five-number buckets of files written before job metering with zeros. */
function completeBuckets(totals: TotalsByKey): void {
  for (const byDay of Object.values(totals)) for (const bucket of Object.values(byDay)) while (bucket.length < BUCKET_SIZE) bucket.push(0);
}

export function isUsageRecord(value: unknown): value is UsageRecord {
  const v = value as Partial<UsageRecord> | null;
  return typeof v === 'object' && v !== null && typeof v.key_id === 'string' && typeof v.timestamp === 'number' && typeof v.success === 'boolean';
}

/** True for a journal line that adds to a day's totals (not the journal's id, nor a line of unknown kind). */
export function isCountedEntry(entry: UsageJournalEntry): entry is CountedEntry {
  return 'rate_limited' in entry || 'prompt_admitted' in entry || 'job_run' in entry || isUsageRecord(entry);
}

/** A figure of a job run: a finite positive number, else 0 (a counter never goes down, and a file may hold anything). */
const amount = (value: unknown): number => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0);

/** What one journal entry adds to its day's bucket. */
export function bucketOfEntry(entry: CountedEntry): DayBucket {
  if ('rate_limited' in entry) return [0, 0, 0, 0, 1, 0, 0, 0, 0];
  if ('prompt_admitted' in entry) return [0, 0, 0, 0, 0, 1, 0, 0, 0];
  // Outputs are whole files (and a whole number in PostgreSQL's bigint column).
  if ('job_run' in entry) return [0, 0, 0, 0, 0, 0, 1, amount(entry.execution_seconds), Math.floor(amount(entry.outputs))];
  return [1, entry.success ? 1 : 0, entry.success ? 0 : 1, typeof entry.duration === 'number' ? entry.duration : 0, 0, 0, 0, 0, 0];
}

/** Adds one journal entry to per-day totals. */
export function addToTotals(totals: TotalsByKey, entry: CountedEntry): void {
  const bucket = ((totals[entry.key_id] ??= {})[utcDay(entry.timestamp)] ??= emptyBucket());
  const added = bucketOfEntry(entry);
  for (let i = 0; i < BUCKET_SIZE; i += 1) bucket[i]! += added[i]!;
}

/** Adds a counted request to the hourly counts (a 429 is not a counted request). */
export function addToHourly(hourly: HourlyByKey, entry: UsageJournalEntry): void {
  if (!isUsageRecord(entry)) return;
  const byHour = (hourly[entry.key_id] ??= {});
  const hour = String(Math.floor(entry.timestamp / 3600));
  byHour[hour] = (byHour[hour] ?? 0) + 1;
}

/** Hourly counts without the hours before `since` (Unix seconds). */
export function pruneHourly(hourly: HourlyByKey, since: number): HourlyByKey {
  const oldestHour = Math.floor(since / 3600);
  const pruned: HourlyByKey = {};
  for (const [keyId, byHour] of Object.entries(hourly)) {
    const kept = Object.entries(byHour).filter(([hour]) => Number(hour) >= oldestHour);
    if (kept.length > 0) pruned[keyId] = Object.fromEntries(kept);
  }
  return pruned;
}

export function bucketToTotals(bucket: DayBucket): DailyTotals {
  return {
    requests: bucket[0],
    successes: bucket[1],
    failures: bucket[2],
    duration: bucket[3],
    rate_limited: bucket[4],
    prompts: bucket[5],
    prompts_run: bucket[6],
    execution_seconds: bucket[7],
    outputs: bucket[8],
  };
}

/**
 * A piece of the records a usage file is written with: a batch of record lines, or a piece of a run of
 * record lines copied from the old file byte for byte (the pieces of one run come one after another,
 * the run's own separators inside them).
 */
export type RecordChunk = string[] | Buffer;

/** The text of a usage file: header line, then the records (a chunk at a time), one per line. */
export async function* usageFileLines(header: UsageHeader, records: AsyncIterable<RecordChunk>): AsyncGenerator<string | Buffer> {
  yield `${HEADER_PREFIX}${JSON.stringify(header)},\n${RECORDS_LINE}`;
  let first = true;
  let copying = false;
  let batch = '';
  for await (const chunk of records) {
    if (Buffer.isBuffer(chunk)) {
      if (!copying) batch += first ? '\n' : ',\n';
      if (batch.length > 0) yield batch;
      batch = '';
      yield chunk;
      first = false;
      copying = true;
      continue;
    }
    if (chunk.length === 0) continue;
    batch += (first ? '\n' : ',\n') + chunk.join(',\n');
    first = false;
    copying = false;
    if (batch.length > 1 << 16) {
      yield batch;
      batch = '';
    }
  }
  yield `${batch}\n]}\n`;
}

/** A record line's start time, found without parsing the line. */
const RECORD_TIMESTAMP = /"timestamp":(-?[0-9.eE+-]+)/;
/** How much of the old file a merge reads at a time. */
const COPY_BYTES = 1 << 20;

/** Records of a file in the reference's layout turned into lines at a time. */
const LEGACY_BATCH = 1000;

/** A reference file's records with a timestamp at or after `oldestKept`, as lines, a batch at a time. */
function* legacyRecordBatches(loaded: LoadedUsageFile & { legacyRecords: UsageRecord[] }, oldestKept: number): Generator<string[]> {
  const kept = loaded.legacyRecords.filter((record) => record.timestamp >= oldestKept);
  for (let at = 0; at < kept.length; at += LEGACY_BATCH) yield kept.slice(at, at + LEGACY_BATCH).map((record) => JSON.stringify(record));
}

/**
 * Every record of an existing usage file as a JSON line, a batch at a time: a comfy-gate file read a
 * block at a time from its first record line (its header line may be of any length), a reference
 * file's records from memory.
 * @throws StoreCorruptError for a comfy-gate file whose records list is not closed, or a record line longer than MAX_LINE_BYTES.
 */
export async function* recordLines(path: string, loaded: LoadedUsageFile | null): AsyncGenerator<string[]> {
  if (!loaded) return;
  if (hasLegacyRecords(loaded)) {
    yield* legacyRecordBatches(loaded, -Infinity);
    return;
  }
  const { start, end } = await withHandle(path, async (handle) => {
    const end = await recordsEnd(handle, path);
    return { start: await firstKeptRecord(handle, path, end, -Infinity), end };
  });
  if (start >= end) return;
  for await (const lines of lineBatchesOf(path, start)) {
    const records = lines.map(recordOfLine).filter((line) => line.length > 0 && line !== ']}');
    if (records.length > 0) yield records;
  }
}

function hasLegacyRecords(loaded: LoadedUsageFile): loaded is LoadedUsageFile & { legacyRecords: UsageRecord[] } {
  return loaded.legacyRecords !== null;
}

async function withHandle<T>(path: string, use: (handle: FileHandle) => Promise<T>): Promise<T> {
  const handle = await openNoFollow(path, 'read');
  try {
    return await use(handle);
  } finally {
    await handle.close();
  }
}

/** A line of the records list without the comma after it (and a carriage return, in a file saved with CRLF line ends). */
function recordOfLine(raw: string): string {
  let end = raw.length;
  if (raw.charCodeAt(end - 1) === 13) end -= 1;
  if (raw.charCodeAt(end - 1) === 44) end -= 1;
  return end === raw.length ? raw : raw.slice(0, end);
}

/**
 * The records of an existing usage file that a merge keeps, a chunk at a time. In comfy-gate's layout,
 * the records at the start of the file older than `oldestKept` are skipped (each line's timestamp found
 * without parsing it), and the bytes from the first record kept to the last record are copied as they
 * are, never decoded or split into lines: a record is copied at every merge for as long as it is kept,
 * so this is most of what a merge reads and writes. Records are in the order their requests ended, so
 * a record older than `oldestKept` after a kept one (a long request that started before a short one
 * ended) stays until the records before it are dropped, at most its duration (plus a flush) longer
 * than the retention. A reference file's records come from memory, filtered one by one.
 * @throws StoreCorruptError for a skipped record line without a timestamp, or a file that does not end its records list.
 */
export async function* keptRecordChunks(path: string, loaded: LoadedUsageFile | null, oldestKept: number): AsyncGenerator<RecordChunk> {
  if (!loaded) return;
  if (hasLegacyRecords(loaded)) {
    yield* legacyRecordBatches(loaded, oldestKept);
    return;
  }
  const handle = await openNoFollow(path, 'read');
  try {
    const end = await recordsEnd(handle, path);
    let position = await firstKeptRecord(handle, path, end, oldestKept);
    while (position < end) {
      const chunk = Buffer.allocUnsafe(Math.min(COPY_BYTES, end - position));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) throw new StoreCorruptError(path, 'it became shorter while it was read');
      position += bytesRead;
      yield chunk.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/** Where the last record of a comfy-gate usage file ends: before the whitespace and `]}` that close the list. */
async function recordsEnd(handle: FileHandle, path: string): Promise<number> {
  const size = (await handle.stat()).size;
  const tail = Buffer.alloc(Math.min(size, 4096));
  await handle.read(tail, 0, tail.length, size - tail.length);
  let at = tail.lastIndexOf(']}');
  if (at < 0) throw new StoreCorruptError(path, 'its records list is not closed with ]}');
  while (at > 0 && isJsonSpace(tail[at - 1]!)) at -= 1;
  return size - tail.length + at;
}

function isJsonSpace(byte: number): boolean {
  return byte === 10 || byte === 13 || byte === 32 || byte === 9;
}

/**
 * The offset of the first record line (after the header line and the records line) whose timestamp is
 * at or after `oldestKept`; `end` when none before it is. The header line may be of any length.
 */
async function firstKeptRecord(handle: FileHandle, path: string, end: number, oldestKept: number): Promise<number> {
  const buffer = Buffer.allocUnsafe(MAX_LINE_BYTES);
  let position = 0;
  let lineNumber = 1;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    const atEnd = bytesRead < buffer.length;
    let from = 0;
    while (from < bytesRead) {
      if (position + from >= end) return end;
      let lineEnd = buffer.indexOf(10, from);
      if (lineEnd < 0 || lineEnd >= bytesRead) {
        if (!atEnd) break;
        lineEnd = bytesRead;
      }
      if (lineNumber > 2) {
        const line = buffer.toString('latin1', from, lineEnd);
        if (line.trim().length > 0) {
          const match = RECORD_TIMESTAMP.exec(line);
          if (!match) throw new StoreCorruptError(path, `record on line ${lineNumber} has no timestamp`);
          if (Number(match[1]) >= oldestKept) return position + from;
        }
      }
      lineNumber += 1;
      from = lineEnd + 1;
    }
    if (atEnd) return end;
    // A line longer than the buffer: only the header line may be, and it is skipped a buffer at a time.
    if (from === 0 && lineNumber > 2) throw new StoreCorruptError(path, `line ${lineNumber} is longer than ${MAX_LINE_BYTES} bytes`);
    position += from === 0 ? bytesRead : from;
  }
}

/** How far out of end order records can be appended (a batch waits for its flush), in seconds. */
const END_ORDER_SLACK_SECONDS = 5;
const TAIL_READ_BYTES = 1 << 16;

/**
 * The start times of the counted requests that started at or after `since`, per key, from the end of a
 * usage file in comfy-gate's layout. Records are appended in the order their requests ended, so the
 * reading goes backwards and stops at the first record that ended well before `since`.
 * @throws StoreCorruptError when a record line there is not a usage record.
 */
export async function recentRecordTimes(path: string, since: number): Promise<Record<string, number[]>> {
  const recent: Record<string, number[]> = {};
  const handle = await openNoFollow(path, 'read');
  try {
    let position = (await handle.stat()).size;
    /** Bytes of a line whose start is in a block not read yet. */
    let carried = Buffer.alloc(0);
    while (position > 0) {
      const length = Math.min(TAIL_READ_BYTES, position);
      position -= length;
      const block = Buffer.alloc(length);
      await handle.read(block, 0, length, position);
      const text = Buffer.concat([block, carried]);
      // Before the first newline is the end of a line that starts in the block before: kept for it.
      const firstLineEnd = position > 0 ? text.indexOf(10) : -1;
      if (position > 0 && firstLineEnd < 0) {
        carried = text;
        continue;
      }
      carried = text.subarray(0, Math.max(0, firstLineEnd));
      const lines = text
        .toString('utf8', firstLineEnd + 1)
        .split('\n')
        .reverse();
      for (const raw of lines) {
        const line = recordOfLine(raw);
        if (line.length === 0 || line === ']}') continue;
        if (line.startsWith(HEADER_PREFIX) || line === RECORDS_LINE) return inFileOrder(recent);
        let record: unknown;
        try {
          record = JSON.parse(line);
        } catch {
          throw new StoreCorruptError(path, 'a record near its end is not JSON');
        }
        if (!isUsageRecord(record)) throw new StoreCorruptError(path, 'a record near its end lacks key_id, timestamp or success');
        const duration = typeof record.duration === 'number' ? record.duration : 0;
        if (record.timestamp + duration < since - END_ORDER_SLACK_SECONDS) return inFileOrder(recent);
        if (record.timestamp >= since) (recent[record.key_id] ??= []).push(record.timestamp);
      }
    }
    return inFileOrder(recent);
  } finally {
    await handle.close();
  }
}

/** Each key's times, read backwards, back in the order of the file. */
function inFileOrder(recent: Record<string, number[]>): Record<string, number[]> {
  for (const times of Object.values(recent)) times.reverse();
  return recent;
}

async function readFirstLine(path: string): Promise<string | null> {
  let handle;
  try {
    handle = await openNoFollow(path, 'read');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const chunks: Buffer[] = [];
    let position = 0;
    for (;;) {
      const buffer = Buffer.alloc(1 << 16);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      const newline = buffer.subarray(0, bytesRead).indexOf(10);
      if (newline >= 0) {
        chunks.push(buffer.subarray(0, newline));
        break;
      }
      chunks.push(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    await handle.close();
  }
}
