// HTTP/1.1 message heads on the wire (RFC 9112 §3 to §5), written and read strictly: anything unusual is neither sent nor read.

import { isToken, TOKEN_CHARACTER } from './http-token.js';

/** The largest answer head read; aiohttp's own limit for a header line is 8,190 bytes. */
export const MAX_HEAD_BYTES = 64 * 1024;

/** A character of a field value Node.js will send on again: visible ASCII, space, tab or obs-text. */
const FIELD_VALUE_CHARACTER = '[\\t\\x20-\\x7e\\x80-\\xff]';
const FIELD_VALUE = new RegExp(`^${FIELD_VALUE_CHARACTER}*$`);
/** A request target as it may go on the wire: visible ASCII only. */
const REQUEST_TARGET = /^[\x21-\x7e]+$/;
/** A status line: its minor version and its status are the groups. */
const STATUS_LINE_SOURCE = `HTTP/1\\.([01]) ([1-9]\\d\\d)(?: ${FIELD_VALUE_CHARACTER}*)?`;
const STATUS_LINE = new RegExp(`^${STATUS_LINE_SOURCE}$`);
/** A whole head: the status line, then field lines of a name (a token), a colon and a value, each after a CRLF. Read in one pass, not two per field. */
const RESPONSE_HEAD = new RegExp(`^${STATUS_LINE_SOURCE}(?:\\r\\n${TOKEN_CHARACTER}+:${FIELD_VALUE_CHARACTER}*)*$`);
const DIGITS = /^\d{1,15}$/;

export interface ResponseHead {
  status: number;
  /** Field names in lower case; a field sent more than once has each of its values, in order. */
  headers: Record<string, string | string[]>;
  /**
   * The body's length: 0 for the answers that never have one (204, 304), the single `Content-Length`
   * otherwise, or null when the body is framed some other way (chunked, or until the connection closes).
   */
  bodyLength: number | null;
  /** Whether the connection stays open after the answer: HTTP/1.1 without `Connection: close`. */
  keepAlive: boolean;
}

/**
 * The head of a request on a persistent connection (HTTP/1.1's default): `method target HTTP/1.1`, `Host`
 * and the `headers` (names in lower case; their own `Host` and `Connection` are left out). Undefined
 * when the target or a field would not go on the wire as it is.
 */
export function requestHead(method: string, target: string, host: string, headers: Record<string, string | string[]>): string | undefined {
  if (!REQUEST_TARGET.test(target)) return undefined;
  let head = `${method} ${target} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const name in headers) {
    if (name === 'host' || name === 'connection') continue;
    if (!isToken(name)) return undefined;
    const value = headers[name]!;
    for (const one of Array.isArray(value) ? value : [value]) {
      if (!FIELD_VALUE.test(one)) return undefined;
      head += `${name}: ${one}\r\n`;
    }
  }
  return `${head}\r\n`;
}

const ANSWER_START = Buffer.from('HTTP/1.');

/**
 * Whether the first bytes of an answer can still begin a head that parseResponseHead reads: they start
 * with `HTTP/1.` and, once the status line has arrived whole, it is a valid one. Garbage is refused at
 * once instead of waiting for a blank line that may never come.
 */
export function couldStartResponseHead(bytes: Buffer): boolean {
  const start = Math.min(bytes.length, ANSWER_START.length);
  if (bytes.compare(ANSWER_START, 0, start, 0, start) !== 0) return false;
  const lineEnd = bytes.indexOf('\r\n');
  return lineEnd < 0 || STATUS_LINE.test(bytes.toString('latin1', 0, lineEnd));
}

/**
 * Parses `head` (the bytes before the blank line, read as latin1 so every byte comes back as it was).
 * Returns undefined for anything that is not a plain HTTP/1.x head: a malformed status line, a field
 * without a name or with control characters, a folded line (obs-fold), or conflicting lengths.
 */
export function parseResponseHead(head: string): ResponseHead | undefined {
  const status = RESPONSE_HEAD.exec(head);
  if (!status) return undefined;
  // No prototype: a field named __proto__ is a field like any other.
  const headers = Object.create(null) as Record<string, string | string[]>;
  // Every line after the status line is a checked field line: a name, the first colon, a value.
  for (let start = head.indexOf('\r\n'); start !== -1;) {
    const next = head.indexOf('\r\n', start + 2);
    const end = next === -1 ? head.length : next;
    const colon = head.indexOf(':', start + 2);
    const key = head.slice(start + 2, colon).toLowerCase();
    const value = trimmedValue(head, colon + 1, end);
    const before = headers[key];
    headers[key] = before === undefined ? value : [...(Array.isArray(before) ? before : [before]), value];
    start = next;
  }
  const code = Number(status[2]);
  const connection = headers['connection'];
  const closes = connection !== undefined && /(?:^|,)\s*close\s*(?:,|$)/i.test(String(connection));
  return { status: code, headers, bodyLength: bodyLengthOf(code, headers), keepAlive: status[1] === '1' && !closes };
}

/** The part of `text` from `start` to `end` without the spaces and tabs around it (RFC 9110 §5.5: they are not part of a field value). */
function trimmedValue(text: string, start: number, end: number): string {
  while (start < end && isSpaceOrTab(text.charCodeAt(start))) start += 1;
  while (end > start && isSpaceOrTab(text.charCodeAt(end - 1))) end -= 1;
  return text.slice(start, end);
}

function isSpaceOrTab(code: number): boolean {
  return code === 32 || code === 9;
}

/** The body length a head announces (see ResponseHead.bodyLength); null too for an interim 1xx answer and a repeated length. */
function bodyLengthOf(status: number, headers: Record<string, string | string[]>): number | null {
  if (status < 200) return null;
  if (status === 204 || status === 304) return 0;
  const length = headers['content-length'];
  if (headers['transfer-encoding'] !== undefined || typeof length !== 'string' || !DIGITS.test(length)) return null;
  return Number(length);
}
