// Three gateway processes sharing PostgreSQL and Redis: one first key among them, exact global limits, revocation everywhere within a second.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { deleteRedisKeys, freshPostgresDatabase, redisUnavailable, testKeyPrefix, type FreshDatabase } from '../contract/backends.js';
import { logEvents, msUntil, percentile, sharedStoreArgs, startReplicas, untilEveryReplicaKnows } from './replicas.js';

const fresh = await freshPostgresDatabase();
const noRedis = await redisUnavailable();
const skip = 'skip' in fresh ? fresh.skip : noRedis;

describe('three replicas on shared PostgreSQL and Redis', { skip: skip ?? false }, () => {
  const database = fresh as FreshDatabase;
  const prefix = testKeyPrefix();
  let comfy: FakeComfyUI;
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;
  let admin: CreatedKey;

  before(async () => {
    comfy = await startFakeComfyUI();
    ({ replicas, stop: stopReplicas } = await startReplicas(3, comfy.url, () => sharedStoreArgs(database.url, prefix)));
  });
  after(async () => {
    await stopReplicas?.();
    await comfy?.close();
    await database.drop();
    await deleteRedisKeys(prefix);
  });

  test('the first key: of simultaneous bootstraps on all three, exactly one succeeds', async () => {
    const attempts = await Promise.all(
      replicas.flatMap((gateway) => [0, 1].map(() => send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'admin', rate_limit: 1_000_000 } }))),
    );
    const created = attempts.filter((res) => res.status === 200);
    assert.equal(created.length, 1, attempts.map((res) => res.status).join(','));
    assert.ok(attempts.filter((res) => res.status !== 200).every((res) => res.status === 401));
    admin = created[0]!.json<CreatedKey>();
    assert.equal(admin.role, 'admin');
    await untilEveryReplicaKnows(replicas, admin.key_id, admin.api_key);
  });

  test('200 simultaneous requests across the replicas on a key limited to 50: exactly 50 succeed', async (t) => {
    const key = await createKey(replicas[1]!.url, { name: 'limited', rate_limit: 50 }, admin.api_key);
    await untilEveryReplicaKnows(replicas, key.key_id, admin.api_key);
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => send(replicas[i % 3]!.url, '/api/system_stats', { key: key.api_key })));
    const statuses = answers.map((res) => res.status);
    assert.equal(statuses.filter((s) => s === 200).length, 50, `statuses: ${JSON.stringify(countBy(statuses))}`);
    assert.equal(statuses.filter((s) => s === 429).length, 150);
    const remaining = answers
      .filter((res) => res.status === 200)
      .map((res) => Number(res.headers['x-ratelimit-remaining']))
      .sort((a, b) => a - b);
    assert.deepEqual(
      remaining,
      Array.from({ length: 50 }, (_, i) => i),
      'each success saw its own place in the window',
    );
    const refused = answers.find((res) => res.status === 429)!;
    assert.equal(refused.json().error_code, 'RATE_LIMIT_EXCEEDED');
    assert.equal(refused.headers['x-ratelimit-remaining'], '0');
    for (const gateway of replicas) assert.equal(logEvents(gateway, 'rate_limit_degraded'), 0, 'Redis kept up: no replica fell back to local counting');
    t.diagnostic(`per replica: ${replicas.map((_, r) => answers.filter((res, i) => i % 3 === r && res.status === 200).length).join(' + ')} = 50 successes`);
  });

  test('disabling, deleting, expiring and changing the limit of a key reach every replica within 1 second', async (t) => {
    const latencies: Record<string, number[]> = {};
    const [writer, ...readers] = replicas as [GatewayProcess, GatewayProcess, GatewayProcess];

    /** Changes a key on the writer, then measures how long each other replica takes to answer as `done` says. */
    async function measure(what: string, change: () => Promise<unknown>, key: CreatedKey, done: (status: number, code: unknown) => boolean): Promise<void> {
      await change();
      const since = performance.now();
      latencies[what] = await Promise.all(
        readers.map((gateway) =>
          msUntil(
            since,
            () => send(gateway.url, '/api/system_stats', { key: key.api_key }),
            (res) => done(res.status, res.status >= 400 ? res.json().error_code : null),
            1000,
            `${what} on ${gateway.url}`,
          ),
        ),
      );
    }

    const newKey = async (body: Record<string, unknown> = {}): Promise<CreatedKey> => {
      const key = await createKey(writer.url, { name: 'revocable', rate_limit: 100_000, ...body }, admin.api_key);
      await untilEveryReplicaKnows(replicas, key.key_id, admin.api_key);
      for (const gateway of readers) assert.equal((await send(gateway.url, '/api/system_stats', { key: key.api_key })).status, 200);
      return key;
    };
    const patch = (key: CreatedKey, body: Record<string, unknown>) => async (): Promise<void> => {
      const res = await send(writer.url, `/api/keys/${key.key_id}`, { method: 'PATCH', key: admin.api_key, body });
      assert.equal(res.status, 200, res.text);
    };

    const disabled = await newKey();
    await measure('disable', patch(disabled, { is_active: false }), disabled, (status, code) => status === 401 && code === 'KEY_DISABLED');
    const deleted = await newKey();
    await measure(
      'delete',
      async () => assert.equal((await send(writer.url, `/api/keys/${deleted.key_id}`, { method: 'DELETE', key: admin.api_key })).status, 200),
      deleted,
      (status, code) => status === 401 && code === 'INVALID_KEY',
    );
    const expired = await newKey();
    await measure('expire', patch(expired, { expires_at: Date.now() / 1000 - 1 }), expired, (status, code) => status === 401 && code === 'KEY_EXPIRED');
    const lowered = await newKey();
    await measure('lower the limit', patch(lowered, { rate_limit: 1 }), lowered, (status) => status === 429);
    const all = Object.values(latencies).flat();
    t.diagnostic(
      `seen by the other two replicas after (ms): ${Object.entries(latencies)
        .map(([what, ms]) => `${what} ${ms.map((m) => m.toFixed(1)).join('/')}`)
        .join(', ')}; max ${Math.max(...all).toFixed(1)}, p50 ${percentile(all, 50).toFixed(1)}`,
    );
    assert.ok(Math.max(...all) < 1000);
  });
});

function countBy(values: number[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}
