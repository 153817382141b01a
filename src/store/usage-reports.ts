// The read side every usage store shares: daily totals, hourly counts and the last hour's request times, kept in memory.

import { bucketToTotals, type HourlyByKey, type TotalsByKey } from './file/usage-file.js';
import type { DailyTotals } from './types.js';

/**
 * The report methods of `UsageStore`, answered from memory. A store keeps `totals`, `hourly` and
 * `recentAtOpen` current; how it fills and persists them is its own business.
 */
export abstract class UsageReports {
  protected totals: TotalsByKey = {};
  protected hourly: HourlyByKey = {};
  /** Start times of the requests counted in the hour before the store opened, per key. */
  protected recentAtOpen = new Map<string, number[]>();

  dailyTotals(keyId: string, fromDay: string): Map<string, DailyTotals> {
    const result = new Map<string, DailyTotals>();
    for (const [day, bucket] of Object.entries(this.totals[keyId] ?? {})) {
      if (day >= fromDay) result.set(day, bucketToTotals(bucket));
    }
    return result;
  }

  requestsSince(keyId: string, since: number): number {
    const firstHour = Math.floor(since / 3600);
    let count = 0;
    for (const [hour, n] of Object.entries(this.hourly[keyId] ?? {})) if (Number(hour) >= firstHour) count += n;
    return count;
  }

  keyIds(): string[] {
    return Object.keys(this.totals);
  }

  recentRequestTimes(windowSeconds: number, now: number): Map<string, number[]> {
    const since = now - windowSeconds;
    return new Map([...this.recentAtOpen].map(([keyId, times]) => [keyId, times.filter((t) => t >= since)]));
  }
}
