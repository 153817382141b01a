// Redis stopped under three running gateways (one per --redis-failure mode), then restarted: bounded latency, the configured answers, recovery;
// and `local` across gateway restarts during an outage: never more than the limit in the hour.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';
import { logEventsOnceSeen, msUntil, percentile, startReplicas, timed, untilEveryReplicaKnows } from './replicas.js';
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
      return {
        status: res.status,
        code: res.status >= 400 ? res.json().error_code : null,
        limit: res.headers['x-ratelimit-limit'],
        retryAfter: res.headers['retry-after'],
      };
    };
    const localAnswers = [];
    for (let i = 0; i < 15; i += 1) localAnswers.push(await hit(local, key));
    assert.deepEqual(
      localAnswers.map((a) => a.status),
      [...Array(10).fill(200), ...Array(5).fill(429)],
      'a limit of 30 over 3 live replicas: 10 here',
    );
    assert.equal(localAnswers[0]!.limit, '10', 'X-RateLimit-Limit shows the share this replica enforces');
    for (let i = 0; i < 5; i += 1) {
      const answer = await hit(closed, key);
      assert.deepEqual([answer.status, answer.code, answer.retryAfter], [503, 'RATE_LIMIT_UNAVAILABLE', '1']);
    }
    const openAnswers = [];
    for (let i = 0; i < 40; i += 1) openAnswers.push(await hit(open, key));
    assert.ok(
      openAnswers.every((a) => a.status === 200),
      'open lets everything through, uncounted',
    );
    assert.equal((await send(local.url, '/api/keys', { key: admin.api_key })).status, 200, 'management still works: PostgreSQL is up');
    t.diagnostic(
      `latency healthy p50 ${percentile(healthy, 50).toFixed(1)} ms, max ${Math.max(...healthy).toFixed(1)} ms; Redis down (${down.length} requests) p50 ${percentile(down, 50).toFixed(1)} ms, p99 ${percentile(down, 99).toFixed(1)} ms, max ${Math.max(...down).toFixed(1)} ms`,
    );
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
      assert.equal(await logEventsOnceSeen(gateway, 'rate_limit_degraded'), 1, `entering logged once by ${gateway.url}`);
      assert.equal(await logEventsOnceSeen(gateway, 'rate_limit_recovered'), 1, `leaving logged once by ${gateway.url}`);
    }
  });
});

const restartDatabase = await freshPostgresDatabase();
const restartSkip = 'skip' in restartDatabase ? restartDatabase.skip : redisServerMissing();

