// Key management: who may do what, input validation that changes nothing, and usage reports.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';
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

  test('a user key, in a header or signed in, gets no admin action on any management route, method or spelling, and nothing is forwarded', async () => {
    const mallory = await createKey(gateway.url, { name: 'mallory', rate_limit: 100_000 });
    const login = await send(gateway.url, '/login', { method: 'POST', body: { api_key: mallory.api_key } });
    const signedIn = { cookie: String(login.headers['set-cookie']).split(';')[0]!, origin: gateway.url };
    const keysNow = async (): Promise<unknown[]> =>
      (await send(gateway.url, '/api/keys', { key: admin.api_key }))
        .json<{ keys: Array<Record<string, unknown>> }>()
        .keys.map(({ last_used: _, ...key }) => key);
    const keysBefore = await keysNow();
    const auditBefore = (await send(gateway.url, '/api/audit?limit=1000', { key: admin.api_key })).text;
    const forwardedBefore = comfy.requests.length;
    const routes = [
      ...['/keys', '/api/keys', `/keys/${bob.key_id}`, `/api/keys/${bob.key_id}`, `/api/keys/${bob.key_id}/webhook-secret`],
      ...[`/api/keys/${bob.key_id}/rotate`, `/keys/${mallory.key_id}/rotate`, `/api/keys/${mallory.key_id}/rotate`],
      ...[
        '/audit',
        '/api/audit',
        '/usage/all',
        '/api/usage/all',
        '/api/gateway/backends',
        '/api/gateway/webhooks/deliveries',
        '/api/gateway/webhooks/deliveries/d1',
      ],
      ...[
        '/API/keys',
        '/api/keys/',
        '//api/keys',
        '/api//keys',
        '/api/%6beys',
        `/api/keys%2F${bob.key_id}`,
        `/api/keys/${bob.key_id}/`,
        `/API/keys/${bob.key_id}`,
      ],
      ...[
        `/api/keys/${bob.key_id}/rotate/`,
        `/api/keys/${bob.key_id}/ROTATE`,
        `/api/keys/${bob.key_id}/rotate?x=1`,
        '/Audit',
        '/api/audit/',
        '/api/usage/all/',
      ],
    ];
    const body = { name: 'sneaky', role: 'admin' };
    for (const credential of [{ key: mallory.api_key }, { headers: signedIn }]) {
      for (const target of routes) {
        for (const method of ['GET', 'HEAD', 'OPTIONS', 'POST', 'PATCH', 'PUT', 'DELETE']) {
          const withBody = method === 'POST' || method === 'PATCH' || method === 'PUT';
          const res = await send(gateway.url, target, { method, ...credential, ...(withBody ? { body: target.includes('rotate') ? {} : body } : {}) });
          const what = `${method} ${target} ${'key' in credential ? 'with the key' : 'signed in'}`;
          assert.ok([400, 403, 405].includes(res.status), `${what}: ${res.status} ${res.text}`);
          if (method !== 'HEAD') assert.match(String(res.json().error_code), /^(FORBIDDEN|ROUTE_NOT_ALLOWED|METHOD_NOT_ALLOWED|INVALID_REQUEST)$/, what);
        }
      }
    }
    assert.deepEqual(await keysNow(), keysBefore, 'no key changed, none was made');
    assert.equal((await send(gateway.url, '/api/audit?limit=1000', { key: admin.api_key })).text, auditBefore, 'nothing was audited');
    // The gateway asks ComfyUI for its users on its own (--multi-user); nothing of these requests may follow.
    const forwarded = comfy.requests.slice(forwardedBefore).filter((request) => /keys|audit|usage|backends|deliveries/i.test(request.url));
    assert.deepEqual(forwarded, [], 'nothing reached ComfyUI');
  });

  test('a user key asking to create a key is refused before its body is read: 403 whatever it sends', async () => {
    for (const body of ['{"role":"superuser"}', 'not json', '[]', JSON.stringify({ name: 'x'.repeat(70_000) })]) {
      const res = await send(gateway.url, '/api/keys', { method: 'POST', key: alice.api_key, headers: { 'content-type': 'application/json' }, body });
      assert.equal(res.status, 403, `${body.slice(0, 30)}: ${res.text}`);
      assert.equal(res.json().error_code, 'FORBIDDEN');
    }
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
    ['metadata over 16 KiB as UTF-8 though under 16 Ki characters', JSON.stringify({ metadata: { pad: '€'.repeat(6000) } })],
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

/** Bodies holding text some store cannot keep: refused alike, whichever store is behind the gateway. */
const UNSTORABLE_BODIES: Array<[string, string]> = [
  ['metadata with \\u0000 in a string', '{"metadata": {"note": "a\\u0000b"}}'],
  ['metadata with \\u0000 in a key', '{"metadata": {"a\\u0000": 1}}'],
  ['metadata with a lone surrogate deep inside', '{"metadata": {"list": [{"x": ["ok", "\\ud800"]}]}}'],
  ['metadata with a lone low surrogate in a key', '{"metadata": {"\\udc00": true}}'],
  ['a name with a lone surrogate', '{"name": "key \\udbff"}'],
  ['a name with \\u0000', '{"name": "key\\u0000"}'],
];

describe('text no store can hold gets the same 400 on JSON files and on PostgreSQL', () => {
  let comfy: FakeComfyUI;
  const backends: Array<{ name: string; gateway: GatewayProcess; key: CreatedKey; database?: FreshDatabase }> = [];

  before(async () => {
    comfy = await startFakeComfyUI();
    const files = await startGateway({ upstream: comfy.url });
    backends.push({ name: 'files', gateway: files, key: await createKey(files.url, { name: 'k' }) });
    const database = await freshPostgresDatabase();
    if ('skip' in database) return;
    const postgres = await startGateway({ upstream: comfy.url, args: ['--database-url', database.url] });
    backends.push({ name: 'postgres', gateway: postgres, key: await createKey(postgres.url, { name: 'k' }), database });
  });
  after(async () => {
    for (const backend of backends) {
      await backend.gateway.stop();
      await backend.database?.drop();
    }
    await comfy.close();
  });

  for (const [what, body] of UNSTORABLE_BODIES) {
    test(`create and update with ${what}`, async () => {
      const answers: string[] = [];
      for (const { gateway, key } of backends) {
        for (const [method, path] of [
          ['POST', '/api/keys'],
          ['PATCH', `/api/keys/${key.key_id}`],
        ] as const) {
          const res = await send(gateway.url, path, { method, body, headers: { 'content-type': 'application/json' } });
          assert.equal(res.status, 400, res.text);
          assert.equal(res.json().error_code, 'INVALID_REQUEST');
          answers.push(res.text);
        }
        const listed = (await send(gateway.url, '/api/keys')).json<{ keys: unknown[] }>().keys;
        assert.equal(listed.length, 1, 'nothing was created');
      }
      assert.deepEqual(answers.slice(2), answers.slice(0, answers.length - 2), 'every store gives the same answer');
    });
  }

  test('metadata with other escapes, emoji and 16 KiB of UTF-8 is stored and read back the same on every store', async () => {
    const metadata = { tab: 'a\tb', bell: '\u0007', emoji: '😀', pad: '€'.repeat(5000) };
    for (const { gateway, key } of backends) {
      const res = await send(gateway.url, `/api/keys/${key.key_id}`, { method: 'PATCH', body: { metadata } });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual((await send(gateway.url, `/api/keys/${key.key_id}`)).json().metadata, metadata);
    }
  });
});
