// The CounterStore contract: an exact sliding window, checked and counted in one step, with the headers' numbers.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import type { CounterStore, HitResult } from '../../src/store/types.js';

const HOUR = 3600;
const T0 = 1_714_557_600;

/** How an adapter's test file hands counter stores to the contract. */
export interface CounterHarness {
  /** A store with its own, empty data and the given window (3600 s unless a test needs a short one). */
  open(windowSeconds?: number): Promise<CounterStore>;
  /** Several stores on the same, empty data (replicas), or why the adapter has no shared data. */
  openShared: ((count: number) => Promise<CounterStore[]>) | { skip: string };
}

const range = (from: number, count: number, step = 1): number[] => Array.from({ length: count }, (_, i) => from + i * step);

/** Runs the CounterStore contract against one adapter. */
export function counterStoreContract(name: string, harness: CounterHarness | { skip: string }): void {
  if ('skip' in harness) {
    describe(`${name} (CounterStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (CounterStore contract)`, () => {
    const opened: CounterStore[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((store) => store.close()));
    });
    const open = async (windowSeconds?: number): Promise<CounterStore> => {
      const store = await harness.open(windowSeconds);
      opened.push(store);
      return store;
    };
    const hitAt = async (store: CounterStore, key: string, limit: number, times: number[]): Promise<HitResult[]> => {
      const results: HitResult[] = [];
      for (const t of times) results.push(await store.hit(key, limit, t));
      return results;
    };

    test('matches the interface', async () => {
      const store = await open();
      for (const method of ['hit', 'restore', 'close'] as const) assert.equal(typeof store[method], 'function', `${method} is a method`);
    });

    test('the i-th request of a window sees remaining = limit - i, and resetAt = first + 1 hour', async () => {
      const store = await open();
      const results = await hitAt(store, 'k', 5, range(T0, 5, 10));
      assert.deepEqual(
        results.map((r) => [r.allowed, r.limit, r.remaining, r.resetAt]),
        [4, 3, 2, 1, 0].map((remaining) => [true, 5, remaining, T0 + HOUR]),
      );
    });

    test('at the limit the next request is refused with remaining 0 and resetAt = oldest + 3600, and not counted', async () => {
      const store = await open();
      await hitAt(store, 'k', 3, [T0, T0 + 100, T0 + 200]);
      assert.deepEqual(await store.hit('k', 3, T0 + 300), { allowed: false, limit: 3, remaining: 0, resetAt: T0 + HOUR });
      assert.equal((await store.hit('k', 3, T0 + 301)).allowed, false);
    });

    test('a request is allowed again exactly when the oldest leaves the window', async () => {
      const store = await open();
      await hitAt(store, 'k', 2, [T0, T0 + 10]);
      assert.equal((await store.hit('k', 2, T0 + HOUR - 0.001)).allowed, false);
      assert.deepEqual(await store.hit('k', 2, T0 + HOUR), { allowed: true, limit: 2, remaining: 0, resetAt: T0 + 10 + HOUR });
      assert.equal((await store.hit('k', 2, T0 + 10 + HOUR - 0.001)).allowed, false);
      assert.equal((await store.hit('k', 2, T0 + 10 + HOUR)).allowed, true);
    });

    test('no 2x burst across a boundary: N at t=3599, then nothing more until they leave', async () => {
      const limit = 10;
      const store = await open();
      assert.ok((await hitAt(store, 'k', limit, Array(limit).fill(T0 + 3599))).every((r) => r.allowed));
      const later = await hitAt(store, 'k', limit, range(T0 + 3600, 600, 6));
      assert.equal(later.filter((r) => r.allowed).length, 0, 'nothing is allowed from t=3600 to t=7198');
      const reopened = await hitAt(store, 'k', limit, Array(limit + 1).fill(T0 + 7199));
      assert.equal(reopened.filter((r) => r.allowed).length, limit, 'at t=7199 the whole burst has left');
    });

    test('over random traffic, no window of one hour holds more than N, and a request is refused only when one is full', async () => {
      const limit = 7;
      const store = await open();
      let seed = 42;
      const random = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
      const allowed: number[] = [];
      let t = T0;
      for (let i = 0; i < 1500; i += 1) {
        t += random() < 0.1 ? random() * 2000 : random() * 30;
        const inWindow = allowed.filter((a) => a > t - HOUR).length;
        const result = await store.hit('k', limit, t);
        assert.equal(result.allowed, inWindow < limit, `request ${i} at ${t}: ${inWindow} in the window`);
        if (result.allowed) allowed.push(t);
        assert.equal(result.remaining, Math.max(0, limit - inWindow - (result.allowed ? 1 : 0)));
      }
      assert.ok(allowed.length > 50 && allowed.length < 1500, 'the traffic both hit and stayed under the limit');
    });

    test('keys are counted separately', async () => {
      const store = await open();
      await hitAt(store, 'a', 1, [T0]);
      assert.equal((await store.hit('a', 1, T0 + 1)).allowed, false);
      assert.equal((await store.hit('b', 1, T0 + 1)).allowed, true);
    });

    test('concurrent hits are counted exactly', async () => {
      const store = await open();
      const results = await Promise.all(Array.from({ length: 50 }, async () => store.hit('k', 20, T0)));
      assert.equal(results.filter((r) => r.allowed).length, 20);
      assert.deepEqual(
        results
          .filter((r) => r.allowed)
          .map((r) => r.remaining)
          .sort((x, y) => y - x),
        range(19, 20, -1),
      );
    });

    test('restore() seeds the windows with the requests of the last hour', async () => {
      const store = await open();
      const now = T0 + 10_000;
      store.restore(
        new Map([
          ['k', [now - 10, now - HOUR - 5, now - 3000, now - HOUR]],
          ['empty', []],
        ]),
        now,
      );
      assert.deepEqual(
        await store.hit('k', 5, now),
        { allowed: true, limit: 5, remaining: 2, resetAt: now - 3000 + HOUR },
        'two restored requests still count',
      );
      assert.equal((await store.hit('empty', 1, now)).remaining, 0);
      await hitAt(store, 'k', 5, [now + 1, now + 2]);
      assert.equal((await store.hit('k', 5, now + 3)).allowed, false, '2 restored + 3 new fill a limit of 5');
    });

    test('a lowered limit gives remaining 0, never negative, and refuses', async () => {
      const store = await open();
      await hitAt(store, 'k', 10, range(T0, 8));
      assert.deepEqual(await store.hit('k', 3, T0 + 20), { allowed: false, limit: 3, remaining: 0, resetAt: T0 + HOUR });
      const raised = await store.hit('k', 20, T0 + 21);
      assert.deepEqual([raised.allowed, raised.remaining], [true, 11]);
    });

    test('a short window keeps counting right after many requests have left', async () => {
      const store = await open(10);
      const results = await hitAt(store, 'k', 3, range(T0, 1000, 4));
      assert.ok(
        results.every((r) => r.allowed),
        'three per 10 s is never exceeded at one per 4 s',
      );
      assert.deepEqual(results.at(-1), { allowed: true, limit: 3, remaining: 0, resetAt: T0 + 999 * 4 - 8 + 10 });
    });

    test(
      'replicas sharing the data: 200 simultaneous hits on a limit of 50 give exactly 50',
      { skip: 'skip' in harness.openShared ? harness.openShared.skip : false },
      async () => {
        const replicas = await (harness.openShared as (count: number) => Promise<CounterStore[]>)(3);
        opened.push(...replicas);
        const results = await Promise.all(Array.from({ length: 200 }, async (_, i) => replicas[i % 3]!.hit('shared', 50, T0 + i / 1000)));
        assert.equal(results.filter((r) => r.allowed).length, 50);
        assert.deepEqual(
          results
            .filter((r) => r.allowed)
            .map((r) => r.remaining)
            .sort((x, y) => y - x),
          range(49, 50, -1),
        );
      },
    );
  });
}
