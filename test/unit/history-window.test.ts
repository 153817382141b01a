// The history window over a key's own prompts: ComfyUI's max_items/offset meaning, bounded lookups, no lookup past a full window.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DEFAULT_HISTORY_WINDOW, HISTORY_LOOKUPS_AT_ONCE, historyWindow } from '../../src/isolation/history-window.js';

/** ComfyUI's windowing of a history (oldest first), `max_items` given. */
function comfyWindow(ids: string[], maxItems: number, offset: number): string[] {
  const from = Math.max(0, offset < 0 ? ids.length - maxItems : offset);
  return ids.slice(from, from + maxItems);
}

/** Prompts p0 (oldest) … p{count-1}; those in `pending` have no entry. Counts lookups and the most in flight. */
function keyWithPrompts(count: number, pending: Set<number>) {
  const oldestFirst = Array.from({ length: count }, (_, i) => `p${i}`);
  const stats = { lookups: 0, inFlight: 0, mostInFlight: 0 };
  const lookup = async (id: string): Promise<string | undefined> => {
    stats.lookups += 1;
    stats.inFlight += 1;
    stats.mostInFlight = Math.max(stats.mostInFlight, stats.inFlight);
    await nextTurn();
    stats.inFlight -= 1;
    return pending.has(Number(id.slice(1))) ? undefined : `entry of ${id}`;
  };
  return { newestFirst: [...oldestFirst].reverse(), completed: oldestFirst.filter((_, i) => !pending.has(i)), stats, lookup };
}

test("every window has ComfyUI's meaning over the key's completed entries", async () => {
  const pending = new Set([0, 3, 4, 11]);
  for (const [maxItems, offset] of [
    [2, -1],
    [5, -1],
    [1, 1],
    [3, 0],
    [3, 9],
    [100, -1],
    [undefined, 2],
    [undefined, -1],
    [0, -1],
    [4, 20],
  ] as const) {
    const key = keyWithPrompts(12, pending);
    const window = await historyWindow(key.newestFirst, maxItems, offset, key.lookup);
    const expected = comfyWindow(key.completed, maxItems ?? DEFAULT_HISTORY_WINDOW, offset);
    assert.deepEqual(
      window.map(([id]) => id),
      expected,
      `max_items=${maxItems} offset=${offset}`,
    );
    assert.ok(window.every(([id, entry]) => entry === `entry of ${id}`));
  }
});

test('the newest window looks up only until it is full, at most a few at a time', async () => {
  const key = keyWithPrompts(1000, new Set([999]));
  const window = await historyWindow(key.newestFirst, 64, -1, key.lookup);
  assert.deepEqual(
    window.map(([id]) => id),
    key.completed.slice(-64),
  );
  assert.equal(key.stats.lookups, 65, 'the pending newest one and the 64 of the window');
  assert.ok(key.stats.mostInFlight <= HISTORY_LOOKUPS_AT_ONCE, `${key.stats.mostInFlight} in flight`);
});

test('without max_items the window is bounded by the default', async () => {
  const key = keyWithPrompts(DEFAULT_HISTORY_WINDOW + 50, new Set());
  const window = await historyWindow(key.newestFirst, undefined, -1, key.lookup);
  assert.equal(window.length, DEFAULT_HISTORY_WINDOW);
  assert.equal(key.stats.lookups, DEFAULT_HISTORY_WINDOW);
  assert.deepEqual(
    window.map(([id]) => id),
    key.completed.slice(-DEFAULT_HISTORY_WINDOW),
  );
});

test('a failed lookup fails the window once every lookup in flight has settled, and starts no more', async () => {
  let started = 0;
  let settled = 0;
  const lookup = async (id: string): Promise<string> => {
    started += 1;
    await nextTurn();
    settled += 1;
    if (id === 'p5') throw new Error('ComfyUI went away');
    return `entry of ${id}`;
  };
  const prompts = Array.from({ length: 40 }, (_, i) => `p${i}`);
  await assert.rejects(historyWindow(prompts, 40, -1, lookup), /went away/);
  assert.equal(settled, started, 'nothing is left in flight');
  assert.ok(started < prompts.length, `${started} lookups started`);
});
