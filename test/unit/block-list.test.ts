// BlockList against a plain array: any sequence of pushes, insertions and removals leaves the same items in the same order.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BlockList } from '../../src/store/block-list.js';

type Operation =
  { kind: 'push'; value: number } | { kind: 'insert'; at: number; value: number } | { kind: 'remove'; at: number; modulo: number; count: number };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ kind: fc.constant('push' as const), value: fc.integer() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat({ max: 150 }), value: fc.integer() }),
  fc.record({ kind: fc.constant('remove' as const), at: fc.nat({ max: 150 }), modulo: fc.integer({ min: 1, max: 4 }), count: fc.nat({ max: 40 }) }),
);

/** What the operation does to a plain array. */
function applyToArray(items: number[], op: Operation): void {
  if (op.kind === 'push') items.push(op.value);
  else if (op.kind === 'insert') items.splice(Math.min(op.at, items.length), 0, op.value);
  else {
    let left = op.count;
    for (let index = Math.min(op.at, items.length); index < items.length && left > 0;) {
      if (Math.abs(items[index]!) % op.modulo === 0) {
        items.splice(index, 1);
        left -= 1;
      } else index += 1;
    }
  }
}

function applyToList(list: BlockList<number>, op: Operation): void {
  if (op.kind === 'push') list.push(op.value);
  else if (op.kind === 'insert') list.insertAt(Math.min(op.at, list.length), op.value);
  else list.removeFrom(Math.min(op.at, list.length), (value) => Math.abs(value) % op.modulo === 0, op.count);
}

describe('BlockList', () => {
  test('holds what a plain array holds after any operations, whatever the block size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(operation, { maxLength: 300, size: 'max' }), (blockSize, operations) => {
        const list = new BlockList<number>(blockSize);
        const model: number[] = [];
        for (const op of operations) {
          applyToList(list, op);
          applyToArray(model, op);
          assert.equal(list.length, model.length);
        }
        assert.deepEqual(
          list.map((value) => value),
          model,
        );
        for (let index = -1; index <= model.length; index += 1) assert.equal(list.at(index), model[index]);
        for (let index = -1; index <= model.length; index += 1) {
          for (const count of [0, 1, blockSize, 2 * blockSize + 1, model.length]) {
            assert.deepEqual(list.slice(index, count), index < 0 ? [] : model.slice(index, index + count), `slice(${index}, ${count})`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  test('firstIndexNot finds where a value goes in a sorted list, so inserting there keeps it sorted', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(fc.integer({ min: -50, max: 50 }), { maxLength: 200, size: 'max' }), (blockSize, values) => {
        const list = new BlockList<number>(blockSize);
        for (const value of values)
          list.insertAt(
            list.firstIndexNot((item) => item < value),
            value,
          );
        assert.deepEqual(
          list.map((value) => value),
          [...values].sort((a, b) => a - b),
        );
      }),
      { numRuns: 200 },
    );
  });

  test('an empty list: nothing at any index, and everything goes first', () => {
    const list = new BlockList<string>();
    assert.equal(list.at(0), undefined);
    assert.equal(
      list.firstIndexNot(() => true),
      0,
    );
    list.removeFrom(0, () => true, 5);
    assert.deepEqual(
      list.map((item) => item),
      [],
    );
  });
});
