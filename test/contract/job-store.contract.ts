// The JobStore contract: ids taken once, updates, lookups by ComfyUI's id, pages newest first by key and status, active jobs, restarts, retention, replicas.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { JobRecord, JobStatus, JobStore } from '../../src/store/types.js';
import { isSkipped, lifecycle, waitFor, type HarnessOrSkip } from './harness.js';
import { jobRecord } from '../helpers/job-record.js';

/** The retention each store of the suite must be opened with: an hour, looked at every 50 ms, so the suite can watch it. */
export const CONTRACT_JOB_RETENTION = { retentionSeconds: 3600, sweepIntervalMs: 50 };

const NOW = Date.now() / 1000;

/** A job admitted `ago` seconds before the suite started. */
function job(id: string, keyId: string, ago: number, fields: Partial<JobRecord> = {}): JobRecord {
  return jobRecord(id, { key_id: keyId, upstream_id: null, admitted_at: NOW - ago + 0.125, forwarded_at: null, ...fields });
}

/** A held job's body, longer than one PostgreSQL notification can carry. */
function heldRequest(): Record<string, unknown> {
  const prompt: Record<string, unknown> = {};
  for (let i = 0; i < 200; i += 1) prompt[String(i)] = { class_type: 'CLIPTextEncode', inputs: { text: `a prompt of node ${i} ✓ "quoted"`, clip: ['4', 1] } };
  return { prompt, client_id: 'gateway-client', extra_data: { extra_pnginfo: { note: 'x'.repeat(2000) } } };
}

const ids = (jobs: JobRecord[]): string[] => jobs.map((j) => j.id);

