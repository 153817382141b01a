// Job quotas as rules: QUEUE_LIMIT at max_queued, EXECUTION_BUDGET_EXCEEDED (with Retry-After to UTC midnight) at the daily budget, max_running for the scheduler.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GatewayError } from '../../src/errors.js';
import { checkAdmission, mayStartAnother } from '../../src/jobs/quotas.js';
import type { KeyQuotas } from '../../src/store/types.js';

const NONE: KeyQuotas = { max_queued: null, max_running: null, daily_execution_seconds: null };
/** 2025-06-01T23:59:00.250Z: 59.75 s before the next UTC midnight. */
const LATE = Date.UTC(2025, 5, 1, 23, 59, 0, 250) / 1000;
/** 2025-06-01T00:00:00Z exactly: a whole day to the next. */
const MIDNIGHT = Date.UTC(2025, 5, 1) / 1000;

/** The GatewayError `checkAdmission` throws, or undefined when it admits. */
function refusal(quotas: Partial<KeyQuotas>, activeJobs: number, budgetSpent: boolean, now = LATE): GatewayError | undefined {
  try {
    checkAdmission({ ...NONE, ...quotas }, { activeJobs: () => activeJobs, budgetSpent: () => budgetSpent }, now);
    return undefined;
  } catch (error) {
    assert.ok(error instanceof GatewayError, String(error));
    return error;
  }
}

describe('checkAdmission', () => {
  test('a key without quotas is admitted however much it uses', () => {
    assert.equal(refusal({}, 1_000_000, true), undefined);
  });

  test('what a key uses is counted only for a quota that reads it', () => {
    const notCounted = (what: string) => (): never => assert.fail(`${what} was counted without a quota that reads it`);
    checkAdmission(NONE, { activeJobs: notCounted('activeJobs'), budgetSpent: notCounted('budgetSpent') }, LATE);
    checkAdmission({ ...NONE, max_queued: 5 }, { activeJobs: () => 4, budgetSpent: notCounted('budgetSpent') }, LATE);
    checkAdmission({ ...NONE, daily_execution_seconds: 60 }, { activeJobs: notCounted('activeJobs'), budgetSpent: () => false }, LATE);
    assert.equal(mayStartAnother({ max_running: null }, notCounted('runningJobs')), true);
  });

  test('max_queued: admitted below it, 429 QUEUE_LIMIT from it on', () => {
    assert.equal(refusal({ max_queued: 3 }, 2, false), undefined);
    for (const active of [3, 4]) {
      const error = refusal({ max_queued: 3 }, active, false);
      assert.equal(error?.status, 429);
      assert.equal(error?.code, 'QUEUE_LIMIT');
      assert.equal(error?.message, 'This key may have at most 3 jobs held, queued or running; wait for one to finish or cancel one.');
      assert.deepEqual(error?.toBody(), { error: error?.message, error_code: 'QUEUE_LIMIT', limit: 3 });
      assert.equal(error?.headers, undefined, 'no Retry-After: when a job ends is not known');
    }
  });

  test('daily_execution_seconds: admitted while some is left, 429 EXECUTION_BUDGET_EXCEEDED once spent, Retry-After to the next UTC midnight', () => {
    assert.equal(refusal({ daily_execution_seconds: 600 }, 0, false), undefined);
    const error = refusal({ daily_execution_seconds: 600 }, 0, true);
    assert.equal(error?.status, 429);
    assert.equal(error?.code, 'EXECUTION_BUDGET_EXCEEDED');
    assert.deepEqual(error?.headers, { 'retry-after': '60' }, '59.75 s to midnight, rounded up');
    assert.deepEqual(error?.toBody(), { error: error?.message, error_code: 'EXECUTION_BUDGET_EXCEEDED', limit: 600, reset_in: 60 });
    assert.match(error?.message ?? '', /600 seconds of ComfyUI execution for today \(UTC\).*in 60 s/);
    assert.deepEqual(refusal({ daily_execution_seconds: 1 }, 0, true, MIDNIGHT)?.headers, { 'retry-after': '86400' }, 'at midnight, the whole next day');
    assert.deepEqual(refusal({ daily_execution_seconds: 1 }, 0, true, MIDNIGHT - 0.001)?.headers, { 'retry-after': '1' }, 'never 0');
  });

  test('a spent budget is reported before a full queue', () => {
    assert.equal(refusal({ max_queued: 1, daily_execution_seconds: 60 }, 1, true)?.code, 'EXECUTION_BUDGET_EXCEEDED');
    assert.equal(refusal({ max_queued: 1, daily_execution_seconds: 60 }, 1, false)?.code, 'QUEUE_LIMIT');
  });

  test('max_running does not refuse an admission: the job waits, held', () => {
    assert.equal(refusal({ max_running: 1 }, 5, false), undefined);
  });
});

describe('mayStartAnother', () => {
  test('below max_running yes, at or above it no; no quota always yes', () => {
    const cases: Array<[number | null, number, boolean]> = [
      [2, 0, true],
      [2, 1, true],
      [2, 2, false],
      [2, 3, false],
      [null, 1_000_000, true],
    ];
    for (const [maxRunning, running, expected] of cases) {
      assert.equal(
        mayStartAnother({ max_running: maxRunning }, () => running),
        expected,
        `max_running ${maxRunning}, ${running} running`,
      );
    }
  });
});
