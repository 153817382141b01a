// daily_execution_seconds on its own: once spent, the key's jobs queued in ComfyUI are taken out of each backend's queue before the running jobs there are interrupted.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DailyBudgets } from '../../src/jobs/daily-budget.js';
import { createLogger } from '../../src/log/logger.js';
import type { JobError, JobRecord, JobStatus, JobStore, KeyRecord } from '../../src/store/types.js';
import { waitFor } from '../helpers/wait-for.js';

const NOW = 1_800_000_000;

function job(id: string, backend: string, status: JobStatus, fields: Partial<JobRecord> = {}): JobRecord {
  return { id, key_id: 'k', status, backend, upstream_id: id, started_at: status === 'running' ? NOW - 10 : null, error: null, ...fields } as JobRecord;
}

/** A key of `budget` seconds a day, none metered yet, over `jobs`; what is sent to ComfyUI is logged in order. */
function budgetsFor(budget: number, jobs: JobRecord[]) {
  const sent: string[] = [];
  /** Per backend, the answer to its delete, released by the test. */
  const deletes = new Map<string, () => void>();
  const budgets = new DailyBudgets({
    jobs: {
      list: ({ keyId, statuses }: { keyId: string; statuses: JobStatus[] }) => jobs.filter((j) => j.key_id === keyId && statuses.includes(j.status)),
      active: (statuses: JobStatus[]) => jobs.filter((j) => statuses.includes(j.status)),
      update: async (id: string, patch: Partial<JobRecord>, options?: { ifStatus?: JobStatus }) => {
        const found = jobs.find((j) => j.id === id);
        if (!found || (options?.ifStatus && found.status !== options.ifStatus)) return undefined;
        return Object.assign(found, patch);
      },
    } as unknown as JobStore,
    keyOf: () => ({ daily_execution_seconds: budget }) as KeyRecord,
    executionSecondsToday: () => 0,
    interrupt: async (j) => {
      sent.push(`interrupt ${j.id} on ${j.backend}`);
    },
    dropQueued: (backend: string, queued: readonly JobRecord[], error: JobError) => {
      sent.push(`delete ${queued.map((j) => j.id).join(',')} on ${backend}`);
      for (const j of queued) j.error = error;
      return new Promise<void>((resolve) => deletes.set(backend, resolve));
    },
    log: createLogger('silent'),
    now: () => NOW,
  });
  return { budgets, sent, deletes };
}

describe('DailyBudgets', () => {
  test("once spent, each backend's queued jobs are deleted there, and its running job is interrupted only once that delete is answered", async () => {
    const jobs = [
      job('running-a', 'a', 'running'),
      job('queued-a1', 'a', 'queued'),
      job('queued-a2', 'a', 'queued'),
      job('queued-b', 'b', 'queued'),
      job('being-sent', 'b', 'queued', { upstream_id: null }),
      job('held', 'a', 'held', { upstream_id: null }),
    ];
    const { budgets, sent, deletes } = budgetsFor(5, jobs);
    budgets.started(jobs[0]!);
    await waitFor(() => sent.length === 2, 'the deletes');
    assert.deepEqual(sent.sort(), ['delete queued-a1,queued-a2 on a', 'delete queued-b on b']);
    assert.equal(budgets.spent('k'), true);
    deletes.get('b')!();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(sent.length, 2, "another backend's delete does not release the interrupt");
    deletes.get('a')!();
    await waitFor(() => sent.length === 3, 'the interrupt');
    assert.equal(sent[2], 'interrupt running-a on a');
    assert.equal(budgets.ended(jobs[0]!)?.exception_type, 'ExecutionBudgetExceeded');
    assert.match(jobs[1]!.error?.message ?? '', /daily_execution_seconds \(5 seconds per UTC day\) was spent before the job started/);

    // Looked at again (a sweep), jobs taken out already are not deleted again.
    budgets.sweep();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(!sent.slice(3).some((line) => line.startsWith('delete')), sent.join('; '));
    budgets.close();
  });

  test('a spent budget with nothing running takes the queued jobs out when the key is metered; one with budget left keeps them', () => {
    const jobs = [job('queued', 'a', 'queued')];
    const left = budgetsFor(5, jobs);
    left.budgets.metered(job('metered', 'a', 'success'));
    assert.deepEqual(left.sent, []);
    assert.equal(left.budgets.spent('k'), false);
    const spent = budgetsFor(0.01, jobs);
    spent.budgets.metered(job('metered', 'a', 'success'));
    assert.deepEqual(spent.sent, ['delete queued on a']);
    left.budgets.close();
    spent.budgets.close();
  });

  test('a job that ended counts until it is metered: its end is in the registry a moment before', () => {
    const ending = job('ending', 'a', 'running');
    const { budgets } = budgetsFor(5, [ending, job('queued', 'a', 'queued')]);
    budgets.ended(ending);
    ending.status = 'interrupted';
    assert.equal(budgets.spent('k'), true, 'its 10 s count while it is not metered');
    budgets.metered(ending);
    assert.equal(budgets.spent('k'), false, 'once metered, the usage counts them (none here)');
    budgets.close();
  });

  test('a job whose POST /prompt was answered after the budget ran out (sent) is taken out of its queue; with budget left it stays', () => {
    // Being sent when the budget ran out, it had no ComfyUI id for the delete; now it has.
    const running = job('running', 'a', 'running');
    const answered = job('answered', 'a', 'queued');
    const spent = budgetsFor(5, [running, answered]);
    spent.budgets.sent(answered);
    assert.deepEqual(spent.sent, ['delete answered on a']);
    const left = budgetsFor(60, [job('running', 'a', 'running'), job('answered', 'a', 'queued')]);
    left.budgets.sent(answered);
    assert.deepEqual(left.sent, []);
    spent.budgets.close();
    left.budgets.close();
  });
});
