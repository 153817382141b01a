// JSON values written as text exactly as `JSON.stringify` writes them, for lines built from a few known fields on every request.

/** What `JSON.stringify` writes otherwise than as it is in a string: a quote, a backslash, a control character, a surrogate (a lone one is escaped). */
// eslint-disable-next-line no-control-regex
const NOT_WRITTEN_AS_IS = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * The text `JSON.stringify` writes between a string's quotes: the string itself when nothing in it needs
 * escaping (one scan, with no quotes added around it), else what `JSON.stringify` writes, unquoted.
 */
export function jsonStringContent(text: string): string {
  return NOT_WRITTEN_AS_IS.test(text) ? JSON.stringify(text).slice(1, -1) : text;
}

/** A number as `JSON.stringify` writes it: its shortest text (`0` for -0), `null` when it is not finite. */
export function jsonNumber(value: number): string {
  return Number.isFinite(value) ? `${value}` : 'null';
}
