// Unit tests of compareJsonNumbers and isWholeJsonNumber: JSON numbers ordered as Python orders what json.loads reads, and whole as written.

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { ExactNumber, parseExactJson } from '../../src/json/exact-json.js';
import { compareJsonNumbers, isWholeJsonNumber } from '../../src/json/number-order.js';
import { literalNumber } from '../../src/policy/literal-number.js';
import { MAX_POLICY_LIMIT } from '../../src/policy/schema.js';

/** A JSON number's text in any spelling JSON allows: a sign, leading digits, a fraction with trailing zeros, an exponent (up to ±400, past the doubles). */
const anyText = fc
  .tuple(
    fc.boolean(),
    fc.oneof(fc.constant('0'), fc.stringMatching(/^[1-9][0-9]{0,24}$/)),
    fc.option(fc.stringMatching(/^[0-9]{1,20}$/)),
    fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.integer({ min: 0, max: 400 }))),
  )
  .map(
    ([negative, whole, fraction, exponent]) => `${negative ? '-' : ''}${whole}${fraction === null ? '' : `.${fraction}`}${exponent ? exponent.join('') : ''}`,
  );

/** Texts about an integer past 2^53, where doubles cannot tell neighbours apart: the integer itself, with `.0`, a fraction, or moved into an exponent. */
const nearBigInteger = fc
  .tuple(fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }), fc.constantFrom('', '.0', '.5', '.0000000000000001', '.9999999999999999', 'e0', 'moved'))
  .map(([integer, spelling]) => {
    if (spelling !== 'moved') return `${integer}${spelling}`;
    const digits = String(integer < 0n ? -integer : integer);
    return `${integer < 0n ? '-' : ''}${digits[0]}.${digits.slice(1) || '0'}e${digits.length - 1}`;
  });

const numberText = fc.oneof(anyText, nearBigInteger);

/** A value as a parsed document holds it: the number when JavaScript writes it with the same text, else an ExactNumber. */
const asParsed = (text: string): unknown => parseExactJson(text);

/** The value Python's json.loads gives a text, as a fraction with a denominator of 2^shift (an int exactly; a float as its double), or ±Infinity. */
function pythonFraction(text: string): { numerator: bigint; shift: bigint } | number {
  if (/^-?\d+$/.test(text)) return { numerator: BigInt(text), shift: 0n };
  const double = Number(text);
  if (!Number.isFinite(double)) return double;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, double);
  const bits = view.getBigUint64(0);
  const sign = bits >> 63n === 1n ? -1n : 1n;
  const biased = (bits >> 52n) & 0x7ffn;
  const fraction = bits & ((1n << 52n) - 1n);
  const mantissa = biased === 0n ? fraction : fraction | (1n << 52n);
  const exponent = (biased === 0n ? 1n : biased) - 1075n;
  return exponent >= 0n ? { numerator: sign * (mantissa << exponent), shift: 0n } : { numerator: sign * mantissa, shift: -exponent };
}

/** How Python orders two JSON numbers' values, worked out with fractions. */
function pythonOrder(a: string, b: string): number {
  const [x, y] = [pythonFraction(a), pythonFraction(b)];
  if (typeof x === 'number' || typeof y === 'number') {
    const [p, q] = [typeof x === 'number' ? x : 0, typeof y === 'number' ? y : 0];
    return p === q ? 0 : p < q ? -1 : 1;
  }
  const [left, right] = [x.numerator << y.shift, y.numerator << x.shift];
  return left < right ? -1 : left > right ? 1 : 0;
}

/** Whether a text's decimal value is whole, worked out from its parts. */
function wholeAsWritten(text: string): boolean {
  const [, whole, fraction = '', exponent = '0'] = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text)!;
  const power = Number(exponent) - fraction.length;
  return power >= 0 || BigInt(`${whole}${fraction}`) % 10n ** BigInt(-power) === 0n;
}

