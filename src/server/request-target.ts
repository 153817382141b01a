// Reads a request target once, the way ComfyUI's router (aiohttp and yarl) will, refusing any target it could read another way.

import { invalidRequest, type GatewayError } from '../errors.js';

/** A request target in the one form that the gateway matches and ComfyUI acts on. */
export interface RequestTarget {
  /** The target as received, forwarded byte for byte. */
  raw: string;
  /** The path as received, without the query. */
  path: string;
  /** The path's segments, each percent-decoded once; an encoded slash stays inside its segment. */
  segments: string[];
  /** The query as aiohttp reads it: split on `&`, `+` as space, each part percent-decoded once. */
  query: URLSearchParams;
}

/** Characters that never need escaping in a path segment (RFC 3986 unreserved). */
const UNRESERVED = /^[A-Za-z0-9._~-]$/;
/**
 * Escapes whose reading differs between aiohttp releases (matched on the raw path before 3.10, on the
 * decoded path since) or between yarl's path and query unquoters: `%2B`, `%25`, a backslash and dots.
 */
const AMBIGUOUS_IN_PATH = new Set(['+', '%', '\\']);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const ESCAPE = /%[0-9A-Fa-f]{2}/g;

/** 400 for a target the gateway will not read, naming what to change. */
function ambiguous(problem: string): GatewayError {
  return invalidRequest(`The request target cannot be read one way only: ${problem}. Send it in plain form.`, [{ field: 'target', problem }]);
}

/**
 * Decodes the percent-escapes of one path segment or query part. A malformed escape, bytes that are
 * not UTF-8 (yarl keeps those as written, other parsers substitute U+FFFD) and control characters are
 * refused, so the decoded text is the same for every reader.
 */
function decodeStrictly(text: string, where: string): string {
  if (!text.includes('%')) return text;
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) throw ambiguous(`a malformed percent-escape in the ${where}`);
  try {
    return decodeURIComponent(text);
  } catch {
    throw ambiguous(`percent-escapes in the ${where} that are not UTF-8`);
  }
}

/**
 * Decodes one path segment, refusing escapes that aiohttp's releases read differently. A segment
 * without escapes is read as it is (the whole target was checked for control characters).
 */
function decodeSegment(segment: string): string {
  const decoded = segment.includes('%') ? decodeEscapedSegment(segment) : segment;
  if (decoded === '.' || decoded === '..') throw ambiguous('a dot segment in the path');
  return decoded;
}

/** Decodes the escapes of a path segment that has some. */
function decodeEscapedSegment(segment: string): string {
  for (const escape of segment.match(ESCAPE) ?? []) {
    const char = String.fromCharCode(parseInt(escape.slice(1), 16));
    if (UNRESERVED.test(char)) throw ambiguous(`an escaped plain character (${escape}) in the path`);
    if (AMBIGUOUS_IN_PATH.has(char)) throw ambiguous(`an escaped ${JSON.stringify(char)} (${escape}) in the path`);
  }
  const decoded = decodeStrictly(segment, 'path');
  if (CONTROL.test(decoded)) throw ambiguous('a control character in the path');
  return decoded;
}

/** Query parameters the gateway's rules read: each must have one value, read the same by every release. */
const RULE_PARAMETERS = ['filename', 'subfolder', 'type', 'clientId', 'prompt_id', 'max_items', 'offset', 'limit'];

/** One `name=value` part of a query, both decoded. */
type QueryPair = readonly [name: string, value: string];

/** Decodes a query's name or value, `+` as a space. */
function decodeQueryPart(text: string): string {
  return decodeStrictly(text.includes('+') ? text.replaceAll('+', ' ') : text, 'query');
}

/** Splits a query on `separator` and decodes each part. */
function queryPairs(raw: string, separator: string | RegExp): QueryPair[] {
  const pairs: QueryPair[] = [];
  for (const part of raw.split(separator)) {
    if (part === '') continue;
    const equals = part.indexOf('=');
    const value = decodeQueryPart(equals < 0 ? '' : part.slice(equals + 1));
    if (value.includes('\u0000')) throw ambiguous('a NUL character in the query');
    pairs.push([decodeQueryPart(equals < 0 ? part : part.slice(0, equals)), value]);
  }
  return pairs;
}

/** How many of `pairs` give `name`, and the first value given. */
function occurrences(pairs: readonly QueryPair[], name: string): { count: number; first: string | undefined } {
  let count = 0;
  let first: string | undefined;
  for (const [given, value] of pairs) {
    if (given !== name) continue;
    if (count === 0) first = value;
    count += 1;
  }
  return { count, first };
}

/**
 * Reads a query as yarl does (split on `&`). Python's parse_qsl also split on `;` before 3.9.2, so a
 * `;` must not change what the rules read (`preview=webp;90` is fine, `x=1;filename=a.png` is not).
 * The rules' parameters are checked on the decoded parts themselves: a URLSearchParams lookup costs
 * more than the few parts a query has.
 */
function parseQuery(raw: string): URLSearchParams {
  const query = new URLSearchParams();
  // Most targets have no query: nothing to split or check.
  if (raw === '') return query;
  const pairs = queryPairs(raw, '&');
  const older = raw.includes(';') ? queryPairs(raw, /[&;]/) : pairs;
  for (const name of RULE_PARAMETERS) {
    const given = occurrences(pairs, name);
    if (given.count > 1) throw ambiguous(`the query parameter ${name} given more than once`);
    if (older === pairs) continue;
    const olderGiven = occurrences(older, name);
    if (olderGiven.count !== given.count || olderGiven.first !== given.first)
      throw ambiguous(`a ";" that changes the query parameter ${name} (encode it as %3B)`);
  }
  for (const [name, value] of pairs) query.append(name, value);
  return query;
}

/**
 * Parses an origin-form request target. Refused with 400 INVALID_REQUEST: anything but origin-form
 * (absolute-form, `*`), a fragment (aiohttp drops it), a backslash, an empty segment (`//`), a dot
 * segment (plain or escaped), an escaped plain character, `%25`, `%2B`, a malformed or non-UTF-8
 * escape, control characters, and a query whose rule-read parameters are repeated or split by `;`.
 * @example parseRequestTarget('/api/view?filename=a%20b.png').query.get('filename') === 'a b.png'
 */
export function parseRequestTarget(raw: string | undefined): RequestTarget {
  if (!raw || raw[0] !== '/') throw ambiguous('it must be a path starting with / (origin-form)');
  if (raw.includes('#')) throw ambiguous('a fragment ("#"), which ComfyUI drops (encode it as %23)');
  if (CONTROL.test(raw) || raw.includes(' ')) throw ambiguous('a control character or space');
  const queryStart = raw.indexOf('?');
  const path = queryStart < 0 ? raw : raw.slice(0, queryStart);
  if (path.includes('\\')) throw ambiguous('a backslash in the path');
  if (path.includes('//')) throw ambiguous('an empty path segment ("//")');
  return { raw, path, segments: pathSegments(path), query: parseQuery(queryStart < 0 ? '' : raw.slice(queryStart + 1)) };
}

/** The segments of a path that starts with a slash, each decoded: found slash by slash, which costs less than a `split` for the few a path has. */
function pathSegments(path: string): string[] {
  const segments: string[] = [];
  if (path === '/') return segments;
  let start = 1;
  for (let slash = path.indexOf('/', start); slash !== -1; slash = path.indexOf('/', start)) {
    segments.push(decodeSegment(path.slice(start, slash)));
    start = slash + 1;
  }
  segments.push(decodeSegment(path.slice(start)));
  return segments;
}
