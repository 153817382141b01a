// A large api_keys.json as a compact index: sorted typed arrays of hashes pointing at its lines in the open file; a key is read and parsed when first used.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { isAscii } from 'node:buffer';
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { parseStoredKey } from '../key-record.js';
import type { KeyRecord } from '../types.js';
import { openNoFollow } from './no-follow.js';
import { nextLayoutState, readMemberValue, readSnapshotLine, type LayoutState, type SnapshotLine } from './snapshot-layout.js';
import type { SnapshotIndex } from './table-records.js';

/** A member line of the snapshot: its id, and its value as text. */
type SnapshotMember = Extract<SnapshotLine, { kind: 'member' }>;

/** Files smaller than this are read the plain way: parsing them whole takes a few tens of milliseconds. */
export const INDEX_FROM_BYTES = 4 * 1024 * 1024;
/** Index entries pack a 29-bit hash and a record number below 2^24 into one double (53 bits). */
const RECORD_SPAN = 2 ** 24;
const MAX_THREADS = 4;
/** Bytes read at a time while looking for where a range's first line starts. */
const LINE_SEARCH_BYTES = 64 * 1024;
/**
 * Bytes of the file read and decoded at a time while checking it, and while reading it in order: small
 * enough that a chunk's text is an ordinary heap string (a larger one goes to V8's large-object space,
 * or from about 1 MB is made an external string, each in freshly mapped memory: with chunks of 256 KiB
 * to 1 MiB, indexing a file took 1.3 to 2 times the system time it takes with 64 KiB).
 */
const CHUNK_BYTES = 64 * 1024;

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
 * One thread's share of the file, open as `fd` (`size` bytes): the lines that start from byte `from` on
 * and before byte `to`. The first share reads from the `{` line; each other share from a member line,
 * after one ending in a comma (the share before checks that).
 */
