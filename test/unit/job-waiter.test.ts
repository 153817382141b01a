// Unit tests of JobWaiter: woken by local writes and by other replicas' changes, and never left behind on timeout, abort or close.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JobWaiter, notifyingJobStore } from '../../src/jobs/job-waiter.js';
import type { JobRecord, JobStatus, JobStore } from '../../src/store/types.js';
import { jobRecord } from '../helpers/job-record.js';

function job(id: string, status: JobStatus): JobRecord {
  return jobRecord(id, { status });
}

/** A registry in a Map: enough of a JobStore for the waiter and the notifying wrapper. */
function mapStore(jobs: Map<string, JobRecord>): JobStore {
  const unused = (): never => assert.fail('not used');
  return {
    open: async () => undefined,
    get: (id) => jobs.get(id),
    byUpstreamId: unused,
    sentTo: unused,
    producerOf: unused,
    outputPrefixes: unused,
    list: unused,
    count: unused,
    active: unused,
    heldPage: unused,
    create: async (created) => {
      if (jobs.has(created.id)) return false;
      jobs.set(created.id, created);
      return true;
    },
    update: async (id, patch) => {
      const current = jobs.get(id);
      if (!current) return undefined;
      const next = { ...current, ...patch };
      jobs.set(id, next);
      return next;
    },
    close: async () => undefined,
  };
}

describe('JobWaiter', () => {
  test('a local write that ends the job wakes its waiters; one that does not leaves them waiting', async () => {
    const registry = new Map([['a', job('a', 'queued')]]);
    const waiter = new JobWaiter(mapStore(registry));
    const store = notifyingJobStore(mapStore(registry), (changed) => waiter.changed(changed));
    const first = waiter.wait('a', 10_000);
    const second = waiter.wait('a', 10_000);
    await store.update('a', { status: 'running' });
    assert.equal(waiter.size, 2, 'still waiting while it runs');
    await store.update('a', { status: 'success' });
    assert.equal((await first)?.status, 'success');
    assert.equal((await second)?.status, 'success');
    assert.equal(waiter.size, 0);
  });

  test('a job that has ended already resolves at once', async () => {
    const waiter = new JobWaiter(mapStore(new Map([['a', job('a', 'error')]])));
    assert.equal((await waiter.wait('a', 10_000))?.status, 'error');
    assert.equal(waiter.size, 0);
  });

  test("other replicas' changes are read from the registry", async () => {
    const registry = new Map([['a', job('a', 'running')]]);
    const waiter = new JobWaiter(mapStore(registry));
    const waiting = waiter.wait('a', 10_000);
    waiter.changedElsewhere();
    assert.equal(waiter.size, 1);
    registry.set('a', job('a', 'interrupted'));
    waiter.changedElsewhere();
    assert.equal((await waiting)?.status, 'interrupted');
  });

  test('a timeout, an abort and close each resolve undefined and remove the waiter', async () => {
    const waiter = new JobWaiter(mapStore(new Map([['a', job('a', 'held')]])));
    const started = Date.now();
    assert.equal(await waiter.wait('a', 30), undefined);
    assert.ok(Date.now() - started >= 25);
    assert.equal(waiter.size, 0);
    const abort = new AbortController();
    const aborted = waiter.wait('a', 60_000, abort.signal);
    abort.abort();
    assert.equal(await aborted, undefined);
    assert.equal(waiter.size, 0);
    const closing = waiter.wait('a', 60_000);
    waiter.close();
    assert.equal(await closing, undefined);
    assert.equal(waiter.size, 0);
  });
});