describe('compareJsonNumbers', () => {
  test('orders any two JSON numbers as Python orders the values json.loads reads: an integer exactly, any other number as its double', () => {
    fc.assert(
      fc.property(numberText, numberText, (a, b) => {
        const order = compareJsonNumbers(asParsed(a), asParsed(b));
        assert.equal(order, pythonOrder(a, b), `${a} against ${b}`);
        assert.equal(compareJsonNumbers(asParsed(b), asParsed(a)), 0 - order!, 'the other way round');
      }),
      { numRuns: 5000 },
    );
  });

  test('a number and a limit as JavaScript holds it (a policy limit, a safe integer)', () => {
    fc.assert(
      fc.property(numberText, fc.maxSafeInteger(), (text, limit) => {
        assert.equal(compareJsonNumbers(asParsed(text), limit), pythonOrder(text, String(limit)));
      }),
    );
  });

  test('what doubles get wrong about 64-bit seeds, and spellings of one value', () => {
    const max = new ExactNumber('18446744073709551615');
    assert.equal(compareJsonNumbers(new ExactNumber('18446744073709551616'), max), 1);
    assert.equal(compareJsonNumbers(new ExactNumber('18446744073709551614'), max), -1);
    assert.equal(compareJsonNumbers(new ExactNumber('18446744073709551615'), max), 0);
    // Python reads a fraction or an exponent as a float: this one's value is 2^64.
    assert.equal(compareJsonNumbers(new ExactNumber('18446744073709551615.0'), max), 1);
    assert.equal(compareJsonNumbers(new ExactNumber('1.8446744073709551615e19'), max), 1);
    assert.equal(compareJsonNumbers(new ExactNumber('2048.0000000000001'), 2048), 0, 'the float 2048.0');
    assert.equal(compareJsonNumbers(2048.0000000000005, 2048), 1);
    assert.equal(compareJsonNumbers(new ExactNumber('1e400'), max), 1);
    assert.equal(compareJsonNumbers(new ExactNumber('-1e400'), new ExactNumber('-18446744073709551615')), -1);
    for (const zero of ['-0', '0.0', '-0.0', '0e5']) assert.equal(compareJsonNumbers(asParsed(zero), 0), 0, zero);
  });

  test('undefined for what is not a JSON number', () => {
    for (const other of [undefined, null, '5', true, [5], { value: '5', isLosslessNumber: true }, NaN, Infinity]) {
      assert.equal(compareJsonNumbers(other, 5), undefined);
      assert.equal(compareJsonNumbers(5, other), undefined);
    }
  });
});

describe("the prompt policy's limits", () => {
  test('a number, or a string of one, is above a limit as the double the policy reads exactly when it is above it as Python reads it', () => {
    fc.assert(
      fc.property(numberText, fc.integer({ min: 1, max: MAX_POLICY_LIMIT }), fc.boolean(), (text, limit, asString) => {
        const read = literalNumber(asString ? text : asParsed(text));
        assert.equal(typeof read === 'number' && read > limit, compareJsonNumbers(asParsed(text), limit)! > 0, `${text} against ${limit}`);
      }),
      { numRuns: 5000 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_POLICY_LIMIT }), fc.constantFrom('.00000001', '.0000000000000001', '.000001', '.0', 'e0'), (limit, tail) => {
        const text = `${limit}${tail}`;
        assert.equal((literalNumber(asParsed(text)) as number) > limit, compareJsonNumbers(asParsed(text), limit)! > 0, text);
      }),
    );
  });
});

describe('isWholeJsonNumber', () => {
  test('a number is whole when its value, as its text writes it, is', () => {
    fc.assert(
      fc.property(numberText, (text) => {
        assert.equal(isWholeJsonNumber(asParsed(text)), wholeAsWritten(text), text);
      }),
      { numRuns: 5000 },
    );
  });

  test('7.0 and 1.5e1 are whole; 7.5 and 1.0000000000000001 (the float 1.0 in Python) are not; nor anything but a number', () => {
    for (const text of ['7', '7.0', '-0', '1.5e1', '1e2', '18446744073709551615.000', '1E+400']) assert.equal(isWholeJsonNumber(asParsed(text)), true, text);
    for (const text of ['7.5', '1.0000000000000001', '18446744073709551614.5', '15e-1', '5e-324']) assert.equal(isWholeJsonNumber(asParsed(text)), false, text);
    for (const other of ['7', null, [7], { value: '7', isLosslessNumber: true }]) assert.equal(isWholeJsonNumber(other), false);
  });
});
