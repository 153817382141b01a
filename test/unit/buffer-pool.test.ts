// Unit tests of BufferPool: buffers given back are handed out again, and only its own buffers, once each, up to the number kept.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BufferPool } from '../../src/proxy/buffer-pool.js';

describe('BufferPool', () => {
  test('takes the start of a buffer of its size, and hands a buffer given back out again', () => {
    const pool = new BufferPool(1024, 4);
    const first = pool.take(100);
    assert.equal(first.length, 100);
    assert.equal(first.buffer.byteLength, 1024);
    assert.equal(pool.take().length, 1024);
    pool.giveBack(first);
    const again = pool.take(300);
    assert.equal(again.buffer, first.buffer, 'the memory given back');
    assert.equal(again.length, 300);
    assert.notEqual(pool.take(100).buffer, first.buffer, 'handed out once: the next take gets other memory');
  });

  test('ignores buffers it did not make', () => {
    const pool = new BufferPool(1024, 4);
    const foreign = Buffer.allocUnsafeSlow(1024);
    pool.giveBack(foreign);
    pool.giveBack(Buffer.alloc(10));
    assert.notEqual(pool.take().buffer, foreign.buffer);
  });

  test('a buffer given back twice is handed out once', () => {
    const pool = new BufferPool(1024, 4);
    const buffer = pool.take();
    pool.giveBack(buffer);
    pool.giveBack(buffer.subarray(10));
    assert.equal(pool.take().buffer, buffer.buffer);
    assert.notEqual(pool.take().buffer, buffer.buffer);
  });

  test('keeps at most the number of free buffers it was made with', () => {
    const pool = new BufferPool(64, 2);
    const taken = [pool.take(), pool.take(), pool.take()];
    for (const buffer of taken) pool.giveBack(buffer);
    const reused = [pool.take(), pool.take(), pool.take()].filter((buffer) => taken.some((before) => before.buffer === buffer.buffer));
    assert.equal(reused.length, 2);
  });
});
