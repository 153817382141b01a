// Unit tests of ShardedMap and OrderedShardedMap: they answer as a Map would (the ordered one iterates as one too), whatever the keys, and spread keys that share a prefix.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { OrderedShardedMap, ShardedMap } from '../../src/store/sharded-map.js';

type Operation = { kind: 'set'; key: string; value: number } | { kind: 'delete'; key: string };
type StringMap = Pick<Map<string, number>, 'get' | 'has' | 'delete' | 'size'> & { set(key: string, value: number): unknown };

const operation = (key: fc.Arbitrary<string>): fc.Arbitrary<Operation> =>
  fc.oneof(fc.record({ kind: fc.constant('set' as const), key, value: fc.integer() }), fc.record({ kind: fc.constant('delete' as const), key }));

/** Runs `operations` on `map` and on a Map, checking every answer against the Map's; returns that Map. */
function checkAgainstMap(map: StringMap, operations: Operation[], probes: string[]): Map<string, number> {
  const model = new Map<string, number>();
  for (const op of operations) {
    if (op.kind === 'set') {
      assert.equal(map.set(op.key, op.value), map);
      model.set(op.key, op.value);
    } else {
      assert.equal(map.delete(op.key), model.delete(op.key));
    }
    assert.equal(map.size, model.size);
  }
  for (const key of [...model.keys(), ...probes]) {
    assert.equal(map.get(key), model.get(key));
    assert.equal(map.has(key), model.has(key));
  }
  return model;
}

/** The Maps a sharded map holds its entries in. */
function mapsOf(map: ShardedMap<number> | OrderedShardedMap<number>): Map<string, unknown>[] {
  return (map as unknown as { shards: { maps: Map<string, unknown>[] } }).shards.maps;
}

describe('ShardedMap', () => {
  test('answers every get, has and size as a Map does, after any sets and deletes', () => {
    fc.assert(
      fc.property(
        fc.array(operation(fc.string({ maxLength: 6 })), { maxLength: 200 }),
        fc.array(fc.string({ maxLength: 6 }), { maxLength: 20 }),
        (operations, probes) => {
          // Spread over the shards after 8 entries, as a big map is after 2,048.
          checkAgainstMap(new ShardedMap<number>(), operations, probes);
          checkAgainstMap(new ShardedMap<number>({ splitAt: 8 }), operations, probes);
        },
      ),
    );
  });

  test('sequential ids spread over the shards: growing to 200,000 never copies more than a few thousand entries at once', () => {
    const sharded = new ShardedMap<number>();
    for (let i = 0; i < 200_000; i += 1) sharded.set(`prompt-${i}`, i);
    const shards = mapsOf(sharded);
    const largest = Math.max(...shards.map((shard) => shard.size));
    assert.ok(largest < 4000, `the largest shard holds ${largest} of 200,000 (an even spread is 3,125)`);
    assert.equal(sharded.get('prompt-123456'), 123456);
  });

  test('a small map is one Map; it spreads over the shards at 2,048 entries and stays spread', () => {
    const sharded = new ShardedMap<number>();
    for (let i = 0; i < 2_047; i += 1) sharded.set(`job-${i}`, i);
    assert.equal(mapsOf(sharded).length, 1);
    sharded.set('job-2047', 2_047);
    assert.equal(mapsOf(sharded).length, 64);
    for (let i = 0; i < 2_048; i += 1) sharded.delete(`job-${i}`);
    assert.equal(mapsOf(sharded).length, 64);
    assert.equal(sharded.size, 0);
  });
});

describe('OrderedShardedMap', () => {
  test('answers as a Map does, and iterates in the same order, after any sets and deletes', () => {
    fc.assert(
      fc.property(
        fc.array(operation(fc.string({ maxLength: 4 })), { maxLength: 300 }),
        fc.array(fc.string({ maxLength: 4 }), { maxLength: 20 }),
        (operations, probes) => {
          for (const ordered of [new OrderedShardedMap<number>(), new OrderedShardedMap<number>({ splitAt: 8 })]) {
            const model = checkAgainstMap(ordered, operations, probes);
            assert.deepEqual([...ordered.entries()], [...model.entries()]);
            assert.deepEqual([...ordered], [...model]);
            assert.deepEqual([...ordered.keys()], [...model.keys()]);
          }
        },
      ),
    );
  });

  // Drawn from a few keys, the changes often hit the entry the iteration stands on and the ones after it.
  const fewKeys = fc.constantFrom(...'abcdefghij');

  test('changes made while iterating are seen as a Map would show them', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fewKeys, { minLength: 1 }), fc.array(operation(fewKeys), { maxLength: 12 }), fc.nat(), (keys, during, at) => {
        const stop = at % keys.length;
        const iterate = (map: Map<string, number> | OrderedShardedMap<number>): Array<[string, number]> => {
          keys.forEach((key, index) => map.set(key, index));
          const seen: Array<[string, number]> = [];
          for (const entry of map) {
            if (seen.push(entry) !== stop + 1) continue;
            for (const op of during) {
              if (op.kind === 'set') map.set(op.key, op.value);
              else map.delete(op.key);
            }
          }
          return seen;
        };
        const seen = iterate(new OrderedShardedMap<number>({ splitAt: 4 }));
        const expected = iterate(new Map<string, number>());
        // The one difference allowed: every entry after the iteration's place was deleted, then some added.
        const lastKept = expected.slice(0, seen.length);
        assert.deepEqual(seen, lastKept);
        if (seen.length < expected.length) {
          const added = expected.slice(seen.length).map(([key]) => key);
          assert.ok(added.every((key) => during.some((op) => op.kind === 'set' && op.key === key)));
        }
      }),
    );
  });

  test('keys added in sequence spread over the shards, and 200,000 iterate in order', () => {
    const ordered = new OrderedShardedMap<number>();
    for (let i = 0; i < 200_000; i += 1) ordered.set(`job-${i}`, i);
    const shards = mapsOf(ordered);
    assert.ok(Math.max(...shards.map((shard) => shard.size)) < 4000, 'an even spread is 3,125 a shard');
    let expected = 0;
    for (const [key, value] of ordered) {
      assert.equal(value, expected);
      assert.equal(key, `job-${expected}`);
      expected += 1;
    }
    assert.equal(expected, 200_000);
  });
});
