// createStores picks the backend from the settings; the JSON-file default never loads the PostgreSQL or Redis client.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { deleteRedisKeys, freshPostgresDatabase, redisUnavailable, testKeyPrefix, TEST_REDIS_URL } from './backends.js';

const DIST_SRC = resolve(import.meta.dirname, '../../src');

/** Runs a module script in a fresh Node process and resolves what it printed. */
async function runScript(source: string): Promise<string> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const [code] = (await once(child, 'exit')) as [number];
  assert.equal(code, 0, `script failed: ${stdout}`);
  return stdout.trim();
}

/** A script that opens stores with `settings`, closes them, and prints which drivers Node loaded. */
function driverProbe(settings: Record<string, unknown>): string {
  const storesUrl = pathToFileURL(join(DIST_SRC, 'store/index.js')).href;
  const gatewayUrl = pathToFileURL(join(DIST_SRC, 'index.js')).href;
  return `
    import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    await import(${JSON.stringify(gatewayUrl)});
    const { createStores } = await import(${JSON.stringify(storesUrl)});
    const silent = { info() {}, warn() {} };
    const stores = await createStores(${JSON.stringify(settings)}, silent);
    await Promise.all([stores.keys.close(), stores.usage.close(), stores.ownership.close(), stores.sessions.close(), stores.jobs.close(), stores.webhooks.close(), stores.counters.close(), stores.deliveryLeases?.close()]);
    const loaded = Object.keys(require.cache);
    console.log(JSON.stringify({
      pg: loaded.some((p) => /node_modules[\\\\/]pg[\\\\/]/.test(p)),
      ioredis: loaded.some((p) => /node_modules[\\\\/]ioredis[\\\\/]/.test(p)),
      location: stores.location,
      keys: stores.keys.constructor.name,
      leases: stores.deliveryLeases !== undefined,
    }));`;
}

describe('createStores', () => {
  test('the JSON-file default loads neither the PostgreSQL nor the Redis client', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'comfy-gate-drivers-'));
    after(() => rm(directory, { recursive: true, force: true }));
    const result = JSON.parse(await runScript(driverProbe({ userDirectory: directory, usageRetentionDays: 90 })));
    assert.deepEqual(result, { pg: false, ioredis: false, location: directory, keys: 'FileKeyStore', leases: false });
  });

  test('with a database URL the stores are in PostgreSQL, and the start-up line hides the password', async (t) => {
    const fresh = await freshPostgresDatabase();
    if ('skip' in fresh) return t.skip(fresh.skip);
    after(() => fresh.drop());
    const url = new URL(fresh.url);
    url.password = 'secret';
    const result = JSON.parse(await runScript(driverProbe({ userDirectory: '/nonexistent', usageRetentionDays: 90, databaseUrl: url.toString() })));
    assert.equal(result.pg, true);
    assert.equal(result.ioredis, false, 'no Redis client without a Redis URL');
    assert.equal(result.keys, 'PostgresKeyStore');
    assert.ok(!result.location.includes('secret') && result.location.includes('***'), result.location);
  });

  test('with a Redis URL the counters are in Redis: the Redis client is loaded, not the PostgreSQL one', async (t) => {
    const unavailable = await redisUnavailable();
    if (unavailable) return t.skip(unavailable);
    const directory = await mkdtemp(join(tmpdir(), 'comfy-gate-drivers-'));
    const prefix = testKeyPrefix();
    after(async () => {
      await rm(directory, { recursive: true, force: true });
      await deleteRedisKeys(prefix);
    });
    const result = JSON.parse(
      await runScript(driverProbe({ userDirectory: directory, usageRetentionDays: 90, redisUrl: TEST_REDIS_URL, redisKeyPrefix: prefix })),
    );
    assert.equal(result.ioredis, true);
    assert.equal(result.pg, false);
    assert.equal(result.location, `${directory}, counters ${new URL(TEST_REDIS_URL).toString()}`);
    assert.equal(result.leases, false, 'no connection for webhook leases without webhooks');
    const withWebhooks = JSON.parse(
      await runScript(
        driverProbe({ userDirectory: directory, usageRetentionDays: 90, redisUrl: TEST_REDIS_URL, redisKeyPrefix: prefix, webhookSecret: 'x'.repeat(32) }),
      ),
    );
    assert.equal(withWebhooks.leases, true, "with webhooks, a key's attempts are capped across replicas");
  });
});
