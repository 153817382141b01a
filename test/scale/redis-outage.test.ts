// Redis stopped under three running gateways (one per --redis-failure mode), then restarted: bounded latency, the configured answers, recovery.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';
import { logEvents, msUntil, percentile, startReplicas, timed, untilEveryReplicaKnows } from './replicas.js';
import { redisServerMissing, startPrivateRedis, type PrivateRedis } from './servers.js';

const fresh = await freshPostgresDatabase();
const skip = 'skip' in fresh ? fresh.skip : redisServerMissing();
const MODES = ['local', 'closed', 'open'] as const;

describe('Redis stopped and restarted under three gateways', { skip: skip ?? false }, () => {
  const database = fresh as FreshDatabase;
  let comfy: FakeComfyUI;
  let redis: PrivateRedis;
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;

  before(async () => {
    comfy = await startFakeComfyUI();
    redis = await startPrivateRedis();
    ({ replicas, stop: stopReplicas } = await startReplicas(3, comfy.url, (i) => [
      '--require-api-auth',
      '--database-url',
      database.url,
      '--redis-url',
      redis.url,
      '--redis-failure',
      MODES[i]!,
    ]));
  });
  after(async () => {
    await stopReplicas?.();
    await redis?.stop();
    await comfy?.close();
    await database.drop();
  });

  test('local: limit ÷ 3 replicas each; closed: 503 RATE_LIMIT_UNAVAILABLE; open: uncounted; all fast; all recover', async (t) => {
    const [local, closed, open] = replicas as [GatewayProcess, GatewayProcess, GatewayProcess];
    const admin = await createKey(local.url, { name: 'admin', rate_limit: 1_000_000 });
    const key = await createKey(local.url, { name: 'user', rate_limit: 30 }, admin.api_key);
    const shared = await createKey(local.url, { name: 'shared', rate_limit: 3 }, admin.api_key);
    await untilEveryReplicaKnows(replicas, key.key_id, admin.api_key);
    await untilEveryReplicaKnows(replicas, shared.key_id, admin.api_key);
    // Let every replica's heartbeat be seen, so "live replicas" is 3.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const healthy = [];
    for (let i = 0; i < 20; i += 1) healthy.push((await timed(replicas[i % 3]!.url, '/api/system_stats', admin.api_key)).ms);

    await redis.stop();
    const down: number[] = [];
    const hit = async (gateway: GatewayProcess, k: CreatedKey): Promise<{ status: number; code: unknown; limit: unknown; retryAfter: unknown }> => {
      const res = await timed(gateway.url, '/api/system_stats', k.api_key);
      down.push(res.ms);
      return { status: res.status, code: res.status >= 400 ? res.json().error_code : null, limit: res.headers['x-ratelimit-limit'], retryAfter: res.headers['retry-after'] };
    };
    const localAnswers = [];
    for (let i = 0; i < 15; i += 1) localAnswers.push(await hit(local, key));
    assert.deepEqual(localAnswers.map((a) => a.status), [...Array(10).fill(200), ...Array(5).fill(429)], 'a limit of 30 over 3 live replicas: 10 here');
    assert.equal(localAnswers[0]!.limit, '10', 'X-RateLimit-Limit shows the share this replica enforces');
    for (let i = 0; i < 5; i += 1) {
      const answer = await hit(closed, key);
      assert.deepEqual([answer.status, answer.code, answer.retryAfter], [503, 'RATE_LIMIT_UNAVAILABLE', '1']);
    }
    const openAnswers = [];
    for (let i = 0; i < 40; i += 1) openAnswers.push(await hit(open, key));
    assert.ok(openAnswers.every((a) => a.status === 200), 'open lets everything through, uncounted');
    assert.equal((await send(local.url, '/api/keys', { key: admin.api_key })).status, 200, 'management still works: PostgreSQL is up');
    t.diagnostic(`latency healthy p50 ${percentile(healthy, 50).toFixed(1)} ms, max ${Math.max(...healthy).toFixed(1)} ms; Redis down (${down.length} requests) p50 ${percentile(down, 50).toFixed(1)} ms, p99 ${percentile(down, 99).toFixed(1)} ms, max ${Math.max(...down).toFixed(1)} ms`);
    assert.ok(Math.max(...down) < 250, `every request answered within 250 ms while Redis was down (max ${Math.max(...down).toFixed(1)} ms)`);

    await redis.start();
    const since = performance.now();
    const recovered = await Promise.all(
      replicas.map((gateway) =>
        // Counted in Redis: the whole limit (not a share), and counted (open's uncounted answers show it all remaining).
        msUntil(
          since,
          () => send(gateway.url, '/api/system_stats', { key: admin.api_key }),
          (res) => res.status === 200 && res.headers['x-ratelimit-limit'] === '1000000' && res.headers['x-ratelimit-remaining'] !== '1000000',
          10_000,
          `recovery of ${gateway.url}`,
        ),
      ),
    );
    assert.equal((await send(closed.url, '/api/system_stats', { key: key.api_key })).status, 200, 'closed answers again');
    t.diagnostic(`counting in Redis again after ${recovered.map((ms) => ms.toFixed(0)).join(' / ')} ms (local / closed / open)`);
    const sharedAnswers = [];
    for (let i = 0; i < 4; i += 1) sharedAnswers.push((await send(replicas[i % 3]!.url, '/api/system_stats', { key: shared.api_key })).status);
    assert.deepEqual(sharedAnswers, [200, 200, 200, 429], 'one window across the replicas again');
    for (const gateway of replicas) {
      assert.equal(logEvents(gateway, 'rate_limit_degraded'), 1, `entering logged once by ${gateway.url}`);
      assert.equal(logEvents(gateway, 'rate_limit_recovered'), 1, `leaving logged once by ${gateway.url}`);
    }
  });
});
