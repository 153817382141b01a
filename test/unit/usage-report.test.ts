// Unit tests of usageStats (the reference's usage_stats numbers from daily totals, UTC days and the `days` range) and of the paged report of every key.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import fc from 'fast-check';
import { usageReportParts } from '../../src/server/usage-of-all.js';
import { FileUsageStore } from '../../src/store/file/file-usage-store.js';
import { nextKeyPage } from '../../src/usage/key-page.js';
import { usageStats } from '../../src/usage/report.js';

/** Unix seconds of a UTC date and time. */
const utc = (iso: string): number => Date.parse(`${iso}Z`) / 1000;
const NOW = utc('2024-05-10T12:00:00');
const NO_JOBS = { prompts: 0, prompts_run: 0, execution_seconds: 0, outputs: 0 };

describe('usageStats', () => {
  let dir: string;
  let store: FileUsageStore;

  /** Records one request of `keyId` at a UTC time. */
  function request(keyId: string, iso: string, status = 200, duration = 1): void {
    store.record({ key_id: keyId, endpoint: '/prompt', timestamp: utc(iso), duration, success: status < 400, metadata: { method: 'POST', status } });
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-report-'));
    store = new FileUsageStore({ directory: dir, retentionDays: 30, flushIntervalMs: 60_000 });
    await store.open();
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('totals, successes, failures, durations and their average', () => {
    request('a', '2024-05-10T08:00:00', 200, 1.5);
    request('a', '2024-05-10T09:00:00', 399, 0.25);
    request('a', '2024-05-09T09:00:00', 400, 2.5);
    request('a', '2024-05-08T09:00:00', 500, 0.5);
    request('b', '2024-05-10T09:00:00', 200, 100);
    store.recordRateLimited('a', utc('2024-05-10T10:00:00'));
    assert.deepEqual(usageStats(store, 'a', 30, NOW), {
      total_requests: 4,
      successful_requests: 2,
      failed_requests: 2,
      total_duration: 4.75,
      average_duration: 4.75 / 4,
      requests_per_day: { '2024-05-08': 1, '2024-05-09': 1, '2024-05-10': 2 },
      rate_limited_requests: 1,
      requests_last_24h: 2,
      ...NO_JOBS,
    });
  });

  test('a key without usage has zeros, not NaN', () => {
    store.recordRateLimited('a', utc('2024-05-10T10:00:00'));
    assert.deepEqual(usageStats(store, 'a', 30, NOW), {
      total_requests: 0,
      successful_requests: 0,
      failed_requests: 0,
      total_duration: 0,
      average_duration: 0,
      requests_per_day: {},
      rate_limited_requests: 1,
      requests_last_24h: 0,
      ...NO_JOBS,
    });
    assert.equal(usageStats(store, 'unknown', 30, NOW).average_duration, 0);
  });

  test('prompts, jobs run, execution seconds and outputs add up over the period, apart from requests', () => {
    store.recordPromptAdmitted('a', utc('2024-05-09T23:00:00'));
    store.recordPromptAdmitted('a', utc('2024-05-10T08:00:00'));
    store.recordJobRun('a', utc('2024-05-10T00:10:00'), 90.5, 2);
    store.recordJobRun('a', utc('2024-05-10T09:00:00'), 9.5, 1);
    store.recordJobRun('a', utc('2024-04-01T09:00:00'), 1000, 9);
    store.recordJobRun('b', utc('2024-05-10T09:00:00'), 5, 5);
    const stats = usageStats(store, 'a', 30, NOW);
    assert.deepEqual(
      { prompts: stats.prompts, prompts_run: stats.prompts_run, execution_seconds: stats.execution_seconds, outputs: stats.outputs },
      { prompts: 2, prompts_run: 2, execution_seconds: 100, outputs: 3 },
    );
    assert.equal(stats.total_requests, 0);
    assert.deepEqual(stats.requests_per_day, {}, 'days with only prompts have no requests');
    assert.equal(usageStats(store, 'a', 1, NOW).prompts, 1, 'only the days asked for');
  });

  test('requests are bucketed by UTC day, whatever the local time zone', () => {
    const zone = process.env.TZ;
    process.env.TZ = 'Pacific/Pago_Pago';
    try {
      request('a', '2024-05-09T23:59:59.500');
      request('a', '2024-05-10T00:00:00');
      request('a', '2024-05-10T13:30:00');
      assert.deepEqual(usageStats(store, 'a', 30, NOW).requests_per_day, { '2024-05-09': 1, '2024-05-10': 2 });
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
  });

  test('`days` counts back from today, today included, and leaves older days out', () => {
    request('a', '2024-05-10T00:00:01');
    request('a', '2024-05-09T23:00:00');
    request('a', '2024-05-04T00:00:00');
    request('a', '2024-05-03T23:59:59');
    request('a', '2024-04-01T12:00:00');
    const perDay = (days: number): Record<string, number> => usageStats(store, 'a', days, NOW).requests_per_day;
    assert.deepEqual(perDay(1), { '2024-05-10': 1 });
    assert.deepEqual(perDay(2), { '2024-05-09': 1, '2024-05-10': 1 });
    assert.deepEqual(perDay(7), { '2024-05-04': 1, '2024-05-09': 1, '2024-05-10': 1 });
    assert.equal(usageStats(store, 'a', 7, NOW).total_requests, 3);
    assert.equal(usageStats(store, 'a', 8, NOW).total_requests, 4);
    assert.equal(usageStats(store, 'a', 365, NOW).total_requests, 5);
  });
});

describe('pages of keys', () => {
  /** Every page from the first, following next_cursor. */
  async function allPages(sources: string[][], limit: number): Promise<string[][]> {
    const pages: string[][] = [];
    let after: string | null = null;
    for (let guard = 0; guard < 10_000; guard += 1) {
      const page = await nextKeyPage(sources, after, limit);
      pages.push(page.keyIds);
      if (page.nextCursor === null) return pages;
      assert.equal(page.nextCursor, page.keyIds.at(-1), 'the cursor is the last id of a page that has more after it');
      after = page.nextCursor;
    }
    throw new Error('the pages never end');
  }

  test('every id once, in code-unit order, whatever the sources repeat', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.string({ maxLength: 4 }), { maxLength: 40 }), { maxLength: 3 }),
        fc.integer({ min: 1, max: 7 }),
        async (sources, limit) => {
          const expected = [...new Set(sources.flat())].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
          const pages = await allPages(sources, limit);
          assert.deepEqual(pages.flat(), expected);
          assert.ok(pages.every((page) => page.length <= limit));
          assert.ok(
            pages.slice(0, -1).every((page) => page.length === limit),
            'only the last page is short',
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a page ends the list exactly when nothing follows it', async () => {
    assert.deepEqual(
      await nextKeyPage(
        [
          ['b', 'a'],
          ['a', 'c'],
        ],
        null,
        3,
      ),
      { keyIds: ['a', 'b', 'c'], nextCursor: null },
    );
    assert.deepEqual(
      await nextKeyPage(
        [
          ['b', 'a'],
          ['a', 'c'],
        ],
        null,
        2,
      ),
      { keyIds: ['a', 'b'], nextCursor: 'b' },
    );
    assert.deepEqual(await nextKeyPage([['b', 'a', 'c']], 'b', 2), { keyIds: ['c'], nextCursor: null });
    assert.deepEqual(await nextKeyPage([['b', 'a']], 'zz', 2), { keyIds: [], nextCursor: null });
    assert.deepEqual(await nextKeyPage([['b', 'a']], 'a0', 5), { keyIds: ['b'], nextCursor: null }, 'a cursor need not be a key that still exists');
  });

  test('a pass over many ids lets the event loop run', async () => {
    const ids = Array.from({ length: 100_000 }, (_, i) => `key-${(i * 7919) % 100_000}`);
    let turned = false;
    setImmediate(() => {
      turned = true;
    });
    const page = await nextKeyPage([ids], null, 3);
    assert.deepEqual(page.keyIds, ['key-0', 'key-1', 'key-10']);
    assert.ok(turned, 'other work ran during the pass');
  });
});

describe('the report of every key', () => {
  let dir: string;
  let store: FileUsageStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-report-all-'));
    store = new FileUsageStore({ directory: dir, retentionDays: 30, flushIntervalMs: 60_000 });
    await store.open();
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("one page's keys, with the totals of every key", () => {
    for (const [keyId, n] of [
      ['a', 1],
      ['b', 2],
      ['c', 4],
    ] as const) {
      for (let i = 0; i < n; i += 1)
        store.record({
          key_id: keyId,
          endpoint: '/prompt',
          timestamp: NOW - 60 * (i + 1),
          duration: 1,
          success: true,
          metadata: { method: 'POST', status: 200 },
        });
    }
    const query = { days: 2, withDaily: true, limit: 2, after: null };
    const body = JSON.parse([...usageReportParts(store, query, { keyIds: ['a', 'b'], nextCursor: 'b' }, NOW)].join('')) as {
      usage_stats: Record<string, { total_requests: number }>;
      daily: Record<string, Array<{ requests: number }>>;
      daily_total: Array<{ date: string; requests: number }>;
      total_stats: { total_requests: number; requests_last_24h: number };
      next_cursor: string | null;
    };
    assert.deepEqual(Object.keys(body.usage_stats), ['a', 'b']);
    assert.deepEqual([body.usage_stats.a!.total_requests, body.usage_stats.b!.total_requests], [1, 2]);
    assert.deepEqual(Object.keys(body.daily), ['a', 'b']);
    assert.deepEqual(
      body.daily_total.map((point) => [point.date, point.requests]),
      [
        ['2024-05-09', 0],
        ['2024-05-10', 7],
      ],
      'every key, not only the page',
    );
    assert.deepEqual([body.total_stats.total_requests, body.total_stats.requests_last_24h], [7, 7]);
    assert.equal(body.next_cursor, 'b');
    const plain = JSON.parse([...usageReportParts(store, { ...query, withDaily: false }, { keyIds: [], nextCursor: null }, NOW)].join('')) as Record<
      string,
      unknown
    >;
    assert.deepEqual(Object.keys(plain), ['usage_stats', 'total_stats', 'next_cursor']);
  });

  test('job metering in the series of each key, of every key, and in the totals', () => {
    store.recordPromptAdmitted('a', NOW - 86_400);
    store.recordJobRun('a', NOW - 60, 30, 2);
    store.recordJobRun('z', NOW - 60, 12.5, 1);
    const query = { days: 2, withDaily: true, limit: 1, after: null };
    const body = JSON.parse([...usageReportParts(store, query, { keyIds: ['a'], nextCursor: 'a' }, NOW)].join('')) as {
      usage_stats: Record<string, { prompts: number; execution_seconds: number }>;
      daily: Record<string, Array<Record<string, number | string>>>;
      daily_total: Array<Record<string, number | string>>;
      total_stats: { prompts_run: number; execution_seconds: number; outputs: number };
    };
    const jobsOf = (point: Record<string, number | string>): unknown[] => [
      point.date,
      point.prompts,
      point.prompts_run,
      point.execution_seconds,
      point.outputs,
    ];
    assert.deepEqual(body.daily.a!.map(jobsOf), [
      ['2024-05-09', 1, 0, 0, 0],
      ['2024-05-10', 0, 1, 30, 2],
    ]);
    assert.deepEqual(body.daily_total.map(jobsOf), [
      ['2024-05-09', 1, 0, 0, 0],
      ['2024-05-10', 0, 2, 42.5, 3],
    ]);
    assert.deepEqual([body.usage_stats.a!.prompts, body.usage_stats.a!.execution_seconds], [1, 30]);
    assert.deepEqual(body.total_stats.prompts_run, 2);
    assert.deepEqual(body.total_stats.execution_seconds, 42.5);
    assert.deepEqual(body.total_stats.outputs, 3);
  });
});
