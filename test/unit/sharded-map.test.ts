// Unit tests of ShardedMap: it answers as a Map would, whatever the keys, and spreads keys that share a prefix.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ShardedMap } from '../../src/store/sharded-map.js';

describe('ShardedMap', () => {
  test('answers every get, has and size as a Map does, after any sets and deletes', () => {
    const operation = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), key: fc.string({ maxLength: 6 }), value: fc.integer() }),
      fc.record({ kind: fc.constant('delete' as const), key: fc.string({ maxLength: 6 }) }),
    );
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 200 }), fc.array(fc.string({ maxLength: 6 }), { maxLength: 20 }), (operations, probes) => {
        const sharded = new ShardedMap<number>();
        const model = new Map<string, number>();
        for (const op of operations) {
          if (op.kind === 'set') {
            assert.equal(sharded.set(op.key, op.value), sharded);
            model.set(op.key, op.value);
          } else {
            assert.equal(sharded.delete(op.key), model.delete(op.key));
          }
          assert.equal(sharded.size, model.size);
        }
        for (const key of [...model.keys(), ...probes]) {
          assert.equal(sharded.get(key), model.get(key));
          assert.equal(sharded.has(key), model.has(key));
        }
      }),
    );
  });

  test('sequential ids spread over the shards: growing to 200,000 never copies more than a few thousand entries at once', () => {
    const sharded = new ShardedMap<number>();
    for (let i = 0; i < 200_000; i += 1) sharded.set(`prompt-${i}`, i);
    const shards = (sharded as unknown as { shards: Map<string, number>[] }).shards;
    const largest = Math.max(...shards.map((shard) => shard.size));
    assert.ok(largest < 4000, `the largest shard holds ${largest} of 200,000 (an even spread is 3,125)`);
    assert.equal(sharded.get('prompt-123456'), 123456);
  });
});