export interface RangeTask {
  fd: number;
  size: number;
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
 * Reads a range a chunk at a time and checks its lines one by one: the layout, and every record as the
 * store would read it. Run in a worker thread, several ranges at once, so the reading is shared too.
 */
export function indexRange(task: RangeTask): RangeIndex {
  const from = lineStartFrom(task.fd, task.from, task.size);
  const to = lineStartFrom(task.fd, task.to, task.size);
  const starts: number[] = [];
  const ends: number[] = [];
  const byId: number[] = [];
  const byKeyHash: number[] = [];
  let state: LayoutState | null = task.from === 0 ? 'open' : 'comma';
  const indexLine = (raw: string, start: number, end: number): boolean => {
    const line = readSnapshotLine(raw);
    state = line && nextLayoutState(state!, line);
    if (state === null || line === null) return false;
    if (line.kind === 'member') {
      const record = readMemberValue(line.valueText, parseStoredKey);
      if (record === null || starts.length >= RECORD_SPAN) return false;
      for (const keyHash of keyHashesOf(record)) byKeyHash.push(keyHash29(keyHash) * RECORD_SPAN + starts.length);
      byId.push(hash29(line.id) * RECORD_SPAN + starts.length);
      starts.push(start);
      ends.push(end);
    }
    return true;
  };
  for (const chunk of lineChunks(task.fd, from, to)) {
    if (chunk === null) return null;
    const { bytes, at } = chunk;
    if (isAscii(bytes)) {
      // One string for the chunk, cut at its newlines: each character is one byte, so offsets carry over.
      const text = bytes.toString('latin1');
      for (let start = 0; start < text.length;) {
        const newline = text.indexOf('\n', start);
        const end = newline < 0 ? text.length : newline;
        if (!indexLine(text.slice(start, end), at + start, at + end)) return null;
        start = end + 1;
      }
    } else {
      for (let start = 0; start < bytes.length;) {
        const newline = bytes.indexOf(10, start);
        const end = newline < 0 ? bytes.length : newline;
        if (!indexLine(bytes.toString('utf8', start, end), at + start, at + end)) return null;
        start = end + 1;
      }
    }
  }
  return {
    starts: Float64Array.from(starts),
    ends: Float64Array.from(ends),
    byId: Float64Array.from(byId).sort(),
    byKeyHash: Float64Array.from(byKeyHash).sort(),
    final: state,
  };
}

/**
 * Bytes `from` to `to` of the file in chunks of whole lines, about CHUNK_BYTES each (a longer line gets
 * a chunk of its own), read into one buffer that each chunk reuses; null when the file ended first.
 */
function* lineChunks(fd: number, from: number, to: number): Generator<{ bytes: Buffer; at: number } | null> {
  let buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  for (let at = from; at < to;) {
    const wanted = Math.min(buffer.length, to - at);
    if (readAt(fd, buffer, wanted, at) < wanted) return yield null;
    const lastNewline = at + wanted === to ? wanted - 1 : buffer.lastIndexOf(10, wanted - 1);
    if (lastNewline < 0) {
      buffer = Buffer.allocUnsafe(buffer.length * 2);
      continue;
    }
    yield { bytes: buffer.subarray(0, lastNewline + 1), at };
    at += lastNewline + 1;
  }
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

/** Reads up to `length` bytes of the file from `position` into the start of `buffer`; how many there were before the file ended. */
function readAt(fd: number, buffer: Buffer, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const read = readSync(fd, buffer, done, length - done, position + done);
    if (read === 0) break;
    done += read;
  }
  return done;
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
  const file = await openNoFollow(path, 'read');
  let index: KeySnapshotIndex | null = null;
  try {
    const { size } = await file.stat();
    if (size === 0 || size < (options.minBytes ?? INDEX_FROM_BYTES)) return null;
    const count = options.threads ?? Math.min(MAX_THREADS, availableParallelism());
    const share = (i: number): number => Math.floor((size * i) / count);
    const tasks = Array.from({ length: count }, (_, i): RangeTask => ({ fd: file.fd, size, from: share(i), to: share(i + 1) }));
    // Each range read and checked in a worker (a reload while serving must not hold up requests); all settle before the file may be closed.
    const settled = await Promise.allSettled(tasks.map(indexInWorker));
    const ranges: NonNullable<RangeIndex>[] = [];
    for (const outcome of settled) {
      if (outcome.status === 'rejected') throw outcome.reason;
      if (outcome.value === null) return null;
      // A range in which no line starts (one long line crosses it) passes the state on.
      if (outcome.value.starts.length > 0 || outcome.value.final !== 'comma') ranges.push(outcome.value);
    }
    index = joinsUp(ranges) ? KeySnapshotIndex.build(file, ranges) : null;
    return index;
  } finally {
    if (index === null) await file.close();
  }
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

/**
 * Closes an index's file once the index is garbage, not when the table replaces it: a paged listing
 * may still be reading the index it started on, between turns of the event loop.
 */
const openSnapshots = new FinalizationRegistry<FileHandle>((file) => void file.close().catch(() => undefined));

/**
 * The index: where every key's line is in the snapshot file, found by a hash of its id or of its key
 * hashes. The file stays open (a snapshot is replaced by renaming a new file over it, so this one keeps
 * its bytes) and a line is read from it when its key is first used: the file's bytes are not held in
 * memory, and not copied into it at start-up.
 */
export class KeySnapshotIndex implements SnapshotIndex<KeyRecord> {
  private readonly file: FileHandle;
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;
  /** hash29(id) × RECORD_SPAN + line number, sorted. */
  private readonly byId: Float64Array;
  /** hash29(key hash) × RECORD_SPAN + line number, sorted. */
  private readonly byKeyHash: Float64Array;
  /** The keys parsed so far, by id: the objects `get` hands out. */
  private readonly parsed = new Map<string, KeyRecord>();
  /** The ids of the lines a lookup by hash has read, by line number. */
  private readonly lineIds = new Map<number, string>();
  /** Reused to read one line. */
  private lineBuffer = Buffer.allocUnsafe(4096);

  private constructor(file: FileHandle, starts: Float64Array, ends: Float64Array, byId: Float64Array, byKeyHash: Float64Array) {
    this.file = file;
    this.starts = starts;
    this.ends = ends;
    this.byId = byId;
    this.byKeyHash = byKeyHash;
  }

  /** Joins the ranges into one index over the open `file`; null for a file with more keys than it can number, or an id twice. */
  static build(file: FileHandle, ranges: NonNullable<RangeIndex>[]): KeySnapshotIndex | null {
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
    const index = new KeySnapshotIndex(file, starts, ends, byId, byKeyHash);
    if (index.hasRepeatedId()) return null;
    openSnapshots.register(index, file);
    return index;
  }

  get size(): number {
    return this.starts.length;
  }

  get(id: string): KeyRecord | undefined {
    const known = this.parsed.get(id);
    if (known) return known;
    const found = this.find(id);
    if (!found) return undefined;
    const record = recordOf(found.member, found.line);
    this.parsed.set(id, record);
    return record;
  }

  has(id: string): boolean {
    return this.parsed.has(id) || this.find(id) !== null;
  }

  *ids(): IterableIterator<string> {
    for (const line of this.linesInOrder()) yield idOf(line);
  }

  *entries(): IterableIterator<[string, KeyRecord]> {
    let line = 0;
    for (const member of this.membersInOrder()) {
      yield [member.id, this.parsed.get(member.id) ?? recordOf(member, line)];
      line += 1;
    }
  }

  *members(): IterableIterator<[string, string]> {
    for (const { id, valueText } of this.membersInOrder()) yield [id, `${JSON.stringify(id)}: ${valueText}`];
  }

  idsBySecondary(value: string): string[] {
    return this.linesWithHash(this.byKeyHash, keyHash29(value)).map((line) => this.idOfLine(line));
  }

  /** The id on a line, read from the file the first time only: every request with a key looks its hash up. */
  private idOfLine(line: number): string {
    let id = this.lineIds.get(line);
    if (id === undefined) {
      id = this.memberAt(line).id;
      this.lineIds.set(line, id);
    }
    return id;
  }

  /** The line of the key with this id and its member as read from it, or null. */
  private find(id: string): { line: number; member: SnapshotMember } | null {
    for (const line of this.linesWithHash(this.byId, hash29(id))) {
      const member = this.memberAt(line);
      if (member.id === id) return { line, member };
    }
    return null;
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

  /** A line's member, read from the file alone. */
  private memberAt(line: number): SnapshotMember {
    const start = this.starts[line]!;
    const length = this.ends[line]! - start;
    if (length > this.lineBuffer.length) this.lineBuffer = Buffer.allocUnsafe(length);
    if (readAt(this.file.fd, this.lineBuffer, length, start) < length) throw new Error(`key index: the file ended before line ${line}`);
    return memberOf(this.lineBuffer.toString('utf8', 0, length), line);
  }

  /** Every line's text in file order, read a chunk of lines at a time. */
  private *linesInOrder(): Generator<string> {
    let chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let chunkAt = 0;
    let chunkLength = 0;
    for (let line = 0; line < this.starts.length; line += 1) {
      const start = this.starts[line]!;
      const end = this.ends[line]!;
      if (start < chunkAt || end > chunkAt + chunkLength) {
        if (end - start > chunk.length) chunk = Buffer.allocUnsafe(end - start);
        chunkAt = start;
        chunkLength = readAt(this.file.fd, chunk, chunk.length, start);
        if (end > chunkAt + chunkLength) throw new Error(`key index: the file ended before line ${line}`);
      }
      yield chunk.toString('utf8', start - chunkAt, end - chunkAt);
    }
  }

  private *membersInOrder(): Generator<SnapshotMember> {
    let line = 0;
    for (const text of this.linesInOrder()) {
      yield memberOf(text, line);
      line += 1;
    }
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

/** The id on an indexed line, from its text alone: such an id has no escape, so it ends at the next quote. */
function idOf(line: string): string {
  const open = line.indexOf('"');
  return line.slice(open + 1, line.indexOf('"', open + 1));
}

/** The member on an indexed line. */
function memberOf(text: string, line: number): SnapshotMember {
  const member = readSnapshotLine(text);
  if (member?.kind !== 'member') throw new Error(`key index: line ${line} is not a member line`);
  return member;
}

/** The key on an indexed line, which the index checked when it was built. */
function recordOf(member: SnapshotMember, line: number): KeyRecord {
  const record = readMemberValue(member.valueText, parseStoredKey);
  if (record === null) throw new Error(`key index: line ${line} is no longer a valid key`);
  return record;
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
