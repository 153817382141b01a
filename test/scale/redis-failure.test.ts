// Redis going away under the counters: bounded latency, the configured behaviour, logged once each way, and recovery by itself.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisFailureMode } from '../../src/config/schema.js';
import { GatewayError } from '../../src/errors.js';
import { CircuitBreaker } from '../../src/store/redis/circuit-breaker.js';
import { RedisCounterStore, type SharedRecords } from '../../src/store/redis/redis-counter-store.js';
import { testKeyPrefix } from '../contract/backends.js';
import { redisServerMissing, startPrivateRedis, type PrivateRedis } from './servers.js';

describe('CircuitBreaker', () => {
  test('opens after 3 failures in a row, lets one probe through after openMs, and closes on its success', () => {
    let now = 0;
    const breaker = new CircuitBreaker({ failureThreshold: 3, openMs: 1000, now: () => now });
    breaker.failure();
    breaker.success();
    breaker.failure();
    breaker.failure();
    assert.equal(breaker.state, 'closed', 'a success in between resets the count');
    breaker.failure();
    assert.equal(breaker.state, 'open');
    assert.equal(breaker.allow(), false);
    now = 999;
    assert.equal(breaker.allow(), false);
    now = 1000;
    assert.equal(breaker.allow(), true, 'the probe');
    assert.equal(breaker.state, 'half-open');
    assert.equal(breaker.allow(), false, 'one probe at a time');
    breaker.failure();
    assert.equal(breaker.state, 'open', 'a failed probe opens it again at once');
    now = 2000;
    assert.equal(breaker.allow(), true);
    breaker.success();
    assert.equal(breaker.state, 'closed');
    assert.equal(breaker.allow(), true);
  });
});

const missing = redisServerMissing();

