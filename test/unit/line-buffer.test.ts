// Unit tests of LineBuffer: the bytes taken are the lines added, in order, whatever their characters, across growth, takes and put-backs.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LineBuffer } from '../../src/log/line-buffer.js';

/** One step: add a line, take what waits (the test may put it back), or put back what the last take gave. */
const step = fc.oneof(
  { weight: 6, arbitrary: fc.record({ add: fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ maxLength: 30_000 })) }) },
  { weight: 1, arbitrary: fc.constant({ take: true as const }) },
  { weight: 1, arbitrary: fc.constant({ putBack: true as const }) },
);

test('LineBuffer: what is taken is every line added since, with newlines, as UTF-8; a put-back goes before the lines added since', () => {
  fc.assert(
    fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
      const buffer = new LineBuffer();
      let model = '';
      let lastTaken: { bytes: Buffer; text: string } | null = null;
      for (const one of steps) {
        if ('add' in one) {
          buffer.add(one.add);
          model += `${one.add}\n`;
        } else if ('take' in one) {
          const bytes = buffer.take();
          assert.equal(bytes.toString('utf8'), model);
          assert.equal(bytes.length, Buffer.byteLength(model));
          assert.equal(buffer.size, 0);
          lastTaken = { bytes: Buffer.from(bytes), text: model };
          model = '';
        } else if (lastTaken) {
          buffer.putBack(lastTaken.bytes);
          model = lastTaken.text + model;
          lastTaken = null;
        }
        assert.equal(buffer.size, Buffer.byteLength(model));
      }
      assert.equal(buffer.take().toString('utf8'), model);
    }),
    { numRuns: 200 },
  );
});
