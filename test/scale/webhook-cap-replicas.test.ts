// Two replicas on shared PostgreSQL and Redis send at most 4 of one key's webhook attempts at once between them, to a receiver that is slow to answer;
// with Redis stopped, each replica caps its own and every event still goes out.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';
import { deleteRedisKeys, freshPostgresDatabase, redisUnavailable, testKeyPrefix, TEST_REDIS_URL, type FreshDatabase } from '../contract/backends.js';
import { logEventsOnceSeen, sharedStoreArgs, startReplicas, untilEveryReplicaKnows } from './replicas.js';
import { redisServerMissing, startPrivateRedis, type PrivateRedis } from './servers.js';

/** Events of one key: several times what the two replicas could send at once. */
const JOBS = 32;
/** How long the receiver holds each request before it answers 200, once every event is enqueued: slow, so that attempts pile up. */
const HOLD_MS = 250;

/**
 * A receiver that holds every request until `openGate` (called once every event is in the outbox, so
 * both replicas have filled their room), then answers each 200 after HOLD_MS; it counts the requests
 * it holds at once.
 */
class SlowReceiver {
  open = 0;
  mostOpen = 0;
  readonly delivered = new Set<string>();
  openGate!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.openGate = resolve));
  private readonly server: Server = createServer((req, res) => {
    this.open += 1;
    this.mostOpen = Math.max(this.mostOpen, this.open);
    req.resume();
    req.on('end', () => {
      void this.gate.then(() =>
        setTimeout(() => {
          this.open -= 1;
          this.delivered.add(String(req.headers['comfy-gate-delivery']));
          res.writeHead(200).end();
        }, HOLD_MS),
      );
    });
  });

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/events`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Two replicas on the database and `redisUrl` under `prefix`, sending webhooks to loopback. */
function startWebhookReplicas(comfy: FakeComfyUI, databaseUrl: string, redisUrl: string, prefix: string): ReturnType<typeof startReplicas> {
  return startReplicas(2, comfy.url, () => [
    ...sharedStoreArgs(databaseUrl, prefix, redisUrl),
    '--webhook-secret',
    'replica-webhook-secret-0123456',
    '--webhook-allow-private',
    '--webhook-retry-base',
    '0.2',
  ]);
}

/** One key's JOBS jobs, admitted on both replicas in turn; resolves once the receiver has every event. */
async function deliverEvents(replicas: GatewayProcess[], receiver: SlowReceiver): Promise<void> {
  const [a, b] = replicas as [GatewayProcess, GatewayProcess];
  const admin = await createKey(a.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 });
  const url = await receiver.listen();
  const key = await createKey(a.url, { name: 'hooked', rate_limit: 1_000_000, webhook_url: url }, admin.api_key);
  await untilEveryReplicaKnows(replicas, key.key_id, admin.api_key);
  await waitFor(
    async () => (await send(b.url, `/api/keys/${key.key_id}`, { key: admin.api_key })).json<{ webhook_url: string | null }>().webhook_url === url,
    "replica B to know the key's webhook_url",
  );
  for (let i = 0; i < JOBS; i += 1) {
    const res = await send(i % 2 === 0 ? a.url : b.url, '/api/prompt', { method: 'POST', key: key.api_key, body: { prompt: SAVE_WORKFLOW } });
    assert.equal(res.status, 200, res.text);
  }
  await waitFor(
    async () =>
      (await send(a.url, '/api/gateway/webhooks/deliveries?limit=100', { key: admin.api_key })).json<{ deliveries: unknown[] }>().deliveries.length === JOBS,
    'every event in the outbox',
    30_000,
  );
  receiver.openGate();
  await waitFor(() => receiver.delivered.size === JOBS, 'every event delivered', 60_000);
}

const fresh = await freshPostgresDatabase();
const freshForOutage = await freshPostgresDatabase();
const noRedis = await redisUnavailable();

describe('the per-key webhook cap across two replicas', { skip: ('skip' in fresh ? fresh.skip : noRedis) ?? false }, () => {
  const database = fresh as FreshDatabase;
  const prefix = testKeyPrefix();
  const receiver = new SlowReceiver();
  let comfy: FakeComfyUI;
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 1 });
    ({ replicas, stop: stopReplicas } = await startWebhookReplicas(comfy, database.url, TEST_REDIS_URL, prefix));
  });
  after(async () => {
    await stopReplicas?.();
    await comfy?.close();
    await receiver.close();
    await database.drop();
    await deleteRedisKeys(prefix);
  });

  test("a slow receiver holds at most 4 of one key's attempts at once, whichever replica sends them", async () => {
    await deliverEvents(replicas, receiver);
    // Each replica alone sends 4 of a key's attempts at once: without a shared cap the receiver held 8.
    assert.equal(receiver.mostOpen, 4, 'at most 4 attempts of the key at once across both replicas, and the cap was reached');
  });
});

describe('the per-key webhook cap while Redis is stopped', { skip: ('skip' in freshForOutage ? freshForOutage.skip : redisServerMissing()) ?? false }, () => {
  const database = freshForOutage as FreshDatabase;
  const receiver = new SlowReceiver();
  let comfy: FakeComfyUI;
  let redis: PrivateRedis;
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 1 });
    redis = await startPrivateRedis();
    ({ replicas, stop: stopReplicas } = await startWebhookReplicas(comfy, database.url, redis.url, testKeyPrefix()));
  });
  after(async () => {
    await stopReplicas?.();
    await redis?.stop();
    await comfy?.close();
    await receiver.close();
    await database.drop();
  });

  test('each replica caps the key on its own, logs it once, and every event goes out', async () => {
    await redis.stop();
    await deliverEvents(replicas, receiver);
    assert.ok(receiver.mostOpen >= 4 && receiver.mostOpen <= 8, `4 at most per replica (${receiver.mostOpen} at once)`);
    for (const replica of replicas) assert.equal(await logEventsOnceSeen(replica, 'webhook_cap_degraded'), 1, `${replica.url} logs the fallback once`);
  });
});
