// The seed guide's commands, one by one, through comfy-gate in front of a fake ComfyUI.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';

const WORKFLOW = {
  '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
  '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'ComfyUI' } },
};

describe('seed guide with --enable-api-auth', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let firstKey: { key_id: string; api_key: string };

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'] });
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('2. create your first API key (from this machine, without a key)', async () => {
    const res = await send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'My First Key', rate_limit: 100 } });
    assert.equal(res.status, 200);
    const body = res.json<{ key_id: string; api_key: string; name: string; rate_limit: number; message: string; role: string }>();
    assert.match(body.api_key, /^comfy_[A-Za-z0-9_-]{43}$/);
    assert.match(body.key_id, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(body.name, 'My First Key');
    assert.equal(body.rate_limit, 100);
    assert.equal(body.role, 'user');
    assert.match(body.message, /won't be shown again/);
    firstKey = body;
  });

  test('file locations: both files exist after the first key, in the reference format', async () => {
    const keys = JSON.parse(await readFile(join(gateway.userDirectory, 'api_keys.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    const stored = keys[firstKey.key_id]!;
    assert.equal(stored.key_id, firstKey.key_id);
    assert.match(String(stored.key_hash), /^[0-9a-f]{64}$/);
    assert.equal(JSON.stringify(keys).includes(firstKey.api_key), false, 'the plaintext key is never stored');
    const usage = JSON.parse(await readFile(join(gateway.userDirectory, 'api_usage.json'), 'utf8')) as { records: unknown[] };
    assert.ok(Array.isArray(usage.records));
  });

  test('3. use the API key to queue a prompt', async () => {
    const res = await send(gateway.url, '/api/prompt', { method: 'POST', key: firstKey.api_key, body: { prompt: WORKFLOW } });
    assert.equal(res.status, 200, res.text);
    assert.match(res.json<{ prompt_id: string }>().prompt_id, /^[0-9a-f-]{36}$/);
    assert.equal(res.headers['x-ratelimit-limit'], '100');
    const forwarded = comfy.requests.find((r) => r.method === 'POST' && r.url === '/api/prompt')!;
    assert.equal(forwarded.headers['x-api-key'], undefined, 'the key is not forwarded to ComfyUI');
  });

  test('rate limits: create a key with a custom rate limit', async () => {
    const res = await send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'High Volume Key', rate_limit: 1000 } });
    assert.equal(res.status, 200);
    assert.equal(res.json().rate_limit, 1000);
  });

  test('list all keys, never with hashes', async () => {
    const res = await send(gateway.url, '/api/keys');
    assert.equal(res.status, 200);
    const { keys } = res.json<{ keys: Array<Record<string, unknown>> }>();
    assert.deepEqual(
      keys.map((k) => k.name),
      ['My First Key', 'High Volume Key'],
    );
    for (const key of keys) {
      assert.deepEqual(Object.keys(key).sort(), [
        'created_at',
        'daily_execution_seconds',
        'expires_at',
        'is_active',
        'key_id',
        'key_prefix',
        'last_used',
        'max_queued',
        'max_running',
        'metadata',
        'name',
        'policy',
        'previous_key_valid_until',
        'rate_limit',
        'role',
        'webhook_url',
      ]);
    }
    assert.equal(res.text.includes('key_hash'), false);
  });

  test('check usage with the key', async () => {
    const res = await send(gateway.url, '/api/usage?days=7', { key: firstKey.api_key });
    assert.equal(res.status, 200);
    const body = res.json<{ key_id: string; key_name: string; usage_stats: Record<string, unknown> }>();
    assert.equal(body.key_id, firstKey.key_id);
    assert.equal(body.key_name, 'My First Key');
    const stats = body.usage_stats as { total_requests: number; successful_requests: number; requests_per_day: Record<string, number> };
    assert.equal(stats.total_requests, 1, 'the prompt before; this request is recorded when it ends');
    assert.equal(stats.successful_requests, 1);
    assert.deepEqual(stats.requests_per_day, { [new Date().toISOString().slice(0, 10)]: 1 });
  });

  test('update the rate limit', async () => {
    const res = await send(gateway.url, `/api/keys/${firstKey.key_id}`, { method: 'PATCH', body: { rate_limit: 200 } });
    assert.equal(res.status, 200);
    assert.equal(typeof res.json().message, 'string');
    const shown = await send(gateway.url, `/api/keys/${firstKey.key_id}`);
    assert.equal(shown.json().rate_limit, 200);
    const used = await send(gateway.url, '/api/prompt', { key: firstKey.api_key });
    assert.equal(used.headers['x-ratelimit-limit'], '200');
  });

  test('delete a key: it stops working at once', async () => {
    const res = await send(gateway.url, `/api/keys/${firstKey.key_id}`, { method: 'DELETE' });
    assert.equal(res.status, 200);
    const refused = await send(gateway.url, '/api/prompt', { method: 'POST', key: firstKey.api_key, body: { prompt: WORKFLOW } });
    assert.equal(refused.status, 401);
    assert.equal(refused.json().error_code, 'INVALID_KEY');
    const again = await send(gateway.url, `/api/keys/${firstKey.key_id}`, { method: 'DELETE' });
    assert.equal(again.status, 404);
    assert.equal(again.json().error_code, 'KEY_NOT_FOUND');
  });

  test('every route also answers without the /api prefix', async () => {
    const res = await send(gateway.url, '/keys');
    assert.equal(res.status, 200);
    assert.equal(res.json<{ keys: unknown[] }>().keys.length, 1);
  });
});

describe('seed guide with --require-api-auth', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let adminKey: string;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('the first key is created from this machine without a key, and is an admin key', async () => {
    const res = await send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'My First Key', rate_limit: 100 } });
    assert.equal(res.status, 200);
    assert.equal(res.json().role, 'admin');
    const second = await send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'Another' } });
    assert.equal(second.status, 401, 'once a key exists, creating another needs an admin key');
    assert.equal(second.json().error_code, 'AUTH_REQUIRED');
    adminKey = res.json<{ api_key: string }>().api_key;
    const withKey = await send(gateway.url, '/api/keys', { method: 'POST', key: adminKey, body: { name: 'Another' } });
    assert.equal(withKey.status, 200);
  });

  test('a prompt without a key is refused; with a key it runs', async () => {
    const refused = await send(gateway.url, '/api/prompt', { method: 'POST', body: { prompt: WORKFLOW } });
    assert.equal(refused.status, 401);
    assert.equal(refused.json().error_code, 'AUTH_REQUIRED');
    const created = await send(gateway.url, '/api/keys', { method: 'POST', key: adminKey, body: { name: 'Scripts' } });
    const res = await send(gateway.url, '/api/prompt', { method: 'POST', key: created.json<{ api_key: string }>().api_key, body: { prompt: WORKFLOW } });
    assert.equal(res.status, 200, res.text);
  });

  test('list keys without a key is refused in required mode, even from this machine', async () => {
    const res = await send(gateway.url, '/api/keys');
    assert.equal(res.status, 401);
  });
});
