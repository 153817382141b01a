// JSON read and written again with each number as its text gave it: Python reads 18446744073709551615 and 7.0 otherwise than JavaScript writes them back.

import { isLosslessNumber, LosslessNumber, parse, splitNumber, stringify } from 'lossless-json';

/**
 * A number whose text JavaScript would write otherwise (`7.0`, `1e-05`, an integer past 2^53), kept as its
 * text. Python reads `7.0` as a float and `18446744073709551615` exactly, where `JSON.stringify` would
 * write `7` and `18446744073709552000`. `JSON.stringify` writes it as the nearest double, as before.
 */
export class ExactNumber extends LosslessNumber {
  toJSON(): number {
    exactNumberWritten = true;
    return Number(this.value);
  }
}

/** A number of a document parseExactJson read: a number, or an ExactNumber where JavaScript would write it otherwise. */
export type JsonNumber = number | ExactNumber;

/** Set when `JSON.stringify` met an ExactNumber, so stringifyExactJson writes the value again with the texts kept. */
let exactNumberWritten = false;

/**
 * Where a text may hold a number that `JSON.parse` would change when written again, as a number's start (after
 * `:`, `,`, `[` or a space): 16 digits or more (an integer past 2^53, or a float JavaScript may write as an
 * integer), a fraction ending in 0, or an exponent. Only such texts take the slower reader; any other number
 * is written back as the same text, or (below 10^-6) as the same float in other digits.
 */
const MAY_HOLD_INEXACT_NUMBER = /(?:^|[\s:,[])-?(?:(?:\d\.?){16}|\d+\.\d*0(?!\d)|\d+(?:\.\d+)?[eE])/;

/**
 * Parses JSON as Python's json.loads reads its numbers: a number that JavaScript would write with other
 * text becomes an ExactNumber, every other one a number. A text with a key given twice is read as
 * `JSON.parse` reads it (the last one wins, as in Python), its numbers as doubles.
 * @throws SyntaxError when the text is not JSON
 */
export function parseExactJson(text: string): unknown {
  const skeleton = text.length < LONG_TEXT ? text : withoutLongStrings(text);
  if (!mayHoldInexactNumber(skeleton)) return JSON.parse(text);
  try {
    const exact: unknown = parse(skeleton, undefined, exactNumber);
    return skeleton === text ? exact : withStringsOf(exact, JSON.parse(text));
  } catch {
    return JSON.parse(text);
  }
}

/** From this length on, a text's long strings are left out of what the slower reader reads (see withoutLongStrings). */
const LONG_TEXT = 64 * 1024;
/** A string value this long or longer is read by JSON.parse alone: the slower reader takes about 75 ns a character (a 32 MiB image in base64: 3 s). */
const LONG_STRING = 1024;
/** A JSON string, quotes and escapes included. Searched from the text's start, each match is one string of a document, since no quote stands outside one. */
const JSON_STRING = /"[^"\\]*(?:\\.[^"\\]*)*"/g;
/** What follows a key: a string so followed is a key, kept whole so the two readings have the same keys. */
const AFTER_KEY = /\s*:/y;

/** `text` with each string value of LONG_STRING characters or more written as `""`. */
function withoutLongStrings(text: string): string {
  return text.replace(JSON_STRING, (string: string, offset: number) => {
    if (string.length < LONG_STRING) return string;
    AFTER_KEY.lastIndex = offset + string.length;
    return AFTER_KEY.test(text) ? string : '""';
  });
}

/** `exact`, read from the text without its long strings, with each string of it taken from `whole`, the whole text as JSON.parse read it. */
function withStringsOf(exact: unknown, whole: unknown): unknown {
  if (typeof exact === 'string') return whole;
  if (typeof exact !== 'object' || exact === null || isLosslessNumber(exact)) return exact;
  const [into, from] = [exact as Record<string, unknown>, whole as Record<string, unknown>];
  for (const key of Object.keys(into)) if (typeof into[key] !== 'number') into[key] = withStringsOf(into[key], from[key]);
  return exact;
}

/** Whether parseExactJson reads `text` with its slower reader (about eight times slower than JSON.parse), as MAY_HOLD_INEXACT_NUMBER says. */
export function mayHoldInexactNumber(text: string): boolean {
  return MAY_HOLD_INEXACT_NUMBER.test(text);
}

/** Writes JSON as `JSON.stringify` does (indented by `space` when given), but each ExactNumber as its own text. */
export function stringifyExactJson(value: unknown, space?: number): string {
  exactNumberWritten = false;
  const text = JSON.stringify(value, null, space);
  if (!exactNumberWritten) return text;
  exactNumberWritten = false;
  return stringify(value, undefined, space) ?? text;
}

/** A copy of a parsed document, its objects and arrays new and its ExactNumbers kept (structuredClone makes them plain objects). */
export function copyJson<T>(value: T): T {
  if (typeof value !== 'object' || value === null || isLosslessNumber(value)) return value;
  if (Array.isArray(value)) return value.map(copyJson) as T;
  // fromEntries, not assignment: a `__proto__` key of the document stays a key.
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, copyJson(item)])) as T;
}

/** The number a JSON number of a parsed document stands for (a number, or an ExactNumber's nearest double); undefined for anything else. */
export function jsonNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  return isLosslessNumber(value) ? Number((value as LosslessNumber).value) : undefined;
}

/**
 * The same text for two JSON numbers that are the same number as their texts give it, as Python compares an int
 * and a float (`7`, `7.0` and `70e-1` alike; 18446744073709551615 and 18446744073709551616 not, which doubles
 * cannot tell apart); undefined for anything else.
 */
export function exactNumberKey(value: unknown): string | undefined {
  const text = jsonNumberText(value);
  if (text === undefined) return undefined;
  const { sign, digits, exponent } = splitNumber(text);
  return `${sign}${digits}e${exponent}`;
}

/** The text a JSON number of a parsed document was written with (a number's own text is what String writes: parseExactJson kept it so); undefined for anything else. */
export function jsonNumberText(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : undefined;
  return isLosslessNumber(value) ? value.value : undefined;
}

function exactNumber(text: string): number | ExactNumber {
  const number = Number(text);
  return String(number) === text ? number : new ExactNumber(text);
}
