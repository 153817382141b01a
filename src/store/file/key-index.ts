// A large api_keys.json as a compact index: the file's bytes, and sorted typed arrays of hashes pointing at its lines; a key is parsed when first used.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
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

/** The values a key can be found by besides its id: its hash, and the previous hash during a rotation's grace. */
export function keyHashesOf(record: KeyRecord): string[] {
  return record.previous_key_hash ? [record.key_hash, record.previous_key_hash] : [record.key_hash];
}

/** A 29-bit FNV-1a hash of a string's UTF-16 code units. */
export function hash29(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 3;
}

/** One thread's share of the file: whole lines from byte `from` to `to`, read starting in layout state `initial`. */
export interface RangeTask {
  buffer: SharedArrayBuffer;
  from: number;
  to: number;
  initial: LayoutState;
  /** The state the range must end in. */
  final: LayoutState;
}

/** A range's member lines (byte offsets, line ends excluded) with hashes of their ids and key hashes; null when the range is not a valid key snapshot. */
export type RangeIndex = {
  starts: Float64Array<ArrayBuffer>;
  ends: Float64Array<ArrayBuffer>;
  idHashes: Uint32Array<ArrayBuffer>;
  keyHashes: Uint32Array<ArrayBuffer>;
  /** For each entry of `keyHashes`, the number of its line within the range. */
  keyLines: Uint32Array<ArrayBuffer>;
} | null;

/**
 * Checks a range line by line: the layout, and every record as the store would read it. Run in a
 * worker thread, several ranges at once.
 */
export function indexRange(task: RangeTask): RangeIndex {
  const bytes = Buffer.from(task.buffer);
  const starts: number[] = [];
  const ends: number[] = [];
  const idHashes: number[] = [];
  const keyHashes: number[] = [];
  const keyLines: number[] = [];
  let state: LayoutState | null = task.initial;
  for (let start = task.from; start < task.to;) {
    const newline = bytes.indexOf(10, start);
    const end = newline < 0 || newline >= task.to ? task.to : newline;
    const line = readSnapshotLine(bytes.toString('utf8', start, end));
    state = line && nextLayoutState(state, line);
    if (state === null || line === null) return null;
    if (line.kind === 'member') {
      const record = readMemberValue(line.valueText, parseStoredKey);
      if (record === null) return null;
      for (const keyHash of keyHashesOf(record)) {
        keyHashes.push(hash29(keyHash));
        keyLines.push(starts.length);
      }
      starts.push(start);
      ends.push(end);
      idHashes.push(hash29(line.id));
    }
    start = end + 1;
  }
  if (state !== task.final) return null;
  return {
    starts: Float64Array.from(starts),
    ends: Float64Array.from(ends),
    idHashes: Uint32Array.from(idHashes),
    keyHashes: Uint32Array.from(keyHashes),
    keyLines: Uint32Array.from(keyLines),
  };
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
  try {
    const { size } = await handle.stat();
    if (size === 0 || size < (options.minBytes ?? INDEX_FROM_BYTES)) return null;
    buffer = new SharedArrayBuffer(size);
    const bytes = Buffer.from(buffer);
    for (let read = 0; read < size;) {
      const { bytesRead } = await handle.read(bytes, read, size - read, read);
      if (bytesRead === 0) return null;
      read += bytesRead;
    }
  } finally {
    await handle.close();
  }
  const tasks = splitIntoRanges(buffer, options.threads ?? Math.min(MAX_THREADS, availableParallelism()));
  // Every range in a worker: a reload while serving must not hold up requests.
  const ranges = await Promise.all(tasks.map(indexInWorker));
  if (ranges.some((range) => range === null)) return null;
  return KeySnapshotIndex.build(Buffer.from(buffer), ranges as NonNullable<RangeIndex>[]);
}

/**
 * Cuts the file into up to `count` ranges of whole lines. Each cut is made after a member line ending
 * in a comma, so the next range starts where another member must follow; where there is none, fewer
 * ranges are made.
 */
function splitIntoRanges(buffer: SharedArrayBuffer, count: number): RangeTask[] {
  const bytes = Buffer.from(buffer);
  const cuts = [0];
  for (let i = 1; i < count; i += 1) {
    const newline = bytes.indexOf(10, Math.floor((bytes.length * i) / count));
    if (newline < 0 || newline + 1 <= cuts[cuts.length - 1]! || newline + 1 >= bytes.length) continue;
    const lineStart = bytes.lastIndexOf(10, newline - 1) + 1;
    const line = readSnapshotLine(bytes.toString('utf8', lineStart, newline));
    if (line?.kind === 'member' && line.hasComma) cuts.push(newline + 1);
  }
  cuts.push(bytes.length);
  return cuts.slice(0, -1).map((from, i) => ({
    buffer,
    from,
    to: cuts[i + 1]!,
    initial: i === 0 ? 'open' : 'comma',
    final: i === cuts.length - 2 ? 'closed' : 'comma',
  }));
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
    const byId = new Float64Array(total);
    const byKeyHash = new Float64Array(ranges.reduce((sum, range) => sum + range.keyHashes.length, 0));
    let line = 0;
    let keyEntry = 0;
    for (const range of ranges) {
      starts.set(range.starts, line);
      ends.set(range.ends, line);
      for (let i = 0; i < range.idHashes.length; i += 1) byId[line + i] = range.idHashes[i]! * RECORD_SPAN + line + i;
      for (let i = 0; i < range.keyHashes.length; i += 1) byKeyHash[keyEntry++] = range.keyHashes[i]! * RECORD_SPAN + line + range.keyLines[i]!;
      line += range.starts.length;
    }
    byId.sort();
    byKeyHash.sort();
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
    return this.linesWithHash(this.byKeyHash, hash29(value)).map((line) => this.memberAt(line).id);
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
