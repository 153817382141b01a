// A large api_keys.json as a compact index: the file's bytes, and sorted typed arrays of hashes pointing at its lines; a key is parsed when first used.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { readSync } from 'node:fs';
import { parseStoredKey } from '../key-record.js';
import type { KeyRecord } from '../types.js';
import { openNoFollow } from './no-follow.js';
import { nextLayoutState, readMemberValue, readSnapshotLine, type LayoutState } from './snapshot-layout.js';
import type { SnapshotIndex } from './table-records.js';

/** Files smaller than this are read the plain way: parsing them whole takes a few tens of milliseconds. */
export const INDEX_FROM_BYTES = 4 * 1024 * 1024;
/** Index entries pack a 29-bit hash and a record number below 2^24 into one double (53 bits). */
const RECORD_SPAN = 2 ** 24;
const MAX_THREADS = 4;
/** Bytes read at a time while looking for where a range's first line starts. */
const LINE_SEARCH_BYTES = 64 * 1024;

/** The values a key can be found by besides its id: its hash, and the previous hash during a rotation's grace. */
export function keyHashesOf(record: KeyRecord): string[] {
  return record.previous_key_hash ? [record.key_hash, record.previous_key_hash] : [record.key_hash];
}

/** A 29-bit FNV-1a hash of a string's UTF-16 code units, its first `upTo` of them. */
export function hash29(text: string, upTo = text.length): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < Math.min(upTo, text.length); i += 1) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 3;
}

/**
 * The hash a key hash is filed under: of its first eight characters alone, since a SHA-256 digest's hex
 * digits are uniform already (hashing all 64 took a tenth of the index's time). Lookups check the record.
 */
function keyHash29(keyHash: string): number {
  return hash29(keyHash, 8);
}

/**
 * One thread's share of the file, open as `fd` (`size` bytes, read into `buffer` at the same offsets):
 * the lines that start from byte `from` on and before byte `to`. The first share reads from the `{`
 * line; each other share from a member line, after one ending in a comma (the share before checks that).
 */
export interface RangeTask {
  fd: number;
  size: number;
  buffer: SharedArrayBuffer;
  from: number;
  to: number;
}

/**
 * A range's member lines (byte offsets, line ends excluded), its sorted entries by id and by key hash,
 * each a hash × RECORD_SPAN + the line's number within the range (sorted in the worker, so the main
 * thread only merges), and the layout state it ends in; null when the range is not a valid key
 * snapshot, or the file ended early.
 */
export type RangeIndex = {
  starts: Float64Array<ArrayBuffer>;
  ends: Float64Array<ArrayBuffer>;
  byId: Float64Array<ArrayBuffer>;
  byKeyHash: Float64Array<ArrayBuffer>;
  final: LayoutState;
} | null;

/**
 * Reads a range's lines into the buffer and checks them one by one: the layout, and every record as the
 * store would read it. Run in a worker thread, several ranges at once, so the reading is shared too.
 */
export function indexRange(task: RangeTask): RangeIndex {
  const bytes = Buffer.from(task.buffer);
  const from = lineStartFrom(task.fd, task.from, task.size);
  const to = lineStartFrom(task.fd, task.to, task.size);
  if (!readInto(task.fd, bytes, from, to)) return null;
  const starts: number[] = [];
  const ends: number[] = [];
  const byId: number[] = [];
  const byKeyHash: number[] = [];
  let state: LayoutState | null = task.from === 0 ? 'open' : 'comma';
  for (let start = from; start < to;) {
    const newline = bytes.indexOf(10, start);
    const end = newline < 0 || newline >= to ? to : newline;
    const line = readSnapshotLine(bytes.toString('utf8', start, end));
    state = line && nextLayoutState(state, line);
    if (state === null || line === null) return null;
    if (line.kind === 'member') {
      const record = readMemberValue(line.valueText, parseStoredKey);
      if (record === null || starts.length >= RECORD_SPAN) return null;
      for (const keyHash of keyHashesOf(record)) byKeyHash.push(keyHash29(keyHash) * RECORD_SPAN + starts.length);
      byId.push(hash29(line.id) * RECORD_SPAN + starts.length);
      starts.push(start);
      ends.push(end);
    }
    start = end + 1;
  }
  return {
    starts: Float64Array.from(starts),
    ends: Float64Array.from(ends),
    byId: Float64Array.from(byId).sort(),
    byKeyHash: Float64Array.from(byKeyHash).sort(),
    final: state,
  };
}

