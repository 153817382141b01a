// The request id the gateway makes: a version 4 UUID as crypto.randomUUID writes it, new each time, across its draws of random bytes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newRequestId } from '../../src/server/request-id.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('every id is a lower-case version 4 UUID, and none repeats over several draws of random bytes', () => {
  const seen = new Set<string>();
  for (let index = 0; index < 2000; index += 1) {
    const id = newRequestId();
    assert.match(id, UUID_V4);
    seen.add(id);
  }
  assert.equal(seen.size, 2000);
});

test('each hex digit position but the fixed ones takes many values', () => {
  const ids = Array.from({ length: 1000 }, () => newRequestId());
  for (let position = 0; position < 36; position += 1) {
    const values = new Set(ids.map((id) => id[position]));
    if ([8, 13, 18, 23].includes(position)) assert.deepEqual([...values], ['-']);
    else if (position === 14) assert.deepEqual([...values], ['4']);
    else if (position === 19) assert.ok(values.size === 4, `position 19 takes the four variant digits, took ${[...values].join('')}`);
    else assert.ok(values.size >= 12, `position ${position} took only ${values.size} values`);
  }
});
