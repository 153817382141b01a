// The admin report of every key's usage (`/api/usage/all`), a page of keys at a time, as the parts of a streamed JSON answer.

import type { KeyStore, UsageStore } from '../store/types.js';
import { dailySeries, dailySeriesOfAll } from '../usage/daily-series.js';
import { nextKeyPage, type KeyPage } from '../usage/key-page.js';
import { usageStats, usageStatsOfAll } from '../usage/report.js';

export interface UsageReportQuery {
  days: number;
  /** With the day-by-day series of each key and of all keys. */
  withDaily: boolean;
  limit: number;
  /** The page starts after this key_id; null for the first page. */
  after: string | null;
}

/**
 * The page of keys the report covers: keys in the store and keys deleted since that still have usage,
 * in key_id order.
 */
export function usageReportPage(keys: KeyStore, usage: UsageStore, query: UsageReportQuery): Promise<KeyPage> {
  return nextKeyPage([keys.ids(), usage.keyIds()], query.after, query.limit);
}

/**
 * The JSON text of one page, in parts of about one key each: `usage_stats` (and with `withDaily`,
 * `daily`) of the page's keys, `daily_total` and `total_stats` of every key (from the store's running
 * sums), and `next_cursor`.
 */
export function* usageReportParts(usage: UsageStore, query: UsageReportQuery, page: KeyPage, nowSeconds: number): Generator<string> {
  const { days } = query;
  yield* perKey('usage_stats', page.keyIds, (keyId) => usageStats(usage, keyId, days, nowSeconds), '{');
  if (query.withDaily) {
    yield* perKey('daily', page.keyIds, (keyId) => dailySeries(usage, keyId, days, nowSeconds), ',');
    yield `,"daily_total":${JSON.stringify(dailySeriesOfAll(usage, days, nowSeconds))}`;
  }
  yield `,"total_stats":${JSON.stringify(usageStatsOfAll(usage, days, nowSeconds))},"next_cursor":${JSON.stringify(page.nextCursor)}}`;
}

/** `"name":{"id":value,…}`, one part per key, after `before`. */
function* perKey(name: string, keyIds: string[], valueOf: (keyId: string) => unknown, before: string): Generator<string> {
  yield `${before}${JSON.stringify(name)}:{`;
  for (const [index, keyId] of keyIds.entries()) yield `${index === 0 ? '' : ','}${JSON.stringify(keyId)}:${JSON.stringify(valueOf(keyId))}`;
  yield '}';
}
