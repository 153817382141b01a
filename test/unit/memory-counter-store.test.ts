// MemoryCounterStore's own detail: the times it keeps are trimmed as they leave the window, and idle keys are dropped. The window
// itself (limits, headers, bursts, restore) is checked for every counter store by test/contract.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryCounterStore } from '../../src/store/memory/memory-counter-store.js';

const T0 = 1_714_557_600;

describe('MemoryCounterStore', () => {
  test('a long-running key keeps counting right once thousands of requests have left and been trimmed', () => {
    const store = new MemoryCounterStore(10);
    let last;
    for (let i = 0; i < 5000; i += 1) {
      last = store.hit('k', 3, T0 + i * 4);
      assert.ok(last.allowed, `request ${i}: three per 10 s is never exceeded at one per 4 s`);
    }
    assert.deepEqual(last, { allowed: true, limit: 3, remaining: 0, resetAt: T0 + 4999 * 4 - 8 + 10 });
  });

  test('the window of a key idle for a whole window is dropped; a busy one is kept and still counts', () => {
    const store = new MemoryCounterStore(3600);
    for (let i = 0; i < 1000; i += 1) store.hit(`once-${i}`, 5, T0 + i);
    store.hit('busy', 2, T0 + 3000);
    assert.equal(store.trackedKeys(), 1001);
    store.hit('busy', 2, T0 + 4600);
    assert.equal(store.trackedKeys(), 1, 'only the key with a request in the last hour is left');
    assert.equal(store.hit('busy', 2, T0 + 4601).allowed, false, 'its two requests of the last hour still count');
    assert.equal(store.hit('once-0', 1, T0 + 4602).remaining, 0, 'a dropped key starts afresh');
  });

  test('merge() counts a request known both here and from elsewhere once, and adds the others', () => {
    const store = new MemoryCounterStore(3600);
    for (const at of [T0 + 1, T0 + 2, T0 + 2]) store.hit('k', 100, at);
    store.merge('k', [T0 - 4000, T0 + 2, T0 + 2, T0 + 2, T0 + 3, T0 + 1.5], T0 + 10);
    // Known: 1, 2, 2 here; from elsewhere 1.5, 2 ×3, 3 (the one before the window is dropped): 1, 1.5, 2, 2, 2, 3.
    assert.deepEqual(store.hit('k', 7, T0 + 10), { allowed: true, limit: 7, remaining: 0, resetAt: T0 + 1 + 3600 });
    assert.equal(store.hit('k', 7, T0 + 11).allowed, false);
    store.merge('fresh', [T0 + 5], T0 + 10);
    assert.equal(store.hit('fresh', 1, T0 + 12).allowed, false, 'a key seen only elsewhere is counted too');
  });
});
