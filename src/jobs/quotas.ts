// A key's job quotas as rules: may it have one more job admitted, may one more of its jobs start running.

import { executionBudgetExceeded, queueLimit } from '../errors.js';
import type { KeyQuotas } from '../store/types.js';
import { secondsUntilNextUtcDay } from '../usage/day.js';

/**
 * What a key uses at the moment of an admission, as the job registry counts it. Each is counted only
 * when a quota reads it: counting looks at every admission and send under way.
 */
export interface KeyJobUsage {
  /** The key's jobs held, queued or running. */
  activeJobs(): number;
  /**
   * Whether the key's `daily_execution_seconds` is spent: the ComfyUI execution seconds of its jobs metered in
   * the current UTC day, and those its running jobs have run so far, reach it (see DailyBudgets.spent).
   */
  budgetSpent(): boolean;
}

/**
 * Refuses a new job of a key that is at one of its quotas; returns when it may be admitted. Quotas apply
 * to every role (an admin key has none unless one is set); a null quota is no limit. A spent daily budget
 * is reported before a full queue, since waiting for a job to finish would not help.
 * @param now Unix seconds.
 * @throws GatewayError 429 EXECUTION_BUDGET_EXCEEDED when the key has a `daily_execution_seconds` and
 *   `budgetSpent` (Retry-After: seconds to the next UTC midnight), or 429 QUEUE_LIMIT when `activeJobs`
 *   has reached `max_queued`.
 */
export function checkAdmission(key: Pick<KeyQuotas, 'max_queued' | 'daily_execution_seconds'>, usage: KeyJobUsage, now: number): void {
  const budget = key.daily_execution_seconds;
  if (budget !== null && usage.budgetSpent()) throw executionBudgetExceeded(secondsUntilNextUtcDay(now), budget);
  if (key.max_queued !== null && usage.activeJobs() >= key.max_queued) throw queueLimit(key.max_queued);
}

/** True when one more job of the key may start running, with `runningJobs()` of its jobs running now across every backend (counted only under a quota). */
export function mayStartAnother(key: Pick<KeyQuotas, 'max_running'>, runningJobs: () => number): boolean {
  return key.max_running === null || runningJobs() < key.max_running;
}
