// POST /api/gateway/run on two replicas sharing PostgreSQL: a run waits on one replica for a job whose end another replica recorded.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';
import { startReplicas, untilEveryReplicaKnows } from './replicas.js';

const fresh = await freshPostgresDatabase();

describe('a run across two replicas', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  let comfy: FakeComfyUI;
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;

  before(async () => {
    // SAVE_WORKFLOW runs in 23 steps: about a second.
    comfy = await startFakeComfyUI({ stepDelayMs: 45 });
    ({ replicas, stop: stopReplicas } = await startReplicas(2, comfy.url, () => ['--require-api-auth', '--database-url', database.url, '--log-level', 'warn']));
  });
  after(async () => {
    await stopReplicas?.();
    await comfy?.close();
    await database.drop();
  });

  test('a run waiting on replica A answers once replica B ended its job (cancelled there), which A learns only from the database', async () => {
    const [a, b] = replicas as [GatewayProcess, GatewayProcess];
    const admin = await createKey(a.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 });
    const key = await createKey(a.url, { name: 'one-at-a-time', rate_limit: 1_000_000, max_running: 1 }, admin.api_key);
    await untilEveryReplicaKnows(replicas, key.key_id, admin.api_key);
    // The key's first job takes its one running place, so the run's job is held.
    const first = await send(a.url, '/api/prompt', { method: 'POST', key: key.api_key, body: { prompt: SAVE_WORKFLOW } });
    assert.equal(first.status, 200, first.text);
    const running = send(a.url, '/api/gateway/run', { method: 'POST', key: key.api_key, body: { prompt: SAVE_WORKFLOW, wait: 60 } });
    const held = await waitFor(
      async () => (await send(b.url, '/api/gateway/jobs?status=held', { key: key.api_key })).json<{ jobs: Array<{ id: string }> }>().jobs[0],
      'replica B to know the held job',
      10_000,
    );
    const cancel = await send(b.url, `/api/jobs/${held.id}/cancel`, { method: 'POST', key: key.api_key });
    assert.deepEqual(cancel.json(), { cancelled: true });
    const res = await running;
    assert.equal(res.status, 200, res.text);
    const job = res.json<{ id: string; status: string }>();
    assert.equal(job.id, held.id);
    assert.equal(job.status, 'cancelled');
    const firstJob = (await send(a.url, `/api/gateway/jobs/${first.json<{ prompt_id: string }>().prompt_id}`, { key: key.api_key })).json<{ status: string }>();
    assert.ok(['queued', 'running'].includes(firstJob.status), `the run answered before the first job ended (${firstJob.status})`);
  });
});
