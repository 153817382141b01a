// Key management: who may do what, input validation that changes nothing, and usage reports.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';

const REMOTE = { 'x-forwarded-for': '203.0.113.9' };

describe('who may manage keys', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: CreatedKey;
  let alice: CreatedKey;
  let bob: CreatedKey;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'] });
    admin = await createKey(gateway.url, { name: 'admin', role: 'admin' });
    alice = await createKey(gateway.url, { name: 'alice' });
    bob = await createKey(gateway.url, { name: 'bob', metadata: { team: 'b' } });
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('without a key, only a direct loopback client may manage', async () => {
    const res = await send(gateway.url, '/api/keys', { headers: REMOTE });
    assert.equal(res.status, 401);
    assert.equal(res.json().error_code, 'AUTH_REQUIRED');
    const create = await send(gateway.url, '/api/keys', { method: 'POST', headers: REMOTE, body: { name: 'x' } });
    assert.equal(create.status, 401);
  });

  test('an admin key manages from anywhere', async () => {
    const res = await send(gateway.url, '/api/keys', { headers: REMOTE, key: admin.api_key });
    assert.equal(res.status, 200);
    assert.equal(res.json<{ keys: unknown[] }>().keys.length, 3);
    const created = await send(gateway.url, '/api/keys', { method: 'POST', headers: REMOTE, key: admin.api_key, body: { name: 'made remotely' } });
    assert.equal(created.status, 200);
  });

  test('a user key reads its own record and usage, nothing else', async () => {
    const own = await send(gateway.url, `/api/keys/${alice.key_id}`, { key: alice.api_key });
    assert.equal(own.status, 200);
    assert.equal(own.json().name, 'alice');
    assert.equal(typeof own.json().usage_stats, 'object');
    assert.equal(own.text.includes('key_hash'), false);
    const checks: Array<[string, string, object?]> = [
      ['GET', `/api/keys/${bob.key_id}`],
      ['GET', '/api/keys'],
      ['POST', '/api/keys', { name: 'sneaky', role: 'admin' }],
      ['PATCH', `/api/keys/${alice.key_id}`, { rate_limit: 100000 }],
      ['PATCH', `/api/keys/${bob.key_id}`, { is_active: false }],
      ['DELETE', `/api/keys/${bob.key_id}`],
      ['GET', '/api/usage/all'],
    ];
    for (const [method, target, body] of checks) {
      const res = await send(gateway.url, target, { method, key: alice.api_key, ...(body ? { body } : {}) });
      assert.equal(res.status, 403, `${method} ${target}`);
      assert.equal(res.json().error_code, 'FORBIDDEN');
    }
    assert.equal((await send(gateway.url, `/api/keys/${bob.key_id}`)).json().is_active, true, 'bob untouched');
    assert.equal((await send(gateway.url, '/api/usage', { key: alice.api_key })).status, 200);
  });

  test('an admin reads every usage; usage/all lists each key', async () => {
    const res = await send(gateway.url, '/api/usage/all?days=7', { key: admin.api_key });
    assert.equal(res.status, 200);
    const stats = res.json<{ usage_stats: Record<string, { total_requests: number }> }>().usage_stats;
    assert.ok(stats[alice.key_id]);
    assert.ok(stats[alice.key_id]!.total_requests >= 2);
  });

  test('role can be changed by an admin, and metadata is kept', async () => {
    const res = await send(gateway.url, `/api/keys/${bob.key_id}`, { method: 'PATCH', key: admin.api_key, body: { role: 'admin', name: 'bob2' } });
    assert.equal(res.status, 200);
    const shown = (await send(gateway.url, `/api/keys/${bob.key_id}`)).json();
    assert.equal(shown.role, 'admin');
    assert.equal(shown.name, 'bob2');
    assert.deepEqual(shown.metadata, { team: 'b' });
  });

  test('unknown key ids and wrong methods', async () => {
    assert.equal((await send(gateway.url, '/api/keys/doesnotexist')).json().error_code, 'KEY_NOT_FOUND');
    const res = await send(gateway.url, '/api/keys', { method: 'PUT', body: {} });
    assert.equal(res.status, 405);
    assert.equal(res.headers.allow, 'GET, POST');
  });
});

