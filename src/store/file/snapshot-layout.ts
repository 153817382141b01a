// The layout the table snapshots are written in (`{`, one `"id": value` member per line, `}`), and reading it back a line at a time.

import { lineBatchesNoFollow } from './no-follow.js';
import { OrderedShardedMap } from '../sharded-map.js';

/** One line of a snapshot laid out a member per line. */
export type SnapshotLine = { kind: 'blank' } | { kind: 'open' } | { kind: 'close' } | { kind: 'member'; id: string; valueText: string; hasComma: boolean };

/**
 * Where a reader of the layout stands: 'open' before the `{` line, 'first' before the first member,
 * 'comma' after a member ending in a comma, 'member' after one without, 'closed' after `}`.
 */
export type LayoutState = 'open' | 'first' | 'comma' | 'member' | 'closed';

/**
 * Reads one line of the layout; null when it is none of its shapes: a member whose id has an escape or
 * is an array index (which `Object.entries` lists first), or whose id is not valid JSON. The value is
 * left as text.
 */
export function readSnapshotLine(raw: string): SnapshotLine | null {
  const line = trimJsonSpace(raw);
  if (line.length === 0) return { kind: 'blank' };
  if (line === '{') return { kind: 'open' };
  if (line === '}') return { kind: 'close' };
  const hasComma = line.endsWith(',');
  const member = hasComma ? trimJsonSpace(line.slice(0, -1)) : line;
  const valueAt = memberValueOffset(member);
  if (valueAt < 0) return null;
  try {
    // Parsing the id (rather than slicing it) also rejects control characters, and copies it out of the chunk.
    return { kind: 'member', id: JSON.parse(member.slice(0, valueAt - 1)) as string, valueText: trimJsonSpace(member.slice(valueAt)), hasComma };
  } catch {
    return null;
  }
}

/** The state after `line`, or null when the line cannot come there. Blank lines go anywhere. */
export function nextLayoutState(state: LayoutState, line: SnapshotLine): LayoutState | null {
  if (line.kind === 'blank') return state;
  if (line.kind === 'open') return state === 'open' ? 'first' : null;
  if (line.kind === 'close') return state === 'first' || state === 'member' ? 'closed' : null;
  if (state !== 'first' && state !== 'comma') return null;
  return line.hasComma ? 'comma' : 'member';
}

/** A member's value as `parse` reads it; null when it is not JSON or `parse` rejects it. */
export function readMemberValue<T>(valueText: string, parse: (value: unknown) => T | string): T | null {
  let record: T | string;
  try {
    record = parse(JSON.parse(valueText));
  } catch {
    return null;
  }
  return typeof record === 'string' ? null : record;
}

/**
 * Reads a snapshot laid out as `snapshotLines` writes it: `{`, then one `"id": value` member per line,
 * commas between members, then `}`; blank lines and JSON whitespace anywhere. Such a file is valid JSON
 * exactly when every member line is, and its records come out as `JSON.parse` and `Object.entries` would
 * give them (a repeated id keeps its first place and its last value). Resolves null for any other
 * layout, and whenever that could differ: an id with an escape, an id that is an array index, a value
 * `parse` rejects (the caller's whole parse words the error), a line longer than a read (1 MiB; the
 * caller's whole parse reads it), or a file that is not valid JSON.
 */
export async function readSnapshotByLine<T>(path: string, parse: (value: unknown) => T | string): Promise<OrderedShardedMap<T> | null> {
  const records = new OrderedShardedMap<T>();
  let state: LayoutState | null = 'open';
  for await (const lines of lineBatchesNoFollow(path)) {
    if (lines === null) return null;
    for (const raw of lines) {
      const line = readSnapshotLine(raw);
      state = line && nextLayoutState(state, line);
      if (state === null || line === null) return null;
      if (line.kind !== 'member') continue;
      const record = readMemberValue(line.valueText, parse);
      if (record === null) return null;
      records.set(sameStringFrom(record, line.id), record);
    }
  }
  return state === 'closed' ? records : null;
}

/**
 * Where the value starts in a `"id": value` member with a plain id (no escapes, not an array index),
 * just past the colon; -1 for anything else.
 */
function memberValueOffset(member: string): number {
  const close = member.indexOf('"', 1);
  if (member.charCodeAt(0) !== 34 || close < 0) return -1;
  const idText = member.slice(0, close + 1);
  if (idText.includes('\\') || ARRAY_INDEX.test(idText)) return -1;
  let colon = close + 1;
  while (colon < member.length && isJsonSpace(member.charCodeAt(colon))) colon += 1;
  return member.charCodeAt(colon) === 58 ? colon + 1 : -1;
}

/** `id`, or the equal string the record holds as its first property (a key record's `key_id`), so memory keeps one copy. */
function sameStringFrom(record: unknown, id: string): string {
  if (typeof record === 'object' && record !== null) {
    for (const name in record) {
      const first = (record as Record<string, unknown>)[name];
      return first === id ? first : id;
    }
  }
  return id;
}

/** A quoted id that may be an array index (a canonical integer below 2^32 - 1), which JavaScript objects list before other keys. */
const ARRAY_INDEX = /^"(0|[1-9][0-9]{0,9})"$/;

/** JSON's whitespace: space, tab, line feed, carriage return (and nothing else that String.trim removes). */
function isJsonSpace(code: number): boolean {
  return code === 32 || code === 9 || code === 10 || code === 13;
}

function trimJsonSpace(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isJsonSpace(text.charCodeAt(start))) start += 1;
  while (end > start && isJsonSpace(text.charCodeAt(end - 1))) end -= 1;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

/** The snapshot as text chunks, one `"id": value` member per line, so a million records are never one giant string. */
export function* snapshotLines(members: Iterable<string>): Generator<string> {
  yield '{';
  let batch = '';
  let first = true;
  for (const member of members) {
    batch += `${first ? '' : ','}\n${member}`;
    first = false;
    if (batch.length > 1 << 16) {
      yield batch;
      batch = '';
    }
  }
  yield batch + '\n}\n';
}
