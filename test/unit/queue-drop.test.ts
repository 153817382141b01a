// Jobs taken out of ComfyUI's queue before they start (JobService.dropQueued): deleted there, then ended with the error given, unless ComfyUI had started one.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { JobService } from '../../src/jobs/job-service.js';
import type { HttpProxy, UpstreamAnswer } from '../../src/proxy/http.js';
import type { JobError, KeyRecord } from '../../src/store/types.js';
import { jobRecord } from '../helpers/job-record.js';
import { openJobStores, type OpenJobStores } from '../helpers/job-stores.js';
import { oneBackendJobService, oneBackendPool, quietEvents } from '../helpers/one-backend.js';
import { waitFor } from '../helpers/wait-for.js';

const ALICE = { key_id: 'alice', role: 'user', max_queued: null, max_running: null, daily_execution_seconds: 1 } as KeyRecord;
const OVER_BUDGET: JobError = { message: 'spent before it started', exception_type: 'ExecutionBudgetExceeded' };
const HELD_REQUEST = { body: '{"prompt":{}}', headers: {} };

/** ComfyUI's queue and history as the proxy answers them, and every request it got. */
interface Comfy {
  running: string[];
  pending: string[];
  requests: Array<{ method: string; path: string; body?: string }>;
  /** When set, `GET /api/queue` waits for it before it reads the queue. */
  queueGate: Promise<void> | null;
}

const json = (value: unknown): UpstreamAnswer => ({ status: 200, headers: {}, body: Buffer.from(JSON.stringify(value)) });

describe('jobs taken out of ComfyUI before they start', () => {
  let stores: OpenJobStores;
  let service: JobService;
  let comfy: Comfy;
  let announced: Array<{ id: string; type: string }>;

  beforeEach(async () => {
    stores = await openJobStores('queue-drop');
    comfy = { running: [], pending: [], requests: [], queueGate: null };
    announced = [];
    const proxy = {
      fetch: async (_req: unknown, request: { method: string; path: string; body?: string }): Promise<UpstreamAnswer> => {
        comfy.requests.push({ method: request.method, path: request.path, ...(request.body === undefined ? {} : { body: request.body }) });
        if (request.method === 'POST' && request.path === '/api/queue') {
          const ids = (JSON.parse(request.body!) as { delete: string[] }).delete;
          comfy.pending = comfy.pending.filter((id) => !ids.includes(id));
          return { status: 200, headers: {}, body: Buffer.alloc(0) };
        }
        if (request.path === '/api/queue') {
          await comfy.queueGate;
          return json({ queue_running: comfy.running.map((id) => [0, id, {}, {}, []]), queue_pending: comfy.pending.map((id) => [1, id, {}, {}, []]) });
        }
        if (request.path.startsWith('/api/history/')) return json({});
        return json({ prompt_id: 'sent-again', number: 1, node_errors: {} });
      },
    } as unknown as HttpProxy;
    const events = quietEvents('gateway-socket', { announce: (job, type) => void announced.push({ id: job.id, type }) });
    service = oneBackendJobService({
      jobs: stores.jobs,
      ownership: stores.ownership,
      pool: oneBackendPool(proxy, events),
      clientId: 'gateway-socket',
      key: ALICE,
    });
  });
  afterEach(async () => {
    service.close();
    await stores.close();
  });

  /** Queued jobs of alice, sent to ComfyUI under their own ids and waiting in its queue. */
  async function queuedInComfy(...ids: string[]): Promise<void> {
    for (const id of ids) assert.ok(await stores.jobs.create(jobRecord(id, { request: HELD_REQUEST, sends: 1 })));
    comfy.pending.push(...ids);
  }

  test('they are deleted from its queue in one request, then end as error with the error given and no id of ComfyUI', async () => {
    await queuedInComfy('a', 'b');
    await service.dropQueued('default', [stores.jobs.get('a')!, stores.jobs.get('b')!], OVER_BUDGET);
    assert.deepEqual(comfy.requests[0], { method: 'POST', path: '/api/queue', body: JSON.stringify({ delete: ['a', 'b'] }) });
    assert.deepEqual(comfy.pending, []);
    await waitFor(() => ['a', 'b'].every((id) => stores.jobs.get(id)?.status === 'error'), 'both jobs to end');
    for (const id of ['a', 'b']) {
      const job = stores.jobs.get(id)!;
      assert.deepEqual(job.error, OVER_BUDGET);
      assert.equal(job.upstream_id, null, `${id}: its history entry is the gateway's`);
      assert.equal(job.started_at, null);
    }
    // The end is in the store a moment before it is announced.
    await waitFor(() => announced.length === 2, 'both ends to be announced');
    assert.deepEqual(announced.map((event) => event.type).sort(), ['execution_error', 'execution_error']);
  });

  test('one ComfyUI started before the delete reached it is left to run (and to be stopped as running jobs are)', async () => {
    await queuedInComfy('started', 'waiting');
    comfy.running = comfy.pending.splice(0, 1);
    await service.dropQueued('default', [stores.jobs.get('started')!, stores.jobs.get('waiting')!], OVER_BUDGET);
    await waitFor(() => stores.jobs.get('waiting')?.status === 'error', 'the waiting job to end');
    await waitFor(() => comfy.requests.filter((request) => request.path === '/api/queue' && request.method === 'GET').length > 0, 'a reading of the queue');
    assert.equal(stores.jobs.get('started')?.status, 'queued', 'not ended: ComfyUI runs it');
  });

  test('a comparison with ComfyUI that read the job before it was taken out ends it with the error too, instead of placing it again', async () => {
    await queuedInComfy('raced');
    let openGate = (): void => undefined;
    comfy.queueGate = new Promise((resolve) => (openGate = resolve));
    // A comparison reads the registry, then waits for ComfyUI's queue while the job is taken out.
    const comparing = service.reconcile();
    await service.dropQueued('default', [stores.jobs.get('raced')!], OVER_BUDGET);
    openGate();
    await comparing;
    await waitFor(() => stores.jobs.get('raced')?.status === 'error', 'the job to end');
    assert.deepEqual(stores.jobs.get('raced')?.error, OVER_BUDGET);
    assert.ok(!comfy.requests.some((request) => request.path === '/api/prompt'), 'not sent again');
  });
});