describe('bad input gets 400 INVALID_REQUEST and changes nothing', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let key: CreatedKey;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'] });
    key = await createKey(gateway.url, { name: 'k' });
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  const storeBytes = async (): Promise<string> => {
    const read = (name: string) => readFile(join(gateway.userDirectory, name), 'utf8').catch(() => '');
    return (await read('api_keys.json')) + '\0' + (await read('api_keys.journal'));
  };

  const badBodies: Array<[string, string]> = [
    ['malformed JSON', '{"name": "x",'],
    ['not an object', '[1,2]'],
    ['string rate_limit', '{"rate_limit": "abc"}'],
    ['negative rate_limit', '{"rate_limit": -1}'],
    ['zero rate_limit', '{"rate_limit": 0}'],
    ['fractional rate_limit', '{"rate_limit": 1.5}'],
    ['huge rate_limit', '{"rate_limit": 1e12}'],
    ['unknown field', '{"name": "x", "is_admin": true}'],
    ['10 KB name', JSON.stringify({ name: 'n'.repeat(10 * 1024) })],
    ['empty name', '{"name": ""}'],
    ['bad role', '{"role": "root"}'],
    ['array metadata', '{"metadata": [1]}'],
    ['body over 64 KiB', JSON.stringify({ name: 'x', metadata: { pad: 'p'.repeat(70 * 1024) } })],
  ];

  for (const [what, body] of badBodies) {
    test(`create with ${what}`, async () => {
      const before = await storeBytes();
      const res = await send(gateway.url, '/api/keys', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 400, res.text);
      const parsed = res.json<{ error: string; error_code: string; details: unknown[] }>();
      assert.equal(parsed.error_code, 'INVALID_REQUEST');
      assert.ok(parsed.error.length > 0);
      assert.ok(Array.isArray(parsed.details) && parsed.details.length > 0);
      assert.equal(await storeBytes(), before);
    });
  }

  for (const [what, body] of [
    ['string is_active', '{"is_active": "no"}'],
    ['empty patch', '{}'],
    ['unknown field', '{"key_hash": "00"}'],
    ['malformed JSON', '{'],
  ] as const) {
    test(`update with ${what}`, async () => {
      const before = await storeBytes();
      const res = await send(gateway.url, `/api/keys/${key.key_id}`, { method: 'PATCH', body, headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json().error_code, 'INVALID_REQUEST');
      assert.equal(await storeBytes(), before);
    });
  }

  for (const days of ['abc', '0', '366', '-1', '1.5', '']) {
    test(`usage with days=${days}`, async () => {
      const res = await send(gateway.url, `/api/usage?days=${days}`, { key: key.api_key });
      assert.equal(res.status, 400);
      assert.equal(res.json().error_code, 'INVALID_REQUEST');
      const all = await send(gateway.url, `/api/usage/all?days=${days}`);
      assert.equal(all.status, 400);
    });
  }
});

describe('first-key bootstrap in required mode', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let bootstrapKey: string;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('only from loopback', async () => {
    const res = await send(gateway.url, '/api/keys', { method: 'POST', headers: REMOTE, body: { name: 'x' } });
    assert.equal(res.status, 401);
  });

  test('20 simultaneous first-key requests create exactly one admin key', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => send(gateway.url, '/api/keys', { method: 'POST', body: { name: `racer ${i}` } })));
    const created = answers.filter((r) => r.status === 200);
    assert.equal(created.length, 1);
    assert.equal(created[0]!.json().role, 'admin');
    for (const refused of answers.filter((r) => r.status !== 200)) assert.equal(refused.json().error_code, 'AUTH_REQUIRED');
    bootstrapKey = created[0]!.json<{ api_key: string }>().api_key;
    const keys = await send(gateway.url, '/api/keys', { key: bootstrapKey });
    assert.equal(keys.json<{ keys: unknown[] }>().keys.length, 1);
  });

  test('deleting every key does not reopen the bootstrap', async () => {
    const admin = await send(gateway.url, '/api/keys', { method: 'POST', body: {} });
    assert.equal(admin.status, 401);
    const [only] = (await send(gateway.url, '/api/keys', { key: bootstrapKey })).json<{ keys: Array<{ key_id: string }> }>().keys;
    assert.equal((await send(gateway.url, `/api/keys/${only!.key_id}`, { method: 'DELETE', key: bootstrapKey })).status, 200);
    const res = await send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'after' } });
    assert.equal(res.status, 401);
    assert.equal(res.json().error_code, 'AUTH_REQUIRED');
  });
});
