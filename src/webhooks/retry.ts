// When a failed webhook delivery is tried again, and when it is given up.

/** The delay before the first retry, in seconds (`--webhook-retry-base`); every delay of the schedule scales with it. */
export const DEFAULT_RETRY_BASE_SECONDS = 10;
/** The longest delay between two tries, in units of the base: 360 × 10 s = 1 hour. */
const MAX_DELAY_BASES = 360;
/** How long after its creation a delivery is given up, in units of the base: 8640 × 10 s = 24 hours. */
const GIVE_UP_BASES = 8640;

/** How long a delivery is tried, in seconds, for a retry base: a job that ended longer ago than this needs no event any more. */
export function deliveryLifetimeSeconds(baseSeconds: number): number {
  return baseSeconds * GIVE_UP_BASES;
}

/**
 * When the delivery is tried next after its `failedAttempts`-th failure at `now`: `base × 2^(n−1)`
 * seconds later, at most `360 × base`; null (give up: `failed`) once that would be past
 * `created_at + 8640 × base`. With the default base: 10 s, 20 s, 40 s, … 1 h, 1 h, … for 24 hours.
 */
export function nextAttemptAt(createdAt: number, failedAttempts: number, now: number, baseSeconds: number): number | null {
  const delay = Math.min(baseSeconds * 2 ** Math.min(failedAttempts - 1, 30), baseSeconds * MAX_DELAY_BASES);
  const next = now + delay;
  return next > createdAt + deliveryLifetimeSeconds(baseSeconds) ? null : next;
}