/** Where the first line that starts at or after `position` starts: past the first newline from `position - 1` on; `size` when there is none. */
function lineStartFrom(fd: number, position: number, size: number): number {
  if (position === 0) return 0;
  const chunk = Buffer.allocUnsafe(LINE_SEARCH_BYTES);
  for (let at = position - 1; at < size;) {
    const read = readSync(fd, chunk, 0, Math.min(chunk.length, size - at), at);
    if (read === 0) return size;
    const newline = chunk.subarray(0, read).indexOf(10);
    if (newline >= 0) return at + newline + 1;
    at += read;
  }
  return size;
}

/** Reads bytes `from` to `to` of the file into `bytes` at the same offsets; false when the file ended first. */
function readInto(fd: number, bytes: Buffer, from: number, to: number): boolean {
  for (let at = from; at < to;) {
    const read = readSync(fd, bytes, at, to - at, at);
    if (read === 0) return false;
    at += read;
  }
  return true;
}

export interface KeyIndexOptions {
  /** Smaller files are left to the plain reading (default `INDEX_FROM_BYTES`). */
  minBytes?: number;
  /** Worker threads that check the file (default: one per core, at most 4). */
  threads?: number;
}

/**
 * Indexes the key snapshot at `path` when it is large and laid out a key per line, checking every line
 * in parallel threads. Resolves null for a small file, and whenever the plain reading must decide
 * (another layout, an invalid key, an id twice): it then reads the file and words any error.
 */
export async function indexKeySnapshot(path: string, options: KeyIndexOptions = {}): Promise<KeySnapshotIndex | null> {
  const handle = await openNoFollow(path, 'read');
  let buffer: SharedArrayBuffer;
  let settled: Array<PromiseSettledResult<RangeIndex>>;
  try {
    const { size } = await handle.stat();
    if (size === 0 || size < (options.minBytes ?? INDEX_FROM_BYTES)) return null;
    buffer = new SharedArrayBuffer(size);
    const count = options.threads ?? Math.min(MAX_THREADS, availableParallelism());
    const share = (i: number): number => Math.floor((size * i) / count);
    const tasks = Array.from({ length: count }, (_, i): RangeTask => ({ fd: handle.fd, size, buffer, from: share(i), to: share(i + 1) }));
    // Each range read and checked in a worker (a reload while serving must not hold up requests); all settle before the file is closed.
    settled = await Promise.allSettled(tasks.map(indexInWorker));
  } finally {
    await handle.close();
  }
  const ranges: NonNullable<RangeIndex>[] = [];
  for (const outcome of settled) {
    if (outcome.status === 'rejected') throw outcome.reason;
    if (outcome.value === null) return null;
    // A range in which no line starts (one long line crosses it) passes the state on.
    if (outcome.value.starts.length > 0 || outcome.value.final !== 'comma') ranges.push(outcome.value);
  }
  return joinsUp(ranges) ? KeySnapshotIndex.build(Buffer.from(buffer), ranges) : null;
}

/** Whether the ranges make one snapshot: each but the last ends after a member with a comma, where the next one starts, and the last closes the object. */
function joinsUp(ranges: NonNullable<RangeIndex>[]): boolean {
  return ranges.every((range, i) => range.final === (i === ranges.length - 1 ? 'closed' : 'comma'));
}

