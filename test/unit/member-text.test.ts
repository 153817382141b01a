// Unit tests of memberText: a member of a JSON object's text found without parsing it, as JSON.parse reads it.

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { memberText } from '../../src/json/member-text.js';

describe('memberText', () => {
  test('memberText finds a member of the object itself, not one of the same name nested or in a string', () => {
    const text = '{"prompt": [1, {"outputs": {"x": 1}}, "\\"outputs\\": {"], "outputs": {"9": {"a": ["/s"]}}, "meta": {"outputs": {}}}';
    assert.equal(memberText(text, 'outputs'), '{"9": {"a": ["/s"]}}');
    assert.equal(memberText('{"a": 1, "outputs": null}', 'outputs'), undefined);
    assert.equal(memberText('{"outputs":[]}', 'outputs'), '[]');
  });

  test("memberText finds the member JSON.parse reads, whatever the object's other members and spacing", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.jsonValue(), fc.constantFrom(0, 1), (others, outputs, indent) => {
        const text = JSON.stringify({ ...others, outputs }, null, indent);
        const written = JSON.stringify(outputs);
        const found = memberText(text, 'outputs');
        if (typeof outputs === 'object' && outputs !== null) assert.deepEqual(JSON.parse(found!), JSON.parse(written));
        else assert.equal(found, undefined);
      }),
    );
  });
});
