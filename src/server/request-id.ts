// A request's id: the client's `X-Request-Id` when it is a plain token, else a new random UUID made in one piece.

import { randomFillSync } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** A client's id the gateway takes as it is: a plain token of at most 128 characters. */
const PLAIN_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
const UUID_LENGTH = 36;
/** Random bytes for this many ids are drawn at once. */
const IDS_PER_DRAW = 256;

const random = Buffer.alloc(16 * IDS_PER_DRAW);
let used = random.length;
const text = Buffer.alloc(UUID_LENGTH, '-');

/**
 * A random (version 4) UUID as `crypto.randomUUID` makes it. Its text is read from a buffer in one piece: node checks
 * every header value with a regular expression, and on a string V8 built by concatenation, as `randomUUID`'s is, that
 * takes V8's runtime path and copies the string first (about 2,400 instructions of each request).
 */
export function newRequestId(): string {
  if (used === random.length) {
    randomFillSync(random);
    used = 0;
  }
  let at = 0;
  for (let index = 0; index < 16; index += 1) {
    let byte = random[used + index]!;
    if (index === 6) byte = (byte & 0x0f) | 0x40;
    else if (index === 8) byte = (byte & 0x3f) | 0x80;
    // A dash before the 5th, 7th, 9th and 11th byte: 8-4-4-4-12 digits.
    if (index === 4 || index === 6 || index === 8 || index === 10) at += 1;
    text[at] = HEX_DIGITS[byte >> 4]!;
    text[at + 1] = HEX_DIGITS[byte & 0x0f]!;
    at += 2;
  }
  used += 16;
  return text.toString('latin1', 0, UUID_LENGTH);
}

/** A client's `X-Request-Id` when it is a plain token, else a new one. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && PLAIN_ID.test(given) ? given : newRequestId();
}
