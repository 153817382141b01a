// Unit tests of usageStats: the reference's usage_stats numbers from daily totals, UTC days and the `days` range.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { FileUsageStore } from '../../src/store/file/file-usage-store.js';
import { usageStats } from '../../src/usage/report.js';

/** Unix seconds of a UTC date and time. */
const utc = (iso: string): number => Date.parse(`${iso}Z`) / 1000;
const NOW = utc('2024-05-10T12:00:00');

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
    });
    assert.equal(usageStats(store, 'unknown', 30, NOW).average_duration, 0);
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
