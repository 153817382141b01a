// A limited input's literal as the prompt policy compares it: a number, a string holding one, or text it does not read.

import { jsonNumber } from '../json/exact-json.js';

/**
 * An INT or FLOAT input's literal as the gateway compares it: a number, or a string holding one. Any other
 * string is `'text'`: ComfyUI reads it with Python's int() or float(), which take more than JavaScript's
 * Number does (`"1_000"`, digits of other scripts, other whitespace, `"nan"`). A boolean is 1 or 0, as
 * int(True) and float(False) read it: a spacing or padding of `true` adds a pixel, a width of `false` is 0.
 * Undefined for anything else (ComfyUI refuses it).
 *
 * The double compares with a policy's limits exactly as Python compares what ComfyUI reads (compareJsonNumbers),
 * since each limit is a safe integer: an integer above one is at least the next, itself a double; a number with a
 * fraction or an exponent (`1000000000.00000001`, `2.5e1`, `1e400`, and such a string) Python reads as this
 * same double too, and int() of a float at most the limit is at most the limit.
 */
export function literalNumber(value: unknown): number | 'text' | undefined {
  if (typeof value === 'boolean') return Number(value);
  const number = jsonNumber(value);
  if (number !== undefined) return Number.isNaN(number) ? undefined : number;
  if (typeof value !== 'string') return undefined;
  const read = value.trim() === '' ? NaN : Number(value);
  return Number.isNaN(read) ? 'text' : read;
}
