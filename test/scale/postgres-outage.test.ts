// PostgreSQL stopped under two running gateways, then restarted: keys keep working from memory, usage is buffered and none is lost, changes get 503.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { PostgresDatabase, PostgresUsageStore } from '../../src/store/postgres/index.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { queuePrompt } from '../helpers/comfy-client.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { msUntil, percentile, startReplicas, timed, untilEveryReplicaKnows } from './replicas.js';
import { privatePostgresMissing, startPrivatePostgres, type PrivatePostgres } from './servers.js';

const missing = privatePostgresMissing();

describe('PostgreSQL stopped and restarted', { skip: missing ?? false }, () => {
  let server: PrivatePostgres;
  let admin: pg.Pool;
  before(async () => {
    server = await startPrivatePostgres();
    admin = new pg.Pool({ connectionString: server.url, max: 2, connectionTimeoutMillis: 2000 });
    admin.on('error', () => undefined);
  });
  after(async () => {
    await admin?.end();
    await server?.destroy();
  });

  /** Counted usage records of a key, as PostgreSQL has them. */
  async function storedRecords(keyId: string): Promise<number> {
    const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_records WHERE key_id = $1', [keyId]);
    return rows[0]!.n;
  }

  describe('under two gateways', () => {
    let comfy: FakeComfyUI;
    let replicas: GatewayProcess[];
    let stopReplicas: () => Promise<void>;
    before(async () => {
      comfy = await startFakeComfyUI();
      ({ replicas, stop: stopReplicas } = await startReplicas(2, comfy.url, () => ['--require-api-auth', '--database-url', server.url]));
    });
    after(async () => {
      await stopReplicas?.();
      await comfy?.close();
    });

    test('known keys authenticate from memory, usage is written once it is back (none lost), changes answer 503, nothing hangs', async (t) => {
      const [first, second] = replicas as [GatewayProcess, GatewayProcess];
      const adminKey = await createKey(first.url, { name: 'admin', rate_limit: 1_000_000 });
      const user = await createKey(first.url, { name: 'user', rate_limit: 1_000_000 }, adminKey.api_key);
      await untilEveryReplicaKnows(replicas, user.key_id, adminKey.api_key);
      let counted = 0;
      for (let i = 0; i < 10; i += 1) {
        assert.equal((await send(replicas[i % 2]!.url, '/api/system_stats', { key: user.api_key })).status, 200);
        counted += 1;
      }
      await msUntil(
        performance.now(),
        () => storedRecords(user.key_id),
        (n) => n === counted,
        5000,
        'the first records written',
      );

      await server.stop();
      const latencies: number[] = [];
      for (let i = 0; i < 300; i += 1) {
        const res = await timed(replicas[i % 2]!.url, '/api/system_stats', user.api_key);
        assert.equal(res.status, 200, `request ${i} while PostgreSQL is down: ${res.status} ${res.text}`);
        latencies.push(res.ms);
        counted += 1;
      }
      const started = performance.now();
      const change = await send(first.url, `/api/keys/${user.key_id}`, { method: 'PATCH', key: adminKey.api_key, body: { name: 'renamed' } });
      const changeMs = performance.now() - started;
      assert.equal(change.status, 503);
      assert.equal(change.json().error_code, 'STORE_UNAVAILABLE');
      assert.ok(changeMs < 3000, `the refused change answered in ${changeMs.toFixed(0)} ms`);
      const promptId = await queuePrompt(first.url, user.api_key, { client_id: 'during-outage' });
      counted += 1;
      for (let done = false; !done; counted += 1) {
        const entry = (await send(first.url, `/api/history/${promptId}`, { key: user.api_key })).json<Record<string, { status?: { completed?: boolean } }>>()[
          promptId
        ];
        done = entry?.status?.completed !== undefined;
        if (!done) await sleep(25);
      }
      const ready = await send(second.url, '/readyz');
      assert.equal(ready.status, 503, 'not ready while the store cannot be written');
      const unknown = await send(second.url, '/api/system_stats', { key: `comfy_${'x'.repeat(43)}` });
      assert.equal(unknown.status, 401, 'unknown keys are still refused');
      t.diagnostic(
        `PostgreSQL down: 300 requests p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms; a key change refused in ${changeMs.toFixed(0)} ms`,
      );
      assert.ok(Math.max(...latencies) < 500, `bounded latency (max ${Math.max(...latencies).toFixed(1)} ms)`);

      await server.start();
      const userRecords = counted;
      const since = performance.now();
      const writtenMs = await msUntil(
        since,
        () => storedRecords(user.key_id).catch(() => -1),
        (n) => n === userRecords,
        15_000,
        `all ${userRecords} usage records in PostgreSQL`,
      );
      await sleep(500);
      assert.equal(await storedRecords(user.key_id), userRecords, 'each record written exactly once');
      const { rows } = await admin.query<{ requests: number }>('SELECT sum(requests)::int AS requests FROM usage_daily WHERE key_id = $1', [user.key_id]);
      assert.equal(rows[0]!.requests, userRecords, 'the daily totals agree');
      // The job admitted during the outage, and each of its changes, are written in order once the database is back.
      const storedJob = (): Promise<Array<{ key_id: string; status: string }>> =>
        admin.query<{ key_id: string; status: string }>('SELECT key_id, status FROM jobs WHERE id = $1', [promptId]).then((res) => res.rows);
      await msUntil(since, storedJob, (rows) => rows[0]?.status === 'success', 5000, 'the finished job of the prompt queued during the outage');
      assert.deepEqual(
        await storedJob(),
        [{ key_id: user.key_id, status: 'success' }],
        'the prompt queued during the outage is a job of the user in PostgreSQL',
      );
      // The clientId claimed during the outage is written too.
      const clientOwner = (): Promise<unknown[]> =>
        admin.query("SELECT key_id FROM ownership WHERE kind = 'client' AND id = 'during-outage'").then((res) => res.rows);
      await msUntil(since, clientOwner, (rows) => rows.length > 0, 5000, 'the clientId claimed during the outage');
      assert.deepEqual(await clientOwner(), [{ key_id: user.key_id }], 'the clientId claimed during the outage was written once the database was back');
      // The other replica learns it when its LISTEN connection is back and it reads what changed meanwhile.
      await msUntil(
        since,
        () => send(second.url, `/api/history/${promptId}`, { key: user.api_key }),
        (res) => res.status === 200 && promptId in res.json(),
        5000,
        "the other replica seeing the user's prompt",
      );

      const disableSince = performance.now();
      const disable = await send(first.url, `/api/keys/${user.key_id}`, { method: 'PATCH', key: adminKey.api_key, body: { is_active: false } });
      assert.equal(disable.status, 200, 'changes work again');
      const seenMs = await msUntil(
        disableSince,
        () => send(second.url, '/api/system_stats', { key: user.api_key }),
        (res) => res.status === 401,
        5000,
        'the disabled key on the other replica',
      );
      t.diagnostic(
        `PostgreSQL back: buffered usage written within ${writtenMs.toFixed(0)} ms; a change made afterwards reached the other replica in ${seenMs.toFixed(0)} ms`,
      );
    });
  });

  test('past the buffer bound, raw records are dropped but the daily totals still count every request', async () => {
    const database = await PostgresDatabase.open({ url: server.url });
    const store = new PostgresUsageStore({ database, retentionDays: 30, maxBufferedRecords: 50, flushIntervalMs: 50 });
    await store.open();
    try {
      await server.stop();
      const now = Date.now() / 1000;
      for (let i = 0; i < 80; i += 1)
        store.record({
          key_id: 'bounded',
          endpoint: '/prompt',
          timestamp: now - i / 100,
          duration: 0.1,
          success: true,
          metadata: { method: 'POST', status: 200 },
        });
      await sleep(300);
      assert.ok(store.lastWriteError(), 'writes are failing');
      assert.equal(store.buffered(), 50, 'at most the bound is kept');
      await server.start();
      await store.flush().catch(async () => {
        await sleep(500);
        await store.flush();
      });
      assert.equal(await storedRecords('bounded'), 50);
      const { rows } = await admin.query<{ requests: number }>('SELECT sum(requests)::int AS requests FROM usage_daily WHERE key_id = $1', ['bounded']);
      assert.equal(rows[0]!.requests, 80);
    } finally {
      await store.close();
    }
  });
});
