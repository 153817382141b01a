// Webhooks on two replicas sharing PostgreSQL: every attempt of every delivery is sent by exactly one replica, and both see the outbox.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
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
const RETRY_BASE = 0.1;
const JOBS = 12;

describe('webhooks on two replicas', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  let comfy: FakeComfyUI;
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;
  let receiver: Server;
  /** Per delivery id, the statuses the receiver answered, in order: 503 the first time, 200 after. */
  const answered = new Map<string, number[]>();

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 2 });
    receiver = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const id = String(req.headers['comfy-gate-delivery']);
        const statuses = answered.get(id) ?? [];
        const status = statuses.length === 0 ? 503 : 200;
        statuses.push(status);
        answered.set(id, statuses);
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const args = ['--require-api-auth', '--database-url', database.url, '--log-level', 'error'];
    ({ replicas, stop: stopReplicas } = await startReplicas(2, comfy.url, () => [
      ...args,
      '--webhook-secret',
      'replica-webhook-secret-0123456',
      '--webhook-allow-private',
      '--webhook-retry-base',
      String(RETRY_BASE),
    ]));
  });
  after(async () => {
    await stopReplicas?.();
    await comfy?.close();
    receiver?.closeAllConnections();
    await new Promise((resolve) => receiver?.close(resolve));
    await database.drop();
  });

  test("jobs admitted on either replica, with the key's webhook_url: each attempt is sent once, the retry too", async () => {
    const [a, b] = replicas as [GatewayProcess, GatewayProcess];
    const admin = await createKey(a.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 });
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events`;
    const key = await createKey(a.url, { name: 'hooked', rate_limit: 1_000_000, webhook_url: url }, admin.api_key);
    await untilEveryReplicaKnows(replicas, key.key_id, admin.api_key);
    await waitFor(
      async () => (await send(b.url, `/api/keys/${key.key_id}`, { key: admin.api_key })).json<{ webhook_url: string | null }>().webhook_url === url,
      "replica B to know the key's webhook_url",
    );
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i += 1) {
      const res = await send(i % 2 === 0 ? a.url : b.url, '/api/prompt', { method: 'POST', key: key.api_key, body: { prompt: SAVE_WORKFLOW } });
      assert.equal(res.status, 200, res.text);
      ids.push(res.json<{ prompt_id: string }>().prompt_id);
    }
    await waitFor(() => answered.size === JOBS && [...answered.values()].every((statuses) => statuses.includes(200)), 'every event delivered', 30_000);
    // Long enough for any second sender of an attempt to have shown itself.
    await sleep(10 * RETRY_BASE * 1000);
    for (const [id, statuses] of answered) assert.deepEqual(statuses, [503, 200], `delivery ${id}: one refused attempt, one delivered, each sent once`);

    for (const replica of replicas) {
      const list = await send(replica.url, '/api/gateway/webhooks/deliveries?limit=100', { key: admin.api_key });
      const deliveries = list.json<{ deliveries: Array<{ job_id: string; state: string; attempt_count: number; event: string }> }>().deliveries;
      assert.deepEqual(deliveries.map((d) => d.job_id).sort(), [...ids].sort(), `${replica.url} lists every job's delivery`);
      assert.ok(
        deliveries.every((d) => d.state === 'delivered' && d.attempt_count === 2 && d.event === 'job.succeeded'),
        JSON.stringify(deliveries),
      );
    }
  });
});
