// Usage per UTC day as a gap-free series, for charts and billing exports.

import { DAILY_TOTALS_FIELDS, type DailyTotals, type UsageStore } from '../store/types.js';
import { firstDayOf, utcDay } from './day.js';

export interface DailyPoint extends DailyTotals {
  date: string;
}

const DAY_SECONDS = 86_400;

/** The totals of a day without any use. */
function zeroTotals(): DailyTotals {
  return { requests: 0, successes: 0, failures: 0, duration: 0, rate_limited: 0, prompts: 0, prompts_run: 0, execution_seconds: 0, outputs: 0 };
}

/** Every UTC day of the last `days` days (today included), oldest first, with zeros for quiet days. */
export function dailySeries(store: UsageStore, keyId: string, days: number, nowSeconds: number): DailyPoint[] {
  return seriesOf(store.dailyTotals(keyId, firstDayOf(days, nowSeconds)), days, nowSeconds);
}

/** `dailySeries` of every key together, from the store's running sums. */
export function dailySeriesOfAll(store: UsageStore, days: number, nowSeconds: number): DailyPoint[] {
  return seriesOf(store.dailyTotalsOfAll(firstDayOf(days, nowSeconds)), days, nowSeconds);
}

function seriesOf(totals: Map<string, DailyTotals>, days: number, nowSeconds: number): DailyPoint[] {
  const series: DailyPoint[] = [];
  for (let i = days - 1; i >= 0; i -= 1) {
    const date = utcDay(nowSeconds - i * DAY_SECONDS);
    series.push({ date, ...(totals.get(date) ?? zeroTotals()) });
  }
  return series;
}

/** The sum of several keys' series, day by day. */
export function sumSeries(series: DailyPoint[][], days: number, nowSeconds: number): DailyPoint[] {
  const sum: DailyPoint[] = [];
  for (let i = days - 1; i >= 0; i -= 1) sum.push({ date: utcDay(nowSeconds - i * DAY_SECONDS), ...zeroTotals() });
  for (const one of series) {
    one.forEach((point, index) => {
      const total = sum[index]!;
      for (const field of DAILY_TOTALS_FIELDS) total[field] += point[field];
    });
  }
  return sum;
}