function indexInWorker(task: RangeTask): Promise<RangeIndex> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./key-index-worker.js', import.meta.url), { workerData: task });
    worker.once('message', (range: RangeIndex) => {
      resolve(range);
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

/** The index: every key's line in the file's bytes, found by a hash of its id or of its key hashes. */
export class KeySnapshotIndex implements SnapshotIndex<KeyRecord> {
  private readonly bytes: Buffer;
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;
  /** hash29(id) × RECORD_SPAN + line number, sorted. */
  private readonly byId: Float64Array;
  /** hash29(key hash) × RECORD_SPAN + line number, sorted. */
  private readonly byKeyHash: Float64Array;
  /** The keys parsed so far, by id: the objects `get` hands out. */
  private readonly parsed = new Map<string, KeyRecord>();

  private constructor(bytes: Buffer, starts: Float64Array, ends: Float64Array, byId: Float64Array, byKeyHash: Float64Array) {
    this.bytes = bytes;
    this.starts = starts;
    this.ends = ends;
    this.byId = byId;
    this.byKeyHash = byKeyHash;
  }

  /** Joins the ranges into one index; null for a file with more keys than it can number, or an id twice. */
  static build(bytes: Buffer, ranges: NonNullable<RangeIndex>[]): KeySnapshotIndex | null {
    const total = ranges.reduce((sum, range) => sum + range.starts.length, 0);
    if (total >= RECORD_SPAN) return null;
    const starts = new Float64Array(total);
    const ends = new Float64Array(total);
    const firstLines: number[] = [];
    let line = 0;
    for (const range of ranges) {
      starts.set(range.starts, line);
      ends.set(range.ends, line);
      firstLines.push(line);
      line += range.starts.length;
    }
    const byId = mergeRanges(ranges.map((range, i) => ({ entries: range.byId, firstLine: firstLines[i]! })));
    const byKeyHash = mergeRanges(ranges.map((range, i) => ({ entries: range.byKeyHash, firstLine: firstLines[i]! })));
    const index = new KeySnapshotIndex(bytes, starts, ends, byId, byKeyHash);
    return index.hasRepeatedId() ? null : index;
  }

  get size(): number {
    return this.starts.length;
  }

  get(id: string): KeyRecord | undefined {
    const known = this.parsed.get(id);
    if (known) return known;
    const record = this.peek(id);
    if (record) this.parsed.set(id, record);
    return record;
  }

  peek(id: string): KeyRecord | undefined {
    const known = this.parsed.get(id);
    if (known) return known;
    const line = this.lineOf(id);
    return line < 0 ? undefined : this.recordAt(line);
  }

  has(id: string): boolean {
    return this.parsed.has(id) || this.lineOf(id) >= 0;
  }

  *ids(): IterableIterator<string> {
    for (let line = 0; line < this.starts.length; line += 1) yield this.idAt(line);
  }

  idsBySecondary(value: string): string[] {
    return this.linesWithHash(this.byKeyHash, keyHash29(value)).map((line) => this.memberAt(line).id);
  }

  memberText(id: string): string | undefined {
    const line = this.lineOf(id);
    if (line < 0) return undefined;
    return `${JSON.stringify(id)}: ${this.memberAt(line).valueText}`;
  }

  /** The line number of the key with this id, or -1. */
  private lineOf(id: string): number {
    for (const line of this.linesWithHash(this.byId, hash29(id))) if (this.memberAt(line).id === id) return line;
    return -1;
  }

  /** The line numbers filed under `hash` in a sorted array of packed entries. */
  private linesWithHash(sorted: Float64Array, hash: number): number[] {
    const low = hash * RECORD_SPAN;
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid]! < low) lo = mid + 1;
      else hi = mid;
    }
    const lines: number[] = [];
    for (let i = lo; i < sorted.length && sorted[i]! < low + RECORD_SPAN; i += 1) lines.push(sorted[i]! - low);
    return lines;
  }

  /** The id on a line, read from its bytes alone: an indexed line's id has no escape, so it ends at the next quote. */
  private idAt(line: number): string {
    let open = this.starts[line]!;
    while (this.bytes[open] !== 34) open += 1;
    return this.bytes.toString('utf8', open + 1, this.bytes.indexOf(34, open + 1));
  }

  private memberAt(line: number): { id: string; valueText: string } {
    const member = readSnapshotLine(this.bytes.toString('utf8', this.starts[line], this.ends[line]));
    if (member?.kind !== 'member') throw new Error(`key index: line ${line} is not a member line`);
    return member;
  }

  /** The key on a line the index checked when it was built. */
  private recordAt(line: number): KeyRecord {
    const record = readMemberValue(this.memberAt(line).valueText, parseStoredKey);
    if (record === null) throw new Error(`key index: line ${line} is no longer a valid key`);
    return record;
  }

  /** True when two lines have the same id (the plain reading then decides which one counts). */
  private hasRepeatedId(): boolean {
    for (let i = 1; i < this.byId.length; i += 1) {
      const hash = Math.floor(this.byId[i]! / RECORD_SPAN);
      if (hash !== Math.floor(this.byId[i - 1]! / RECORD_SPAN)) continue;
      const lines = this.linesWithHash(this.byId, hash);
      const ids = new Set(lines.map((line) => this.memberAt(line).id));
      if (ids.size < lines.length) return true;
      i += lines.length - 1;
    }
    return false;
  }
}

/**
 * Merges the ranges' sorted entries into one sorted array of the whole file's: a range's entries count
 * lines from its own first, so each is moved by the lines before it, which keeps every range sorted.
 */
function mergeRanges(runs: Array<{ entries: Float64Array; firstLine: number }>): Float64Array {
  const merged = new Float64Array(runs.reduce((sum, run) => sum + run.entries.length, 0));
  const next = runs.map(() => 0);
  for (let out = 0; out < merged.length; out += 1) {
    let from = 0;
    let least = Infinity;
    for (let run = 0; run < runs.length; run += 1) {
      const { entries, firstLine } = runs[run]!;
      if (next[run]! < entries.length && entries[next[run]!]! + firstLine < least) {
        least = entries[next[run]!]! + firstLine;
        from = run;
      }
    }
    merged[out] = least;
    next[from]! += 1;
  }
  return merged;
}
