// UTC calendar days as `YYYY-MM-DD`, the key of every daily usage bucket.

const DAY_SECONDS = 86_400;
let cachedStart = 0;
let cachedDay = '1970-01-01';

/** The UTC day of a Unix time in seconds; cheap when called again for the same day. */
export function utcDay(unixSeconds: number): string {
  if (unixSeconds >= cachedStart && unixSeconds < cachedStart + DAY_SECONDS) return cachedDay;
  const start = Math.floor(unixSeconds / DAY_SECONDS) * DAY_SECONDS;
  const day = new Date(start * 1000).toISOString().slice(0, 10);
  cachedStart = start;
  cachedDay = day;
  return day;
}

/** The first UTC day of a range of `days` days that ends today. */
export function firstDayOf(days: number, nowSeconds: number): string {
  return utcDay(nowSeconds - (days - 1) * DAY_SECONDS);
}

/** Whole seconds from a Unix time to the start of the next UTC day (at least 1). */
export function secondsUntilNextUtcDay(unixSeconds: number): number {
  const next = (Math.floor(unixSeconds / DAY_SECONDS) + 1) * DAY_SECONDS;
  return Math.max(1, Math.ceil(next - unixSeconds));
}
