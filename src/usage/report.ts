// The reference's `usage_stats` object, computed from daily totals.

import type { DailyTotals, UsageStore } from '../store/types.js';
import { firstDayOf } from './day.js';

export interface UsageStats {
  total_requests: number;
  successful_requests: number;
  failed_requests: number;
  total_duration: number;
  average_duration: number;
  /** Counted requests per UTC day (`YYYY-MM-DD`), days without requests omitted. */
  requests_per_day: Record<string, number>;
  /** Requests refused with 429 in the period (not part of total_requests). */
  rate_limited_requests: number;
  /** Counted requests in the last 24 hours (to the hour), whatever the period. */
  requests_last_24h: number;
  /** Prompts admitted in the period. */
  prompts: number;
  /** Jobs that ran, counted on the day they finished. */
  prompts_run: number;
  /** Seconds those jobs spent executing. */
  execution_seconds: number;
  /** Files those jobs produced. */
  outputs: number;
}

/** A key's usage over the last `days` UTC days, today included. */
export function usageStats(store: UsageStore, keyId: string, days: number, nowSeconds: number): UsageStats {
  return statsOf(store.dailyTotals(keyId, firstDayOf(days, nowSeconds)), store.requestsSince(keyId, nowSeconds - 86_400));
}

/** Every key's usage together over the last `days` UTC days, from the store's running sums. */
export function usageStatsOfAll(store: UsageStore, days: number, nowSeconds: number): UsageStats {
  return statsOf(store.dailyTotalsOfAll(firstDayOf(days, nowSeconds)), store.requestsOfAllSince(nowSeconds - 86_400));
}

function statsOf(daily: Map<string, DailyTotals>, requestsLast24h: number): UsageStats {
  const stats: UsageStats = {
    total_requests: 0,
    successful_requests: 0,
    failed_requests: 0,
    total_duration: 0,
    average_duration: 0,
    requests_per_day: {},
    rate_limited_requests: 0,
    requests_last_24h: requestsLast24h,
    prompts: 0,
    prompts_run: 0,
    execution_seconds: 0,
    outputs: 0,
  };
  const byDay = [...daily].sort(([a], [b]) => a.localeCompare(b));
  for (const [day, totals] of byDay) {
    stats.total_requests += totals.requests;
    stats.successful_requests += totals.successes;
    stats.failed_requests += totals.failures;
    stats.total_duration += totals.duration;
    stats.rate_limited_requests += totals.rate_limited;
    stats.prompts += totals.prompts;
    stats.prompts_run += totals.prompts_run;
    stats.execution_seconds += totals.execution_seconds;
    stats.outputs += totals.outputs;
    if (totals.requests > 0) stats.requests_per_day[day] = totals.requests;
  }
  stats.average_duration = stats.total_requests > 0 ? stats.total_duration / stats.total_requests : 0;
  return stats;
}
