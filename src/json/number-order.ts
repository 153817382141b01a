// Orders JSON numbers by the values Python's json.loads gives them, as ComfyUI compares an input with its bounds, and tells a whole number as written.

import { splitNumber } from 'lossless-json';
import { jsonNumberText } from './exact-json.js';

/** A JSON number Python reads as an int: digits alone, without a fraction or an exponent (`7`, `-0`, `18446744073709551616`). */
const INTEGER_TEXT = /^-?\d+$/;

/**
 * The value Python's json.loads gives a JSON number's text: an integer text is an int, exact however long (a
 * bigint here); any other (`7.0`, `1e2`, `2048.0000000000001`) is a float, the double nearest its text
 * (`Infinity` past the largest double: `1e400`).
 */
function pythonValue(text: string): bigint | number {
  return INTEGER_TEXT.test(text) ? BigInt(text) : Number(text);
}

/**
 * Orders two JSON numbers (numbers and ExactNumbers of a document parseExactJson read) as Python orders the
 * values json.loads gives them, which is how ComfyUI holds an input to its min and max: exactly, an int with a
 * float too. `18446744073709551616` is above `18446744073709551615` (doubles cannot tell them apart), and so is
 * `18446744073709551615.0`, a float whose value is 2^64; `2048.0000000000001` equals `2048`, since Python reads
 * it as the float 2048.0. Negative when `a` is less, 0 when they are equal, positive when `a` is greater;
 * undefined when either is not a JSON number.
 */
export function compareJsonNumbers(a: unknown, b: unknown): number | undefined {
  const [left, right] = [jsonNumberText(a), jsonNumberText(b)];
  if (left === undefined || right === undefined) return undefined;
  const [x, y] = [pythonValue(left), pythonValue(right)];
  if (typeof x === typeof y) return order(x, y);
  return typeof x === 'number' ? compareFloatWithInt(x, y as bigint) : 0 - compareFloatWithInt(y as number, x);
}

function order<T extends bigint | number>(a: T, b: T): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders a double and an integer exactly. A double with a fraction is below 2^52, so its floor is exact, and the integer is below the double when it is at or below that floor. */
function compareFloatWithInt(float: number, int: bigint): number {
  if (!Number.isFinite(float)) return float > 0 ? 1 : -1;
  const floor = BigInt(Math.floor(float));
  if (Number.isInteger(float)) return order(floor, int);
  return int <= floor ? 1 : -1;
}

/**
 * Whether a JSON number's value, as its text writes it, is a whole number: `7`, `7.0`, `1.5e1` and `-0` are;
 * `7.5` is not, nor `1.0000000000000001` (though Python reads it as the float 1.0, and int() of it is 1).
 * False for anything but a JSON number.
 */
export function isWholeJsonNumber(value: unknown): boolean {
  const text = jsonNumberText(value);
  if (text === undefined) return false;
  // The text's value is digits[0].digits[1…] × 10^exponent, without trailing zeros: whole when no digit is after the point.
  const { digits, exponent } = splitNumber(text);
  return digits.length - 1 <= exponent;
}
