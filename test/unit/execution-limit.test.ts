// max_execution_seconds on its own: a running job past its key's limit is interrupted once and reported; a job that ends in time, or has no limit, is left alone.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../src/log/logger.js';
import { ExecutionLimits } from '../../src/policy/execution-limit.js';
import type { PromptPolicy } from '../../src/policy/schema.js';
import type { JobRecord, JobStatus, JobStore, KeyRecord } from '../../src/store/types.js';
import { waitFor } from '../helpers/wait-for.js';

const NOW = 1_800_000_000;

function job(id: string, keyId: string, status: JobStatus, ranSeconds: number): JobRecord {
  return { id, key_id: keyId, status, started_at: NOW - ranSeconds, backend: 'default', upstream_id: id } as JobRecord;
}

function limitsFor(keys: Record<string, Pick<KeyRecord, 'role' | 'policy'>>, jobs: JobRecord[], defaultPolicy: PromptPolicy | null = null) {
  const interrupted: string[] = [];
  const limits = new ExecutionLimits({
    jobs: {
      get: (id: string) => jobs.find((j) => j.id === id),
      active: () => jobs.filter((j) => j.status === 'held' || j.status === 'queued' || j.status === 'running'),
      update: async (id: string, patch: Partial<JobRecord>, options?: { ifStatus?: JobStatus }) => {
        const found = jobs.find((j) => j.id === id);
        if (!found || (options?.ifStatus && found.status !== options.ifStatus)) return undefined;
        return Object.assign(found, patch);
      },
    } as unknown as JobStore,
    keyOf: (keyId) => keys[keyId] as KeyRecord | undefined,
    defaultPolicy,
    interrupt: async (j) => {
      interrupted.push(j.id);
    },
    log: createLogger('silent'),
    now: () => NOW,
  });
  return { limits, interrupted };
}

describe('ExecutionLimits', () => {
  test('a job running past its limit is interrupted once, and its end is reported as the policy error', async () => {
    const running = job('a', 'k', 'running', 0.95);
    const { limits, interrupted } = limitsFor({ k: { role: 'user', policy: { max_execution_seconds: 1 } } }, [running]);
    limits.started(running);
    limits.started(running);
    await waitFor(() => interrupted.length > 0, 'the interrupt', 2000);
    assert.deepEqual(interrupted, ['a'], 'one interrupt, though told twice of the start');
    const error = limits.ended(running);
    assert.equal(error?.exception_type, 'ExecutionTimeLimit');
    assert.match(error?.message ?? '', /longer than the 1 seconds .*max_execution_seconds/);
    limits.close();
  });

  test('a job that ends in time, one no longer running, and one without a limit are not interrupted', async () => {
    const inTime = job('in-time', 'k', 'running', 0.95);
    const lost = job('lost', 'k', 'error', 0.95);
    const free = job('free', 'admin', 'running', 5);
    const { limits, interrupted } = limitsFor(
      { k: { role: 'user', policy: { max_execution_seconds: 1 } }, admin: { role: 'admin', policy: null } },
      [inTime, lost, free],
      { max_execution_seconds: 1 },
    );
    for (const j of [inTime, lost, free]) limits.started(j);
    assert.equal(limits.ended(inTime), undefined);
    // Past every timer (50 ms), with room to spare.
    await sleep(300);
    assert.deepEqual(interrupted, [], 'the admin key is not held to the default policy, and the lost job is not running');
    limits.close();
  });

  test('the default policy times a user key without a policy of its own', async () => {
    const running = job('d', 'u', 'running', 0.95);
    const { limits, interrupted } = limitsFor({ u: { role: 'user', policy: null } }, [running], { max_execution_seconds: 1 });
    limits.started(running);
    await waitFor(() => interrupted.length > 0, 'the interrupt', 2000);
    assert.ok(limits.ended(running));
    limits.close();
  });

  test('the reason is written into the job, so another replica, or this one after a restart, records the end as the policy error', async () => {
    const running = job('r', 'k', 'running', 0.95);
    const keys = { k: { role: 'user' as const, policy: { max_execution_seconds: 1 } } };
    const first = limitsFor(keys, [running]);
    first.limits.started(running);
    await waitFor(() => first.interrupted.length > 0, 'the interrupt', 2000);
    assert.equal(running.error?.exception_type, 'ExecutionTimeLimit', 'written before the interrupt');
    first.limits.close();
    const other = limitsFor(keys, [running]);
    assert.equal(other.limits.ended(running)?.exception_type, 'ExecutionTimeLimit');
    other.limits.close();
  });

  test('start arms the timers of jobs already running (started before a restart or on another replica)', async () => {
    const overdue = job('o', 'k', 'running', 5);
    const queued = job('q', 'k', 'queued', 5);
    const { limits, interrupted } = limitsFor({ k: { role: 'user', policy: { max_execution_seconds: 1 } } }, [overdue, queued]);
    limits.start();
    await waitFor(() => interrupted.length > 0, 'the interrupt', 2000);
    assert.deepEqual(interrupted, ['o'], 'the running job past its limit, not the queued one');
    limits.close();
  });
});
