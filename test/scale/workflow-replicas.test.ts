// Named workflows on two replicas sharing PostgreSQL: a workflow registered, replaced or deleted on one is served by the other at once.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';
import { startReplicas, untilEveryReplicaKnows } from './replicas.js';

const fresh = await freshPostgresDatabase();

describe('workflows across two replicas', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  let comfy: FakeComfyUI;
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 2 });
    ({ replicas, stop: stopReplicas } = await startReplicas(2, comfy.url, () => ['--require-api-auth', '--database-url', database.url, '--log-level', 'warn']));
  });
  after(async () => {
    await stopReplicas?.();
    await comfy?.close();
    await database.drop();
  });

  test('registered on A, run and listed in the OpenAPI document on B; replaced and deleted on B, seen on A', async () => {
    const [a, b] = replicas as [GatewayProcess, GatewayProcess];
    const admin = await createKey(a.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 });
    const user = await createKey(a.url, { name: 'user', rate_limit: 1_000_000 }, admin.api_key);
    await untilEveryReplicaKnows(replicas, user.key_id, admin.api_key);
    const inputs = { steps: { node: '3', input: 'steps', type: 'integer', min: 1, max: 10 }, seed: { node: '3', input: 'seed', type: 'integer', default: 0 } };
    const put = await send(a.url, '/api/gateway/workflows/shared', { method: 'PUT', key: admin.api_key, body: { prompt: SAVE_WORKFLOW, inputs } });
    assert.equal(put.status, 201, put.text);
    const ran = await send(b.url, '/api/gateway/workflows/shared/run', { method: 'POST', key: user.api_key, body: { inputs: { steps: 3 }, wait: 30 } });
    assert.equal(ran.status, 200, ran.text);
    assert.equal(ran.json().status, 'success');
    assert.deepEqual(Object.keys((await send(b.url, '/api/gateway/workflows/shared', { key: user.api_key })).json().inputs as object), ['steps', 'seed']);
    const doc = (await send(b.url, '/api/gateway/openapi.json')).json<{ paths: Record<string, unknown> }>();
    assert.ok(doc.paths['/api/gateway/workflows/shared/run']);
    const replaced = await send(b.url, '/api/gateway/workflows/shared', { method: 'PUT', key: admin.api_key, body: { prompt: SAVE_WORKFLOW, inputs: {} } });
    assert.equal(replaced.status, 200);
    const refused = await send(a.url, '/api/gateway/workflows/shared/run', { method: 'POST', key: user.api_key, body: { inputs: { steps: 3 } } });
    assert.equal(refused.status, 400, 'A runs the replaced workflow, which has no inputs');
    assert.equal((await send(b.url, '/api/gateway/workflows/shared', { method: 'DELETE', key: admin.api_key })).status, 200);
    assert.equal((await send(a.url, '/api/gateway/workflows/shared', { key: user.api_key })).status, 404);
  });
});
