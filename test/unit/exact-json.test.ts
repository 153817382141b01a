// Unit tests of parseExactJson and stringifyExactJson: every number written back with the text it was read with.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { copyJson, ExactNumber, exactNumberKey, jsonNumber, parseExactJson, stringifyExactJson } from '../../src/json/exact-json.js';

/** A JSON number's text in any spelling JSON allows: a sign, leading digits, a fraction with trailing zeros, an exponent. */
const numberText = fc
  .tuple(
    fc.boolean(),
    fc.oneof(fc.constant('0'), fc.stringMatching(/^[1-9][0-9]{0,24}$/)),
    fc.option(fc.stringMatching(/^[0-9]{1,12}$/)),
    fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.stringMatching(/^[0-9]{1,2}$/))),
  )
  .map(
    ([negative, whole, fraction, exponent]) => `${negative ? '-' : ''}${whole}${fraction === null ? '' : `.${fraction}`}${exponent ? exponent.join('') : ''}`,
  );

/**
 * A compact JSON document (as JSON.stringify writes one) whose numbers are spelt as `numberText` makes them. Keys
 * start with a letter: JavaScript puts keys that are array indices first, whatever the order they came in.
 */
const document: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    numberText,
    fc.string().map((text) => JSON.stringify(text)),
    fc.constantFrom('true', 'false', 'null'),
    fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(',')}]`),
    fc
      .uniqueArray(
        fc.tuple(
          fc.string().map((key) => `k${key}`),
          tie('value'),
        ),
        { maxLength: 4, selector: ([key]) => key },
      )
      .map((members) => `{${members.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`),
  ),
})).value;

/** A JSON string (skipped whole) or number of a document. */
const TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
const numbersIn = (text: string): string[] => (text.match(TOKEN) ?? []).filter((token) => !token.startsWith('"'));
const withoutNumbers = (text: string): string => text.replace(TOKEN, (token) => (token.startsWith('"') ? token : '#'));
/** Whether Python reads a number's text as a float. */
const isFloat = (text: string): boolean => /[.eE]/.test(text);

describe('parseExactJson and stringifyExactJson', () => {
  test('a document is written back as it was read, each number as Python reads it: an integer exact, a float the same float', () => {
    fc.assert(
      fc.property(document, (text) => {
        const written = stringifyExactJson(parseExactJson(text));
        assert.equal(withoutNumbers(written), withoutNumbers(text));
        const [given, got] = [numbersIn(text), numbersIn(written)];
        assert.equal(got.length, given.length);
        for (const [index, number] of given.entries()) {
          const same = isFloat(number)
            ? isFloat(got[index]!) && Number(number) === Number(got[index])
            : !isFloat(got[index]!) && BigInt(number) === BigInt(got[index]!);
          assert.ok(same, `${number} written as ${got[index]}`);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test("numbers as Python writes them: the largest 64-bit seed, floats with .0, exponents, Python's spacing", () => {
    const read = parseExactJson('{"seed": 18446744073709551615, "cfg": 7.0, "denoise": 1e-05, "steps": 20, "scale": 0.5}') as Record<string, unknown>;
    assert.ok(read.seed instanceof ExactNumber && read.cfg instanceof ExactNumber && read.denoise instanceof ExactNumber);
    assert.equal(read.steps, 20, 'a number JavaScript writes the same way is a number');
    assert.equal(read.scale, 0.5);
    assert.deepEqual(
      ['seed', 'cfg', 'denoise', 'steps'].map((name) => jsonNumber(read[name])), // the seed's nearest double is 2^64
      [2 ** 64, 7, 0.00001, 20],
    );
    assert.equal(stringifyExactJson(read), '{"seed":18446744073709551615,"cfg":7.0,"denoise":1e-05,"steps":20,"scale":0.5}');
    assert.equal(
      JSON.stringify(read),
      '{"seed":18446744073709552000,"cfg":7,"denoise":0.00001,"steps":20,"scale":0.5}',
      'JSON.stringify writes the nearest doubles',
    );
  });

  test('a large text reads its long strings with JSON.parse and its numbers as a small one does, long keys and escapes included', () => {
    const pad = JSON.stringify('x'.repeat(70_000));
    fc.assert(
      fc.property(document, (text) => {
        assert.equal(stringifyExactJson(parseExactJson(`{"pad":${pad},"doc":${text}}`)), `{"pad":${pad},"doc":${stringifyExactJson(parseExactJson(text))}}`);
      }),
      { numRuns: 300 },
    );
    const long = (tail: string): string => JSON.stringify(`${'a"\\é\n'.repeat(300)}${tail}`);
    const compact = `{${long('key')}:18446744073709551615,"list":[${long('1')},7.0,${long('2')}],"__proto__":${long('3')},"image":${pad},"cfg":7.0}`;
    const spaced = compact.replace(`${long('key')}:`, `${long('key')} \n : `).replace(',"cfg"', ' , "cfg"');
    for (const text of [compact, spaced]) {
      const read = parseExactJson(text) as Record<string, unknown>;
      assert.equal(stringifyExactJson(read), compact);
      assert.equal(Object.getPrototypeOf(read), Object.prototype, '__proto__ stays a key');
    }
    assert.throws(() => parseExactJson(`{"image":"${'x'.repeat(70_000)}\n","cfg":7.0}`), SyntaxError, 'a raw line break in a long string');
    assert.throws(() => parseExactJson(`{"image":${pad},"cfg":7.0,}`), SyntaxError);
  });

  test('a 32 MiB image in base64 beside a 64-bit seed and 7.0: the image read whole, the numbers exact', () => {
    const base64 = randomBytes(32 * 1024 * 1024).toString('base64');
    const read = parseExactJson(`{"inputs": {"image": {"base64": ${JSON.stringify(base64)}}, "seed": 18446744073709551615, "cfg": 7.0}}`) as {
      inputs: { image: { base64: string }; seed: unknown; cfg: unknown };
    };
    assert.equal(stringifyExactJson([read.inputs.seed, read.inputs.cfg]), '[18446744073709551615,7.0]');
    assert.equal(read.inputs.image.base64, base64);
  });

  test('values changed after parsing are written with the rest kept exact', () => {
    const body = parseExactJson('{"prompt": {"3": {"inputs": {"seed": 9007199254740993}}}, "client_id": "theirs", "front": true}') as Record<string, unknown>;
    body.client_id = 'ours';
    delete body.front;
    assert.equal(stringifyExactJson({ wrapped: body }), '{"wrapped":{"prompt":{"3":{"inputs":{"seed":9007199254740993}}},"client_id":"ours"}}');
  });

  test('a key given twice is read as JSON.parse reads it, the last one winning', () => {
    assert.deepEqual(parseExactJson('{"a": 1.0, "a": 2.0}'), { a: 2 });
  });

  test('copyJson copies objects and arrays and keeps each ExactNumber, a __proto__ key as a key', () => {
    const read = parseExactJson('{"3": {"inputs": {"seed": 18446744073709551615, "cfg": 7.0, "pair": [1, 2.50]}}, "__proto__": {"x": 1}}') as Record<
      string,
      unknown
    >;
    const copy = copyJson(read);
    assert.notEqual(copy['3'], read['3']);
    assert.equal(stringifyExactJson(copy), stringifyExactJson(read));
    assert.equal(stringifyExactJson(copy), '{"3":{"inputs":{"seed":18446744073709551615,"cfg":7.0,"pair":[1,2.50]}},"__proto__":{"x":1}}');
    assert.equal(Object.getPrototypeOf(copy), Object.prototype);
  });

  test('exactNumberKey: the same for the same number however written, different for numbers doubles cannot tell apart', () => {
    const key = (text: string): string | undefined => exactNumberKey(parseExactJson(text));
    assert.equal(key('7'), key('7.0'));
    assert.equal(key('7.0'), key('70e-1'));
    assert.equal(key('1e-05'), key('0.00001'));
    assert.equal(key('-0'), key('0.0'));
    assert.equal(exactNumberKey(1e21), key('1000000000000000000000'));
    assert.notEqual(key('18446744073709551615'), key('18446744073709551616'));
    assert.notEqual(key('7'), key('-7'));
    assert.deepEqual([exactNumberKey('7'), exactNumberKey(null), exactNumberKey(Number.NaN)], [undefined, undefined, undefined]);
  });

  test('jsonNumber reads numbers only', () => {
    assert.deepEqual([jsonNumber(3), jsonNumber('3'), jsonNumber(null), jsonNumber({ value: '3' })], [3, undefined, undefined, undefined]);
  });

  test('text that is not JSON throws, as JSON.parse does', () => {
    for (const text of ['{"a": 1.0,}', '{"a": NaN}', '[1.0', '']) assert.throws(() => parseExactJson(text), SyntaxError, text);
  });
});