/** Runs the JobStore contract against one adapter, whose stores are opened with `CONTRACT_JOB_RETENTION`. */
export function jobStoreContract(name: string, harness: HarnessOrSkip<JobStore>): void {
  if (isSkipped(harness)) {
    describe(`${name} (JobStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (JobStore contract)`, () => {
    const { open, reopen } = lifecycle(harness);

    test('a job is created once: a second create with its id is refused and changes nothing', async () => {
      const store = await open();
      const first = job('j1', 'alice', 10, { client_id: 'c-1', front: true });
      assert.equal(store.get('j1'), undefined);
      assert.equal(await store.create(first), true);
      assert.deepEqual(store.get('j1'), first);
      assert.equal(await store.create(job('j1', 'bob', 5, { status: 'held' })), false);
      assert.deepEqual(store.get('j1'), first, 'the first job is kept');
      assert.equal(store.count({}), 1);
      assert.deepEqual((await reopen()).get('j1'), first, 'and so it is after a restart');
    });

    test('update applies a patch and resolves the job; an unknown id resolves undefined', async () => {
      const store = await open();
      await store.create(job('j1', 'alice', 10));
      const outputs = [{ node: '9', filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }];
      const updated = await store.update('j1', {
        status: 'success',
        upstream_id: 'j1',
        started_at: NOW - 5,
        finished_at: NOW - 1,
        execution_seconds: 4,
        outputs,
      });
      assert.deepEqual(updated, {
        ...job('j1', 'alice', 10),
        status: 'success',
        upstream_id: 'j1',
        started_at: NOW - 5,
        finished_at: NOW - 1,
        execution_seconds: 4,
        outputs,
      });
      assert.deepEqual(store.get('j1'), updated);
      const failed = await store.update('j1', { error: { message: 'boom', node_id: '3', node_type: 'KSampler', exception_type: 'RuntimeError' } });
      assert.equal(failed?.status, 'success', 'fields not in the patch are kept');
      assert.equal(failed?.error?.node_type, 'KSampler');
      assert.equal(failed?.sends, undefined, 'never sent: no count');
      const sent = await store.update('j1', { sends: 2 });
      assert.deepEqual(sent, { ...failed, sends: 2 });
      assert.equal(await store.update('missing', { status: 'error' }), undefined);
      assert.equal(store.get('missing'), undefined);
      assert.deepEqual((await reopen()).get('j1'), sent);
    });

    test('an update with ifStatus applies only while the job has that status', async () => {
      const store = await open();
      await store.create(job('h1', 'alice', 10, { status: 'held' }));
      const taken = await store.update('h1', { status: 'queued' }, { ifStatus: 'held' });
      assert.equal(taken?.status, 'queued');
      assert.equal(await store.update('h1', { status: 'cancelled' }, { ifStatus: 'held' }), undefined, 'no longer held: refused');
      assert.equal(store.get('h1')?.status, 'queued', 'and nothing changed');
      const [first, second] = await Promise.all([
        store.update('h1', { status: 'running' }, { ifStatus: 'queued' }),
        store.update('h1', { status: 'cancelled' }, { ifStatus: 'queued' }),
      ]);
      assert.equal([first, second].filter((result) => result !== undefined).length, 1, 'of two callers, exactly one wins');
      assert.deepEqual((await reopen()).get('h1')?.status, (first ?? second)!.status);
    });

    test("byUpstreamId finds a job by ComfyUI's id on its backend, whether or not that is the job's own id", async () => {
      const store = await open();
      // Sent at once: created under the id ComfyUI answered with.
      const sent = job('comfy-1', 'alice', 30, { status: 'queued', upstream_id: 'comfy-1', request: null, forwarded_at: NOW - 2 });
      assert.equal(await store.create(sent), true);
      assert.deepEqual(store.byUpstreamId('default', 'comfy-1'), sent);
      assert.equal(store.byUpstreamId('other-backend', 'comfy-1'), undefined, 'upstream ids are per backend');
      // Held, then sent: it keeps the id its key was told, and ComfyUI's id (another, on an older release) finds it.
      await store.create(job('told-id', 'carol', 10, { status: 'held', request: { prompt: { 1: {} } } }));
      assert.equal(store.byUpstreamId('default', 'told-id'), undefined, 'not before ComfyUI answered');
      await store.update('told-id', { status: 'queued', upstream_id: 'upstream-9', request: null });
      assert.equal(store.byUpstreamId('default', 'upstream-9')?.id, 'told-id');
      assert.equal(store.get('upstream-9'), undefined, "ComfyUI's id is not the job's");
      assert.equal(store.count({}), 2);
      const again = await reopen();
      assert.deepEqual(again.byUpstreamId('default', 'comfy-1'), sent, 'after a restart');
      assert.equal(again.byUpstreamId('default', 'upstream-9')?.id, 'told-id');
      assert.equal(again.count({}), 2);
    });

    test('list pages newest admitted first, per key or for every key, by status; count agrees', async () => {
      const store = await open();
      const statuses: JobStatus[] = ['success', 'error', 'queued', 'success', 'held', 'running', 'cancelled', 'success', 'interrupted', 'held'];
      // Created out of order: the order is the admission time's, not the order of creation.
      const order = [3, 0, 7, 1, 9, 2, 5, 4, 8, 6];
      for (const i of order) await store.create(job(`a${i}`, 'alice', 100 - i, { status: statuses[i]! }));
      for (let i = 0; i < 3; i += 1) await store.create(job(`b${i}`, 'bob', 95.5 + i * 2, { status: 'success' }));
      const alice = (s: JobStatus[] | undefined, offset: number, limit: number): string[] =>
        ids(store.list({ keyId: 'alice', ...(s ? { statuses: s } : {}), offset, limit }));
      assert.deepEqual(alice(undefined, 0, 4), ['a9', 'a8', 'a7', 'a6']);
      assert.deepEqual(alice(undefined, 8, 5), ['a1', 'a0']);
      assert.deepEqual(alice(undefined, 10, 5), []);
      assert.deepEqual(alice(['success'], 0, 10), ['a7', 'a3', 'a0']);
      assert.deepEqual(alice(['success'], 1, 1), ['a3']);
      assert.deepEqual(alice(['held', 'queued', 'running'], 0, 10), ['a9', 'a5', 'a4', 'a2']);
      assert.deepEqual(alice(['success', 'held'], 1, 3), ['a7', 'a4', 'a3'], 'several statuses, merged by admission');
      assert.deepEqual(ids(store.list({ offset: 0, limit: 6 })), ['a9', 'a8', 'a7', 'a6', 'a5', 'b0']);
      assert.deepEqual(ids(store.list({ statuses: ['success'], offset: 0, limit: 10 })), ['a7', 'b0', 'a3', 'b1', 'b2', 'a0']);
      assert.deepEqual(ids(store.list({ keyId: 'nobody', offset: 0, limit: 10 })), []);
      assert.equal(store.count({ keyId: 'alice' }), 10);
      assert.equal(store.count({ keyId: 'alice', statuses: ['success'] }), 3);
      assert.equal(store.count({ keyId: 'alice', statuses: ['held', 'queued', 'running'] }), 4);
      assert.equal(store.count({ statuses: ['success'] }), 6);
      assert.equal(store.count({}), 13);
      assert.equal(store.count({ keyId: 'nobody' }), 0);
      // A change of status moves a job between the status pages, not in the order.
      await store.update('a9', { status: 'success' });
      assert.deepEqual(alice(['success'], 0, 2), ['a9', 'a7']);
      assert.equal(store.count({ keyId: 'alice', statuses: ['held'] }), 1);
      const again = await reopen();
      assert.deepEqual(ids(again.list({ keyId: 'alice', offset: 0, limit: 20 })), ['a9', 'a8', 'a7', 'a6', 'a5', 'a4', 'a3', 'a2', 'a1', 'a0']);
      assert.deepEqual(ids(again.list({ statuses: ['success'], offset: 0, limit: 3 })), ['a9', 'a7', 'b0']);
      assert.equal(again.count({ keyId: 'alice', statuses: ['success'] }), 4);
    });

    test('active() is every held, queued and running job, oldest admitted first', async () => {
      const store = await open();
      await store.create(job('r', 'bob', 50, { status: 'running' }));
      await store.create(job('h-new', 'alice', 10, { status: 'held' }));
      await store.create(job('done', 'alice', 60, { status: 'success', finished_at: NOW - 40 }));
      await store.create(job('q', 'carol', 30, { status: 'queued' }));
      await store.create(job('h-old', 'alice', 70, { status: 'held', front: true }));
      assert.deepEqual(ids(store.active()), ['h-old', 'r', 'q', 'h-new']);
      await store.update('r', { status: 'success', finished_at: NOW });
      await store.update('h-new', { status: 'queued', upstream_id: 'comfy-h', request: null });
      assert.deepEqual(ids(store.active()), ['h-old', 'q', 'h-new']);
      assert.deepEqual(ids((await reopen()).active()), ['h-old', 'q', 'h-new']);
    });

    test('heldPage reads the held jobs a page at a time, oldest first, going on after the last page while jobs change', async () => {
      const store = await open();
      for (const [id, age] of [
        ['h1', 50],
        ['h2', 40],
        ['h3', 30],
        ['h4', 20],
        ['h5', 10],
      ] as const)
        await store.create(job(id, 'alice', age, { status: 'held' }));
      await store.create(job('q', 'bob', 45, { status: 'queued' }));
      const first = store.heldPage(undefined, 2);
      assert.deepEqual(ids(first.jobs), ['h1', 'h2']);
      await store.update('h3', { status: 'queued', upstream_id: 'comfy-h3', request: null });
      await store.create(job('h0', 'bob', 60, { status: 'held' }));
      await store.create(job('h6', 'bob', 5, { status: 'held' }));
      const second = store.heldPage(first.end, 2);
      assert.deepEqual(ids(second.jobs), ['h4', 'h5'], 'a job released since is skipped, one admitted before the place is behind it');
      const third = store.heldPage(second.end, 2);
      assert.deepEqual(ids(third.jobs), ['h6']);
      assert.deepEqual(store.heldPage(third.end, 2), { jobs: [], end: third.end });
      assert.deepEqual(ids(store.heldPage(undefined, 10).jobs), ['h0', 'h1', 'h2', 'h4', 'h5', 'h6']);
    });

    test("a restart keeps every job, a held job's request body included", async () => {
      const store = await open();
      const held = job('held-1', 'alice', 5, { status: 'held', request: heldRequest(), front: true, client_id: 'browser-tab' });
      await store.create(held);
      for (let i = 0; i < 20; i += 1) await store.create(job(`j${i}`, `key${i % 3}`, 100 - i, { status: i % 2 ? 'success' : 'queued' }));
      await store.update('j3', { outputs: [{ node: '9', filename: 'a.png', subfolder: 'x', type: 'temp' }] });
      const before = store.list({ offset: 0, limit: 100 });
      const again = await reopen();
      assert.deepEqual(again.get('held-1'), held);
      assert.deepEqual(again.list({ offset: 0, limit: 100 }), before);
      assert.deepEqual(ids(again.active()), ids(store.active()));
    });

    test('finished jobs are forgotten once past the retention; active jobs never are', async () => {
      const store = await open();
      const old = NOW - CONTRACT_JOB_RETENTION.retentionSeconds - 600;
      for (let i = 0; i < 5; i += 1) await store.create(job(`old-${i}`, 'alice', 20_000 + i, { status: 'success', finished_at: old + i }));
      await store.create(job('old-error', 'bob', 20_000, { status: 'error', finished_at: old }));
      await store.create(job('old-held', 'alice', 20_000, { status: 'held' }));
      await store.create(job('old-running', 'bob', 20_000, { status: 'running', started_at: old }));
      await store.create(job('long-run', 'alice', 20_000, { status: 'success', finished_at: NOW - 60 }));
      await store.create(job('recent', 'alice', 100, { status: 'success', finished_at: NOW - 50 }));
      await waitFor(() => store.count({}) === 4, 5000, 'the expired jobs to be forgotten');
      assert.deepEqual(ids(store.list({ offset: 0, limit: 10 })).sort(), ['long-run', 'old-held', 'old-running', 'recent']);
      assert.equal(store.get('old-0'), undefined);
      assert.equal(store.count({ keyId: 'alice', statuses: ['success'] }), 2);
      const again = await reopen();
      assert.deepEqual(ids(again.list({ offset: 0, limit: 10 })).sort(), ['long-run', 'old-held', 'old-running', 'recent'], 'forgotten for good');
      assert.deepEqual(ids(again.active()), ['old-held', 'old-running']);
    });

    test(
      'a change made through one store reaches another open store on the same data',
      { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false },
      async () => {
        const within = 'withinMs' in harness.sharedChanges ? harness.sharedChanges.withinMs : 0;
        const [a, b] = [await open(), await open()];
        const held = job('held-1', 'alice', 10, { status: 'held', request: heldRequest() });
        await a.create(held);
        await a.create(job('q-1', 'bob', 5));
        await waitFor(() => b.get('q-1') !== undefined && b.get('held-1') !== undefined, within, 'the new jobs on the other store');
        assert.deepEqual(b.get('held-1'), held, 'a job too long to announce whole is read back');
        assert.equal(await b.create(job('q-1', 'carol', 1)), false, 'an id taken through the other store is refused');
        const sent = await b.update('held-1', { status: 'queued', request: null, upstream_id: 'comfy-1' });
        assert.ok(sent);
        await a.update('q-1', { status: 'running' });
        await waitFor(() => a.get('held-1')?.status === 'queued' && b.get('q-1')?.status === 'running', within, 'the updates on the other store');
        assert.equal(a.get('q-1')?.key_id, 'bob', 'the refused create reached neither store');
        assert.equal(b.get('q-1')?.key_id, 'bob');
        assert.deepEqual(a.get('held-1'), sent);
        assert.equal(a.byUpstreamId('default', 'comfy-1')?.id, 'held-1');
        assert.deepEqual(ids(a.active()), ['held-1', 'q-1']);
        assert.deepEqual(ids(b.active()), ['held-1', 'q-1']);
        assert.equal(a.count({ keyId: 'alice' }), 1);
      },
    );
  });
}
