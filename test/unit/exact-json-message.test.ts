// Unit tests of the messages that carry a parsed document between threads: its ExactNumbers come back as ExactNumbers, and nothing else becomes one.

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { fromExactJsonMessage, MAX_MESSAGE_DEPTH, toExactJsonMessage } from '../../src/isolation/exact-json-message.js';
import { ExactNumber, parseExactJson, stringifyExactJson } from '../../src/json/exact-json.js';

/** The document `text` holds, parsed, sent through structured clone (as postMessage sends it) and rebuilt. */
function roundTrip(text: string): Promise<unknown> {
  return fromExactJsonMessage(structuredClone(toExactJsonMessage(parseExactJson(text))!));
}

describe('exact JSON messages', () => {
  test('ExactNumbers, numbers, strings and a look-alike object come back as they were parsed', async () => {
    const text =
      '{"prompt": {"3": {"inputs": {"seed": 18446744073709551615, "cfg": 7.0, "steps": 20, "denoise": 1e-05, "text": "7.0, 1.50"}}}, ' +
      '"look_alike": {"value": "7.0", "isLosslessNumber": true}, "__proto__": {"scale": 2.50}, "list": [7.0, [1.0, "x"], {}, [], null, true, -0.10]}';
    const document = await roundTrip(text);
    assert.deepStrictEqual(document, parseExactJson(text));
    assert.equal(stringifyExactJson(document), stringifyExactJson(parseExactJson(text)));
    const {
      prompt,
      look_alike: lookAlike,
      list,
    } = document as { prompt: Record<string, { inputs: Record<string, unknown> }>; look_alike: object; list: unknown[] };
    assert.ok(prompt['3']!.inputs.cfg instanceof ExactNumber);
    assert.ok(list[0] instanceof ExactNumber && list[0] !== prompt['3']!.inputs.cfg, 'an ExactNumber of its own in each place');
    assert.equal(Object.getPrototypeOf(lookAlike), Object.prototype, 'a client object that looks like an ExactNumber stays a plain object');
    assert.equal(stringifyExactJson(lookAlike), '{"value":"7.0","isLosslessNumber":true}');
    assert.deepEqual(Object.keys(document as object), ['prompt', 'look_alike', '__proto__', 'list'], 'a __proto__ key stays a key');
  });

  test('a document deeper than MAX_MESSAGE_DEPTH is not sent', async () => {
    const nested = (depth: number): string => `{"a": ${'['.repeat(depth)}7.0${']'.repeat(depth)}}`;
    assert.deepStrictEqual(await roundTrip(nested(MAX_MESSAGE_DEPTH - 1)), parseExactJson(nested(MAX_MESSAGE_DEPTH - 1)));
    assert.equal(toExactJsonMessage(parseExactJson(nested(MAX_MESSAGE_DEPTH))), undefined);
  });

  test('a document that is a number, a string or empty', async () => {
    assert.deepStrictEqual(await roundTrip('7.0'), new ExactNumber('7.0'));
    assert.equal(await roundTrip('7'), 7);
    assert.equal(await roundTrip('"7.0"'), '7.0');
    assert.deepStrictEqual(await roundTrip('[]'), []);
  });

  test('any JSON document comes back as parseExactJson reads it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.json(), fc.constantFrom('', ' 7.0', ' 1e-05'), async (json, number) => {
        const text = `{"a": ${json}, "b": [${json},${number || '1'}]}`;
        assert.deepStrictEqual(await roundTrip(text), parseExactJson(text));
      }),
    );
  });

  test('a document of many places is rebuilt in turns of the event loop', async () => {
    const text = `[${Array.from({ length: 5000 }, () => '7.0').join(',')}]`;
    const message = structuredClone(toExactJsonMessage(parseExactJson(text))!);
    let turned = false;
    setImmediate(() => (turned = true));
    const document = (await fromExactJsonMessage(message)) as unknown[];
    assert.ok(turned, 'other work ran while the document was rebuilt');
    assert.equal(stringifyExactJson(document), text);
  });
});