describe('local fallback across gateway restarts during a Redis outage', { skip: restartSkip ?? false }, () => {
  const database = restartDatabase as FreshDatabase;
  let comfy: FakeComfyUI;
  let redis: PrivateRedis;
  let admin: CreatedKey;
  /** Every gateway started by the tests, and the stops of the groups started with their own folders. */
  const started: GatewayProcess[] = [];
  const stops: Array<() => Promise<void>> = [];

  /** Starts gateways on folders of their own, removed after the tests. */
  async function startGroup(count: number): Promise<GatewayProcess[]> {
    const { replicas, stop } = await startReplicas(count, comfy.url, () => gatewayArgs());
    started.push(...replicas);
    stops.push(stop);
    return replicas;
  }

  before(async () => {
    comfy = await startFakeComfyUI();
    redis = await startPrivateRedis();
    const [gateway] = await startGroup(1);
    admin = await createKey(gateway!.url, { name: 'admin', rate_limit: 1_000_000 });
    await gateway!.stop();
  });
  after(async () => {
    await Promise.all(started.map((gateway) => gateway.stop().catch(() => undefined)));
    await Promise.all(stops.map((stop) => stop()));
    await redis?.stop();
    await comfy?.close();
    await database.drop();
  });

  // A generous Redis timeout: these tests are about what is counted, and a busy machine must not make a running Redis look away.
  const gatewayArgs = (): string[] => ['--require-api-auth', '--database-url', database.url, '--redis-url', redis.url, '--redis-timeout', '1000'];

  /** Stops a gateway, waits until the database no longer sees it, and starts it again on its folder. */
  async function restart(gateway: GatewayProcess, connectedAfterStop: number): Promise<GatewayProcess> {
    await gateway.stop();
    await untilGatewaysConnected(database.url, connectedAfterStop);
    const again = await startGateway({ upstream: comfy.url, userDirectory: gateway.userDirectory, args: gatewayArgs() });
    started.push(again);
    return again;
  }

  /** Sends `tries` keyed requests one after another; resolves how many were let through (the others must be 429). */
  async function admitted(gateway: GatewayProcess, key: CreatedKey, tries: number): Promise<number> {
    let ok = 0;
    for (let i = 0; i < tries; i += 1) {
      const res = await send(gateway.url, '/api/system_stats', { key: key.api_key });
      assert.ok(res.status === 200 || res.status === 429, `${res.status} ${res.text}`);
      if (res.status === 200) ok += 1;
    }
    return ok;
  }

  test('one replica: 15 of 20 used, Redis cut, restarted twice: 5 more in the hour, not 45', async () => {
    const [single] = (await startGroup(1)) as [GatewayProcess];
    const key = await createKey(single.url, { name: 'user', rate_limit: 20 }, admin.api_key);
    await untilGatewaysConnected(database.url, 1);
    await sleep(2500);
    assert.equal(await admitted(single, key, 15), 15, 'counted in Redis while it is up');

    await redis.stop();
    const before = await admitted(single, key, 10);
    const again = await restart(single, 0);
    const afterOne = await admitted(again, key, 25);
    const afterTwo = await admitted(await restart(again, 0), key, 25);
    assert.deepEqual([before, afterOne, afterTwo], [5, 0, 0], 'the limit of the hour, the 15 before the outage included, across restarts');

    await redis.start();
    const since = performance.now();
    await msUntil(
      since,
      () => send(started.at(-1)!.url, '/api/system_stats', { key: admin.api_key }),
      (res) => res.headers['x-ratelimit-limit'] === '1000000',
      10_000,
      'counting in Redis again',
    );
    await started.at(-1)!.stop();
  });

  test('two replicas: each admits while the requests it knows of in the hour are under limit ÷ 2, restarts included', async () => {
    await untilGatewaysConnected(database.url, 0);
    const [a, b] = (await startGroup(2)) as [GatewayProcess, GatewayProcess];
    const usedOnA = await createKey(a.url, { name: 'used on a', rate_limit: 20 }, admin.api_key);
    const fresh = await createKey(a.url, { name: 'fresh', rate_limit: 20 }, admin.api_key);
    await untilEveryReplicaKnows([a, b], fresh.key_id, admin.api_key);
    // Let both heartbeats be seen, so "live replicas" is 2.
    await sleep(2500);
    assert.equal(await admitted(a, usedOnA, 15), 15, 'counted in Redis while it is up');
    await untilRecorded(database.url, usedOnA.key_id, 15);

    await redis.stop();
    // B never served the key, but the database has A's 15: over B's share of 10 already.
    const onB = await admitted(b, usedOnA, 10);
    const onA = await admitted(a, usedOnA, 10);
    const b2 = await restart(b, 1);
    const onRestartedB = await admitted(b2, usedOnA, 25);
    assert.deepEqual([onB, onA, onRestartedB], [0, 0, 0], 'the key used 15 of 20 before the outage: more than a share of 10 on either replica');

    // A key first used during the outage: one request on B, then A's share less it, then B's share less it.
    const firstOnB = await admitted(b2, fresh, 1);
    await untilRecorded(database.url, fresh.key_id, 1);
    const onA2 = await admitted(a, fresh, 15);
    const moreOnB = await admitted(b2, fresh, 15);
    await untilRecorded(database.url, fresh.key_id, firstOnB + onA2 + moreOnB);
    const a2 = await restart(a, 1);
    const onRestartedA = await admitted(a2, fresh, 15);
    assert.deepEqual([firstOnB, onA2, moreOnB, onRestartedA], [1, 9, 9, 0], 'B: 1; A knew it: 9; B: 9 more; A restarted knows all 19');
    assert.ok(firstOnB + onA2 + moreOnB + onRestartedA <= 20, 'never more than the limit in the hour');
  });
});

/** Resolves once `count` gateways hold a connection to the database (each has one LISTEN connection). */
function untilGatewaysConnected(url: string, count: number): Promise<void> {
  const sql = "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'comfy-gate-listen'";
  return untilCounted(url, sql, [], count, 'gateways connected to the database');
}

/** Resolves once the database holds `count` usage records of the key (they are written in batches). */
function untilRecorded(url: string, keyId: string, count: number): Promise<void> {
  return untilCounted(url, 'SELECT count(*)::int AS n FROM usage_records WHERE key_id = $1', [keyId], count, `usage records of ${keyId}`);
}

/** Runs a `SELECT count(*)::int AS n` every 50 ms until it gives `count` (for at most 5 s). */
async function untilCounted(url: string, sql: string, values: unknown[], count: number, what: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (let attempt = 0; ; attempt += 1) {
      const { rows } = await client.query<{ n: number }>(sql, values);
      if (rows[0]!.n === count) return;
      assert.ok(attempt < 100, `${rows[0]!.n} ${what}, not ${count}`);
      await sleep(50);
    }
  } finally {
    await client.end();
  }
}