describe('RedisCounterStore when Redis fails', { skip: missing ?? false }, () => {
  let redis: PrivateRedis;
  const stores: RedisCounterStore[] = [];
  before(async () => {
    redis = await startPrivateRedis();
  });
  after(async () => {
    await Promise.all(stores.map((store) => store.close()));
    await redis.stop();
  });

  /** A store with a log that records each line, on the private Redis. */
  async function open(
    failure: RedisFailureMode,
    keyPrefix: string,
    shared?: SharedRecords,
  ): Promise<{ store: RedisCounterStore; lines: Array<{ event: string }> }> {
    const lines: Array<{ event: string }> = [];
    const log = { info: (obj: object) => lines.push(obj as { event: string }), warn: (obj: object) => lines.push(obj as { event: string }) };
    const store = await RedisCounterStore.open({ url: redis.url, keyPrefix, failure, timeoutMs: 50, heartbeatMs: 200, log, ...(shared ? { shared } : {}) });
    stores.push(store);
    return { store, lines };
  }

  /** Hits once and resolves how long it took, and the result or the error. */
  async function timedHit(store: RedisCounterStore, key: string, limit: number): Promise<{ ms: number; allowed?: boolean; limit?: number; error?: unknown }> {
    const started = performance.now();
    try {
      const result = await store.hit(key, limit, Date.now() / 1000);
      return { ms: performance.now() - started, allowed: result.allowed, limit: result.limit };
    } catch (error) {
      return { ms: performance.now() - started, error };
    }
  }

  test('stopped and restarted: each mode behaves as configured, latency stays bounded, and counting goes back to Redis', async (t) => {
    const prefix = testKeyPrefix();
    const local = await open('local', prefix);
    const second = await open('local', prefix);
    const closed = await open('closed', prefix);
    const open_ = await open('open', prefix);
    await sleep(300);
    assert.equal(local.store.status().liveReplicas, 4, 'four replicas announced themselves');
    assert.equal((await local.store.hit('before', 10, Date.now() / 1000)).allowed, true);

    await redis.stop();
    const latencies: number[] = [];
    // local: limit 20 over 4 live replicas: 5 each, counted in this process.
    const localResults = [];
    for (let i = 0; i < 8; i += 1) localResults.push(await timedHit(local.store, 'fresh', 20));
    assert.deepEqual(
      localResults.map((r) => r.allowed),
      [true, true, true, true, true, false, false, false],
    );
    assert.equal(localResults[0]!.limit, 5, 'the headers show the share this replica enforces');
    latencies.push(...localResults.map((r) => r.ms));
    const closedResults = [];
    for (let i = 0; i < 5; i += 1) closedResults.push(await timedHit(closed.store, 'fresh', 20));
    for (const r of closedResults) {
      assert.ok(r.error instanceof GatewayError && r.error.status === 503 && r.error.code === 'RATE_LIMIT_UNAVAILABLE', String(r.error));
    }
    latencies.push(...closedResults.map((r) => r.ms));
    const openResults = [];
    for (let i = 0; i < 30; i += 1) openResults.push(await timedHit(open_.store, 'fresh', 20));
    assert.ok(
      openResults.every((r) => r.allowed),
      'open lets everything through',
    );
    latencies.push(...openResults.map((r) => r.ms));
    assert.ok(Math.max(...latencies) < 100, `every hit answered within 100 ms while Redis was down (max ${Math.max(...latencies).toFixed(1)} ms)`);
    assert.equal(local.lines.filter((l) => l.event === 'rate_limit_degraded').length, 1, 'entering is logged once');
    t.diagnostic(`Redis down: slowest of ${latencies.length} hits ${Math.max(...latencies).toFixed(1)} ms`);

    await redis.start();
    const started = Date.now();
    while (local.store.status().degraded || closed.store.status().degraded) {
      await local.store.hit('probe', 1000, Date.now() / 1000);
      await closed.store.hit('probe', 1000, Date.now() / 1000).catch(() => undefined);
      assert.ok(Date.now() - started < 5000, 'recovered within 5 s of Redis coming back');
      await sleep(50);
    }
    t.diagnostic(`Redis back: counting in Redis again after ${Date.now() - started} ms`);
    const counted = await local.store.hit('after', 2, Date.now() / 1000);
    const shared = await second.store.hit('after', 2, Date.now() / 1000);
    const third = await second.store.hit('after', 2, Date.now() / 1000);
    assert.deepEqual([counted.allowed, shared.allowed, third.allowed], [true, true, false], 'the replicas share one window again');
    assert.equal(local.lines.filter((l) => l.event === 'rate_limit_recovered').length, 1, 'leaving is logged once');
    assert.equal(local.lines.filter((l) => l.event === 'rate_limit_degraded').length, 1);
  });

  test('a hung Redis (answers nothing): each call gives up after the timeout, then the open circuit answers at once', async (t) => {
    const { store } = await open('local', testKeyPrefix());
    assert.equal((await store.hit('k', 100, Date.now() / 1000)).allowed, true);
    redis.pause();
    try {
      const results = [];
      for (let i = 0; i < 10; i += 1) results.push(await timedHit(store, 'k', 100));
      assert.ok(
        results.every((r) => r.allowed),
        'local fallback allows',
      );
      assert.ok(
        results.slice(0, 3).every((r) => r.ms >= 40 && r.ms < 150),
        `the first calls wait for the 50 ms timeout: ${results.map((r) => r.ms.toFixed(0)).join(', ')}`,
      );
      assert.ok(
        results.slice(3).every((r) => r.ms < 10),
        `then the circuit is open: ${results.map((r) => r.ms.toFixed(0)).join(', ')}`,
      );
      assert.equal(store.status().breaker, 'open');
      t.diagnostic(`hung Redis: hits took ${results.map((r) => r.ms.toFixed(1)).join(', ')} ms`);
    } finally {
      redis.resume();
    }
    await sleep(1100);
    await store.hit('k', 100, Date.now() / 1000);
    assert.equal(store.status().breaker, 'closed', 'the probe after ~1 s closed it');
    assert.equal(store.status().degraded, false);
  });

  test("local: the window holds every replica's recorded requests, read once per key; one that starts during an outage counts the gateways of the database", async () => {
    const now = Date.now() / 1000;
    const recorded = new Map<string, number[]>();
    const reads: string[] = [];
    let gateways = 1;
    const shared: SharedRecords = {
      recordedRequestTimes: (keyId, since) => {
        reads.push(keyId);
        return Promise.resolve((recorded.get(keyId) ?? []).filter((t) => t > since));
      },
      connectedGateways: () => Promise.resolve(gateways),
    };
    const prefix = testKeyPrefix();
    const { store } = await open('local', prefix, shared);
    const mine = [now - 20, now - 10];
    for (const at of mine) assert.equal((await store.hit('used', 10, at)).allowed, true);
    // The database has these two (recorded by this replica) and six of other replicas.
    recorded.set('used', [now - 3000, now - 2000, ...mine, now - 5, now - 4, now - 3, now - 2]);
    await redis.stop();
    try {
      const allowed = [];
      for (let i = 0; i < 5; i += 1) allowed.push((await store.hit('used', 10, Date.now() / 1000)).allowed);
      assert.deepEqual(allowed, [true, true, false, false, false], 'a limit of 10 with 8 requests already made in the hour: 2 more');
      assert.deepEqual(reads, ['used'], 'the recorded requests are read once per key in an outage');

      gateways = 3;
      const { store: started } = await open('local', prefix, shared);
      assert.equal(started.status().liveReplicas, 3, 'started during the outage: the gateways connected to the database');
      started.restore(new Map([['before', [now - 30, now - 20]]]), now);
      const admitted = [];
      for (let i = 0; i < 4; i += 1) admitted.push((await started.hit('before', 9, Date.now() / 1000)).allowed);
      assert.deepEqual(admitted, [true, false, false, false], 'a share of 9 ÷ 3, with the two requests recorded at start');
    } finally {
      await redis.start();
    }
  });
});
