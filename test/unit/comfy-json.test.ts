// Unit tests of parseComfyJson: ComfyUI's answers as Python's json.dumps writes them, NaN and Infinity included.

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { parseComfyJson } from '../../src/isolation/json-body.js';

describe('parseComfyJson', () => {
  test("reads Python's NaN, Infinity and -Infinity outside strings as null, and leaves strings as they are", () => {
    assert.deepEqual(parseComfyJson('{"cfg": NaN, "denoise": -Infinity, "max": Infinity, "text": "NaN \\"Infinity\\" -Infinity"}'), {
      cfg: null,
      denoise: null,
      max: null,
      text: 'NaN "Infinity" -Infinity',
    });
    assert.deepEqual(parseComfyJson(Buffer.from('[1, NaN, "\\\\", NaN]')), [1, null, '\\', null]);
  });

  test('standard JSON reads as JSON.parse reads it; what is not JSON even so is undefined', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify(value);
        assert.deepEqual(parseComfyJson(text), JSON.parse(text));
      }),
      { numRuns: 500 },
    );
    for (const text of ['{"a": nan}', '{"a": NaN', 'NaNa', '']) assert.equal(parseComfyJson(text), undefined, text);
  });
});
