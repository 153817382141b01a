// The read side every usage store shares: daily totals, hourly counts and the last hour's request times, kept in memory with running sums over all keys.

import {
  addToHourly,
  BUCKET_SIZE,
  bucketOfEntry,
  bucketToTotals,
  emptyBucket,
  isUsageRecord,
  type CountedEntry,
  type DayBucket,
  type HourlyByKey,
  type TotalsByKey,
  type UsageJournalEntry,
} from './file/usage-file.js';
import type { DailyTotals } from './types.js';
import { utcDay } from '../usage/day.js';

/**
 * The report methods of `UsageStore`, answered from memory. A store changes the counts only through
 * the protected methods here, which also keep the sums over all keys current, so a report of every
 * key's totals never has to visit every key.
 */
export abstract class UsageReports {
  private totals: TotalsByKey = {};
  private hourly: HourlyByKey = {};
  /** Per UTC day, the sum of every key's bucket. */
  private totalsOfAll: Record<string, DayBucket> = {};
  /** Per hour since the epoch, the sum of every key's count. */
  private hourlyOfAll: Record<string, number> = {};
  /** Start times of the requests counted in the hour before the store opened, per key. */
  protected recentAtOpen = new Map<string, number[]>();

  dailyTotals(keyId: string, fromDay: string): Map<string, DailyTotals> {
    return bucketsFrom(this.totals[keyId] ?? {}, fromDay);
  }

  dailyTotalsOfAll(fromDay: string): Map<string, DailyTotals> {
    return bucketsFrom(this.totalsOfAll, fromDay);
  }

  requestsSince(keyId: string, since: number): number {
    return countSince(this.hourly[keyId] ?? {}, since);
  }

  requestsOfAllSince(since: number): number {
    return countSince(this.hourlyOfAll, since);
  }

  keyIds(): string[] {
    return Object.keys(this.totals);
  }

  recentRequestTimes(windowSeconds: number, now: number): Map<string, number[]> {
    const since = now - windowSeconds;
    return new Map([...this.recentAtOpen].map(([keyId, times]) => [keyId, times.filter((t) => t >= since)]));
  }

  /** Replaces every count (taken over, not copied), as when a store loads. */
  protected replaceCounts(totals: TotalsByKey, hourly: HourlyByKey): void {
    this.totals = totals;
    this.hourly = hourly;
    this.totalsOfAll = {};
    this.hourlyOfAll = {};
    for (const byDay of Object.values(totals)) for (const [day, bucket] of Object.entries(byDay)) addBucket(this.totalsOfAll, day, bucket, 1);
    for (const byHour of Object.values(hourly))
      for (const [hour, count] of Object.entries(byHour)) this.hourlyOfAll[hour] = (this.hourlyOfAll[hour] ?? 0) + count;
  }

  /** Counts a request (in its day and hour), or a 429, an admitted prompt or a job that ran (in its day only). */
  protected countEntry(entry: CountedEntry): void {
    const day = utcDay(entry.timestamp);
    const added = bucketOfEntry(entry);
    addBucket((this.totals[entry.key_id] ??= {}), day, added, 1);
    addBucket(this.totalsOfAll, day, added, 1);
    this.countHour(entry);
  }

  /** Counts a request in its hour only (its day is already counted); a 429 is not counted. */
  protected countHour(entry: UsageJournalEntry): void {
    if (!isUsageRecord(entry)) return;
    addToHourly(this.hourly, entry);
    const hour = String(Math.floor(entry.timestamp / 3600));
    this.hourlyOfAll[hour] = (this.hourlyOfAll[hour] ?? 0) + 1;
  }

  /** Sets one key's bucket for a day, as read from a database that other writers share. */
  protected setDayBucket(keyId: string, day: string, bucket: DayBucket): void {
    const byDay = (this.totals[keyId] ??= {});
    const previous = byDay[day];
    if (previous) addBucket(this.totalsOfAll, day, previous, -1);
    byDay[day] = bucket;
    addBucket(this.totalsOfAll, day, bucket, 1);
  }

  /** Sets one key's count for an hour (hours since the epoch), as read from a shared database. */
  protected setHourCount(keyId: string, hour: string, count: number): void {
    const byHour = (this.hourly[keyId] ??= {});
    this.hourlyOfAll[hour] = (this.hourlyOfAll[hour] ?? 0) - (byHour[hour] ?? 0) + count;
    byHour[hour] = count;
  }

  /** Forgets the hourly counts before `since` (Unix seconds). */
  protected dropHoursBefore(since: number): void {
    const oldestHour = Math.floor(since / 3600);
    for (const [keyId, byHour] of Object.entries(this.hourly)) {
      for (const hour of Object.keys(byHour)) if (Number(hour) < oldestHour) delete byHour[hour];
      if (Object.keys(byHour).length === 0) delete this.hourly[keyId];
    }
    for (const hour of Object.keys(this.hourlyOfAll)) if (Number(hour) < oldestHour) delete this.hourlyOfAll[hour];
  }
}

function bucketsFrom(byDay: Record<string, DayBucket>, fromDay: string): Map<string, DailyTotals> {
  const result = new Map<string, DailyTotals>();
  for (const [day, bucket] of Object.entries(byDay)) if (day >= fromDay) result.set(day, bucketToTotals(bucket));
  return result;
}

function countSince(byHour: Record<string, number>, since: number): number {
  const firstHour = Math.floor(since / 3600);
  let count = 0;
  for (const [hour, n] of Object.entries(byHour)) if (Number(hour) >= firstHour) count += n;
  return count;
}

function addBucket(into: Record<string, DayBucket>, day: string, bucket: DayBucket, sign: 1 | -1): void {
  const sum = (into[day] ??= emptyBucket());
  for (let i = 0; i < BUCKET_SIZE; i += 1) sum[i]! += sign * bucket[i]!;
}
