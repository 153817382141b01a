// TurnBudget: a burst passes a group per turn of the event loop, in the order asked; a quiet turn starts the count again.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as checkPhase } from 'node:timers/promises';
import { TurnBudget } from '../../src/jobs/turn-budget.js';

test('of 20 asked at once with 8 a turn: 8 pass now, 8 at the next check phase, 4 at the one after, in the order asked', async () => {
  const budget = new TurnBudget(8);
  const passed: number[] = [];
  const all = Array.from({ length: 20 }, (_, i) => budget.take().then(() => passed.push(i)));
  await Promise.resolve();
  assert.equal(passed.length, 8);
  await checkPhase();
  assert.equal(passed.length, 16);
  await checkPhase();
  assert.equal(passed.length, 20);
  await Promise.all(all);
  assert.deepEqual(
    passed,
    Array.from({ length: 20 }, (_, i) => i),
  );
});

test('one asked while others wait goes after them, even when the turn has room', async () => {
  const budget = new TurnBudget(2);
  const passed: string[] = [];
  for (const name of ['a', 'b', 'c', 'd', 'e']) void budget.take().then(() => passed.push(name));
  await checkPhase();
  // c and d passed in this check phase; e still waits, so f waits behind it.
  void budget.take().then(() => passed.push('f'));
  await checkPhase();
  await checkPhase();
  assert.deepEqual(passed, ['a', 'b', 'c', 'd', 'e', 'f']);
});

test('after a turn without a burst, the next take passes at once', async () => {
  const budget = new TurnBudget(1);
  await budget.take();
  await checkPhase();
  await checkPhase();
  let passed = false;
  void budget.take().then(() => (passed = true));
  await Promise.resolve();
  assert.equal(passed, true);
});
