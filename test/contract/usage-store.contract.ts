// The UsageStore contract: synchronous recording, daily and hourly totals, durability across a restart.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DailyTotals, UsageRecord, UsageStore } from '../../src/store/types.js';
import { utcDay } from '../../src/usage/day.js';
import { isSkipped, lifecycle, type HarnessOrSkip } from './harness.js';

function usage(keyId: string, timestamp: number, overrides: Partial<UsageRecord> = {}): UsageRecord {
  return { key_id: keyId, endpoint: '/prompt', timestamp, duration: 0.25, success: true, metadata: { method: 'POST', status: 200 }, ...overrides };
}

/** The job metering of a day without prompts or jobs. */
const NO_JOBS = { prompts: 0, prompts_run: 0, execution_seconds: 0, outputs: 0 };

/** The request counts of a day without requests. */
const NO_REQUESTS = { requests: 0, successes: 0, failures: 0, duration: 0, rate_limited: 0 };

/** Runs the UsageStore contract against one adapter. */
export function usageStoreContract(name: string, harness: HarnessOrSkip<UsageStore>): void {
  if (isSkipped(harness)) {
    describe(`${name} (UsageStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (UsageStore contract)`, () => {
    const { open, reopen } = lifecycle(harness);
    const now = (): number => Date.now() / 1000;

    test('matches the interface', async () => {
      const store = await open();
      for (const method of [
        'open',
        'record',
        'recordRateLimited',
        'recordPromptAdmitted',
        'recordJobRun',
        'dailyTotals',
        'dailyTotalsOfAll',
        'requestsSince',
        'requestsOfAllSince',
        'keyIds',
        'recentRequestTimes',
        'ensureCreated',
        'flush',
        'lastWriteError',
        'close',
      ] as const) {
        assert.equal(typeof store[method], 'function', `${method} is a method`);
      }
      await store.ensureCreated();
      assert.equal(store.lastWriteError(), null);
    });

    test('a record counts at once in the day, the hour and the key list', async () => {
      const store = await open();
      const t = now();
      store.record(usage('a', t - 10));
      store.record(usage('a', t - 5, { success: false, duration: 1.5, metadata: { method: 'GET', status: 502 } }));
      store.recordRateLimited('a', t - 1);
      store.record(usage('b', t - 2));
      const today = utcDay(t);
      const totals = store.dailyTotals('a', today).get(today);
      assert.deepEqual(totals, { ...NO_JOBS, requests: 2, successes: 1, failures: 1, duration: 1.75, rate_limited: 1 });
      assert.equal(store.requestsSince('a', t - 3600), 2, 'a 429 is not a counted request');
      assert.deepEqual(store.keyIds().sort(), ['a', 'b']);
      assert.equal(store.dailyTotals('nobody', '2000-01-01').size, 0);
    });

    test('admitted prompts and jobs run count in the UTC day of their time, per key, and survive a restart', async () => {
      const store = await open();
      const day1 = Date.UTC(2026, 0, 1, 23, 59, 59) / 1000;
      const day2 = Date.UTC(2026, 0, 2, 0, 0, 1) / 1000;
      store.recordPromptAdmitted('k', day1 - 60);
      store.recordPromptAdmitted('k', day1);
      store.recordPromptAdmitted('other', day1);
      // Admitted before midnight, finished after: the run counts on the day it finished.
      store.recordJobRun('k', day2, 61.5, 4);
      store.recordJobRun('k', day2 + 10, 0.5, 1);
      store.recordJobRun('k', day1, 2, 0);
      const expected = new Map([
        ['2026-01-01', { ...NO_REQUESTS, prompts: 2, prompts_run: 1, execution_seconds: 2, outputs: 0 }],
        ['2026-01-02', { ...NO_REQUESTS, prompts: 0, prompts_run: 2, execution_seconds: 62, outputs: 5 }],
      ]);
      const sorted = (totals: Map<string, DailyTotals>): Map<string, DailyTotals> => new Map([...totals].sort());
      assert.deepEqual(sorted(store.dailyTotals('k', '2026-01-01')), expected, 'at once');
      assert.deepEqual(sorted(store.dailyTotals('k', '2026-01-02')), new Map([...expected].slice(1)), 'from the first day asked for');
      assert.equal(store.requestsSince('k', 0), 0, 'prompts and jobs are not counted requests');
      assert.ok(store.keyIds().includes('k'));
      await store.flush();
      assert.equal(store.lastWriteError(), null);
      const again = await reopen();
      assert.deepEqual(sorted(again.dailyTotals('k', '2026-01-01')), expected, 'after a restart');
      assert.equal(again.dailyTotalsOfAll('2026-01-01').get('2026-01-01')?.prompts, 3, 'the sum over every key');
      assert.equal(again.dailyTotalsOfAll('2026-01-01').get('2026-01-02')?.execution_seconds, 62);
    });

    test('a job figure that is not a finite positive number counts as 0, and outputs as whole files, after a restart too', async () => {
      const store = await open();
      const at = Date.UTC(2026, 0, 3, 12) / 1000;
      store.recordJobRun('odd', at, Number.NaN, -2);
      store.recordJobRun('odd', at, Number.POSITIVE_INFINITY, 2.75);
      store.recordJobRun('odd', at, -1, Number.NaN);
      const expected = { ...NO_REQUESTS, prompts: 0, prompts_run: 3, execution_seconds: 0, outputs: 2 };
      assert.deepEqual(store.dailyTotals('odd', '2026-01-03').get('2026-01-03'), expected);
      await store.flush();
      assert.equal(store.lastWriteError(), null);
      assert.deepEqual((await reopen()).dailyTotals('odd', '2026-01-03').get('2026-01-03'), expected);
    });

    test('daily totals are kept per UTC day and filtered by the first day asked for', async () => {
      const store = await open();
      const day1 = Date.UTC(2026, 0, 1, 12) / 1000;
      const day2 = Date.UTC(2026, 0, 2, 23, 59, 59) / 1000;
      store.record(usage('k', day1));
      store.record(usage('k', day1 + 1));
      store.record(usage('k', day2));
      assert.deepEqual([...store.dailyTotals('k', '2026-01-01').keys()].sort(), ['2026-01-01', '2026-01-02']);
      assert.deepEqual([...store.dailyTotals('k', '2026-01-02').keys()], ['2026-01-02']);
      assert.equal(store.dailyTotals('k', '2026-01-01').get('2026-01-01')?.requests, 2);
    });

    test('everything flushed survives a restart: totals, hourly counts and the last hour of request times', async () => {
      const store = await open();
      const t = now();
      const old = Date.UTC(2026, 0, 1, 12) / 1000;
      store.record(usage('k', old));
      for (let i = 0; i < 5; i += 1) store.record(usage('k', t - 100 + i));
      store.record(usage('k', t - 7200));
      store.recordRateLimited('k', t - 50);
      await store.flush();
      assert.equal(store.lastWriteError(), null);
      const again = await reopen();
      const today = utcDay(t);
      assert.equal(again.dailyTotals('k', today).get(today)?.requests, 5 + (utcDay(t - 7200) === today ? 1 : 0));
      assert.equal(again.dailyTotals('k', today).get(today)?.rate_limited, 1);
      assert.equal(again.dailyTotals('k', '2026-01-01').get('2026-01-01')?.requests, 1);
      assert.equal(again.requestsSince('k', t - 3600), 5);
      assert.equal(again.requestsSince('k', t - 3 * 3600), 6);
      const recent = again.recentRequestTimes(3600, now()).get('k') ?? [];
      assert.deepEqual(
        recent.map((x) => Math.round(x * 1000)).sort(),
        [0, 1, 2, 3, 4].map((i) => Math.round((t - 100 + i) * 1000)),
      );
    });

    test('the sums over every key match the keys added up, at once and after a restart', async () => {
      const store = await open();
      const t = now();
      const yesterday = t - 86_400;
      store.record(usage('a', t - 10));
      store.record(usage('a', t - 20, { success: false, duration: 2, metadata: { method: 'GET', status: 500 } }));
      store.record(usage('b', t - 30, { duration: 0.5 }));
      store.record(usage('c', yesterday));
      store.recordRateLimited('b', t - 5);
      store.recordRateLimited('c', yesterday);
      store.recordPromptAdmitted('a', t - 9);
      store.recordPromptAdmitted('c', yesterday);
      store.recordJobRun('a', t - 8, 4.25, 2);
      store.recordJobRun('b', t - 7, 1.5, 0);
      store.recordJobRun('c', yesterday, 10, 5);
      const check = (reader: UsageStore, what: string): void => {
        const fromDay = utcDay(yesterday);
        const added = new Map<string, Record<string, number>>();
        for (const keyId of reader.keyIds()) {
          for (const [day, totals] of reader.dailyTotals(keyId, fromDay)) {
            const sum = added.get(day) ?? { requests: 0, successes: 0, failures: 0, duration: 0, rate_limited: 0, ...NO_JOBS };
            for (const field of Object.keys(sum) as Array<keyof typeof totals>) sum[field]! += totals[field];
            added.set(day, sum);
          }
        }
        assert.deepEqual(new Map([...reader.dailyTotalsOfAll(fromDay)].sort()), new Map([...added].sort()), `${what}: daily sums`);
        assert.equal(reader.dailyTotalsOfAll(utcDay(t)).get(utcDay(t))?.requests, 3 + (utcDay(yesterday) === utcDay(t) ? 1 : 0), `${what}: today's requests`);
        const todayOfAll = reader.dailyTotalsOfAll(utcDay(t)).get(utcDay(t));
        assert.equal(todayOfAll?.prompts_run, 2, `${what}: today's jobs`);
        assert.equal(todayOfAll?.execution_seconds, 5.75, `${what}: today's execution seconds`);
        assert.equal(todayOfAll?.outputs, 2, `${what}: today's outputs`);
        const since = t - 2 * 86_400;
        assert.equal(
          reader.requestsOfAllSince(since),
          ['a', 'b', 'c'].reduce((n, k) => n + reader.requestsSince(k, since), 0),
          `${what}: hourly sums`,
        );
        assert.equal(reader.requestsOfAllSince(t - 3600), 3, `${what}: the last hour`);
      };
      check(store, 'recorded');
      await store.flush();
      check(await reopen(), 'after a restart');
    });

    test('close writes what was recorded without a flush', async () => {
      const store = await open();
      const t = now();
      for (let i = 0; i < 50; i += 1) store.record(usage(`k${i % 3}`, t - i));
      const again = await reopen();
      const sum = ['k0', 'k1', 'k2'].reduce((n, k) => n + again.requestsSince(k, t - 3600), 0);
      assert.equal(sum, 50);
    });
  });
}
