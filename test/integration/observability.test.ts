// Operating signals: the OpenAPI document matches real answers, /metrics after traffic, one JSON log line per request, the audit trail.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { openCollectingSocket, SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

type OpenApi = {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema?: unknown }> }> }>>;
  components: unknown;
};

/** Checks an answer against the schema the document gives for that path, method and status. */
function checkAgainst(doc: OpenApi, ajv: Ajv2020, path: string, method: string, res: TestResponse): void {
  const response = doc.paths[path]?.[method]?.responses[String(res.status)];
  assert.ok(response, `the document describes ${method.toUpperCase()} ${path} → ${res.status}`);
  const schema = response.content?.['application/json']?.schema;
  if (!schema) return;
  const validate = ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi#/components/')));
  assert.ok(validate(res.json()), `${method.toUpperCase()} ${path} → ${res.status}: ${JSON.stringify(validate.errors)} in ${res.text.slice(0, 300)}`);
}

describe('OpenAPI, metrics, logs and audit', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: CreatedKey;
  let user: CreatedKey;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--metrics-per-key'] });
    admin = await createKey(gateway.url, { name: 'admin', rate_limit: 100000 });
    user = await createKey(gateway.url, { name: 'user', rate_limit: 3 }, admin.api_key);
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('the OpenAPI 3.1 document describes the real answers', async () => {
    const workflow = {
      prompt: SAVE_WORKFLOW,
      description: 'Saves an image',
      inputs: { steps: { node: '3', input: 'steps', type: 'integer', min: 1, max: 50 } },
    };
    const registered = await send(gateway.url, '/api/gateway/workflows/doc-save', { method: 'PUT', key: admin.api_key, body: workflow });
    assert.equal(registered.status, 201, registered.text);
    const images = {
      prompt: SAVE_WORKFLOW,
      inputs: { steps: { ...workflow.inputs.steps, default: 2 }, text: { node: '9', input: 'filename_prefix', type: 'string' } },
      openai_images: { prompt: 'text' },
    };
    assert.equal((await send(gateway.url, '/api/gateway/workflows/doc-images', { method: 'PUT', key: admin.api_key, body: images })).status, 201);
    const docResponse = await send(gateway.url, '/api/gateway/openapi.json');
    assert.equal(docResponse.status, 200);
    const doc = docResponse.json<OpenApi & { openapi: string }>();
    assert.equal(doc.openapi, '3.1.0');
    const ajv = new Ajv2020({ strict: false });
    ajv.addSchema({ $id: 'openapi', components: doc.components });
    const a = admin.api_key;
    const check = async (path: string, method: string, target: string, options: Parameters<typeof send>[2] = {}): Promise<TestResponse> => {
      const res = await send(gateway.url, target, { method: method.toUpperCase(), ...options });
      checkAgainst(doc, ajv, path, method, res);
      return res;
    };
    await check('/healthz', 'get', '/healthz');
    await check('/readyz', 'get', '/readyz');
    const created = await check('/api/keys', 'post', '/api/keys', { key: a, body: { name: 'doc', expires_at: Date.now() / 1000 + 3600 } });
    const id = created.json<{ key_id: string }>().key_id;
    await check('/api/keys', 'post', '/api/keys', { key: a, body: { rate_limit: 'x' } });
    await check('/api/keys', 'get', '/api/keys', { key: a });
    await check('/api/keys', 'get', '/api/keys', { key: user.api_key });
    await check('/api/keys', 'get', '/api/keys');
    await check('/api/keys/{key_id}', 'get', `/api/keys/${id}`, { key: a });
    await check('/api/keys/{key_id}', 'get', '/api/keys/nope', { key: a });
    await check('/api/keys/{key_id}', 'patch', `/api/keys/${id}`, { key: a, body: { rate_limit: 5, expires_at: null } });
    await check('/api/keys/{key_id}', 'patch', `/api/keys/${id}`, { key: a, body: {} });
    await check('/api/keys/{key_id}/rotate', 'post', `/api/keys/${id}/rotate`, { key: a, body: { grace_seconds: 60 } });
    await check('/api/usage', 'get', '/api/usage?days=7&by=day', { key: a });
    await check('/api/usage', 'get', '/api/usage?days=abc', { key: a });
    await check('/api/usage/all', 'get', '/api/usage/all?days=30&by=day', { key: a });
    const firstPage = await check('/api/usage/all', 'get', '/api/usage/all?days=7&by=day&limit=1', { key: a });
    const cursor = firstPage.json<{ next_cursor: string }>().next_cursor;
    assert.equal(typeof cursor, 'string', 'one key per page leaves more keys for the next');
    await check('/api/usage/all', 'get', `/api/usage/all?limit=1000&after=${encodeURIComponent(cursor)}`, { key: a });
    await check('/api/usage/all', 'get', '/api/usage/all?limit=0', { key: a });
    await check('/api/keys', 'get', '/api/keys?limit=1', { key: a });
    await check('/api/keys', 'get', '/api/keys?after=', { key: a });
    await check('/api/audit', 'get', '/api/audit?since=0', { key: a });
    await check('/api/gateway/backends', 'get', '/api/gateway/backends', { key: a });
    await check('/api/gateway/workflows', 'get', '/api/gateway/workflows', { key: a });
    await check('/api/gateway/workflows', 'get', '/api/gateway/workflows', { key: user.api_key });
    await check('/api/gateway/workflows/{name}', 'get', '/api/gateway/workflows/doc-save', { key: a });
    await check('/api/gateway/workflows/{name}', 'get', '/api/gateway/workflows/nope', { key: a });
    await check('/api/gateway/workflows/{name}', 'put', '/api/gateway/workflows/doc-save', { key: a, body: workflow });
    await check('/api/gateway/workflows/{name}', 'put', '/api/gateway/workflows/doc-other', { key: a, body: workflow });
    await check('/api/gateway/workflows/{name}', 'put', '/api/gateway/workflows/doc-other', { key: a, body: { prompt: {} } });
    await check('/api/gateway/workflows/{name}', 'delete', '/api/gateway/workflows/doc-other', { key: a });
    await check('/api/gateway/workflows/{name}', 'delete', '/api/gateway/workflows/doc-other', { key: a });
    const bearer = { authorization: `Bearer ${a}` };
    const generated = await check('/v1/images/generations', 'post', '/v1/images/generations', {
      headers: bearer,
      body: { model: 'dall-e-3', prompt: 'cat', response_format: 'b64_json' },
    });
    assert.equal(generated.status, 200, generated.text);
    await check('/v1/images/generations', 'post', '/v1/images/generations', { headers: bearer, body: { prompt: 'cat', n: 3 } });
    const path = '/api/gateway/workflows/doc-save/run';
    assert.ok(doc.paths[path], 'the registered workflow has its own path');
    assert.equal((await check(path, 'post', path, { key: a, body: { inputs: { steps: 3 }, inline: true, wait: 30 } })).status, 200);
    await check(path, 'post', path, { key: a, body: { inputs: { steps: 0 } } });
    await check('/api/gateway/workflows/{name}/run', 'post', '/api/gateway/workflows/nope/run', { key: a, body: {} });
    await check('/api/gateway/workflows/{name}/run', 'post', path, { key: a, body: { inputs: { steps: 2 }, wait: 0 } });
    const ran = await check('/api/gateway/run', 'post', '/api/gateway/run', { key: a, body: { prompt: SAVE_WORKFLOW, inline: true, wait: 30 } });
    assert.equal(ran.status, 200, ran.text);
    assert.equal((await check('/api/gateway/run', 'post', '/api/gateway/run', { key: a, body: { prompt: SAVE_WORKFLOW, wait: 0 } })).status, 202);
    await check('/api/gateway/run', 'post', '/api/gateway/run', { key: a, body: { prompt: SAVE_WORKFLOW, wait: 'soon' } });
    await check('/api/gateway/run', 'post', '/api/gateway/run', { key: a, body: { prompt: { '1': { class_type: 'NoSuchNode', inputs: {} } } } });
    await check('/api/gateway/run', 'post', '/api/gateway/run', { body: { prompt: SAVE_WORKFLOW } });
    const login = await check('/login', 'post', '/login', { body: { api_key: user.api_key } });
    await check('/login', 'post', '/login', { body: { api_key: 'comfy_nope' } });
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    await check('/logout', 'post', '/logout', { headers: { cookie, origin: gateway.url } });
    await check('/api/keys/{key_id}', 'delete', `/api/keys/${id}`, { key: a });
  });

  test('expired keys get KEY_EXPIRED; rotation keeps the old secret for its grace period', async () => {
    const expiring = await createKey(gateway.url, { name: 'expiring', expires_at: Date.now() / 1000 - 1 }, admin.api_key);
    const refused = await send(gateway.url, '/api/queue', { key: expiring.api_key });
    assert.equal(refused.status, 401);
    assert.equal(refused.json().error_code, 'KEY_EXPIRED');
    const rotating = await createKey(gateway.url, { name: 'rotating' }, admin.api_key);
    const rotated = (
      await send(gateway.url, `/api/keys/${rotating.key_id}/rotate`, { method: 'POST', key: admin.api_key, body: { grace_seconds: 3600 } })
    ).json<{ api_key: string }>();
    assert.equal((await send(gateway.url, '/api/queue', { key: rotated.api_key })).status, 200);
    assert.equal((await send(gateway.url, '/api/queue', { key: rotating.api_key })).status, 200, 'the old secret works during the grace period');
    await send(gateway.url, `/api/keys/${rotating.key_id}/rotate`, { method: 'POST', key: admin.api_key, body: {} });
    assert.equal(
      (await send(gateway.url, '/api/queue', { key: rotated.api_key })).json().error_code,
      'INVALID_KEY',
      'without grace the old secret stops at once',
    );
  });

  test('/metrics after traffic: admin only, Prometheus text with the documented series', async () => {
    await send(gateway.url, '/api/queue', { key: user.api_key });
    await send(gateway.url, '/api/queue', { key: user.api_key });
    await send(gateway.url, '/api/queue', { key: user.api_key });
    await send(gateway.url, '/api/queue', { key: 'comfy_bad' });
    assert.equal((await send(gateway.url, '/metrics')).status, 401);
    assert.equal((await send(gateway.url, '/metrics', { key: user.api_key })).status, 429, 'the user key is over its limit of 3 (its sign-in counted)');
    const res = await send(gateway.url, '/metrics', { key: admin.api_key });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    const value = (pattern: RegExp): number => Number(pattern.exec(res.text)?.[1] ?? NaN);
    assert.ok(value(/^comfy_gate_http_requests_total\{route="queue",status_class="2xx"\} (\d+)/m) >= 2);
    assert.ok(value(/^comfy_gate_http_requests_total\{route="queue",status_class="4xx"\} (\d+)/m) >= 2);
    assert.ok(value(/^comfy_gate_rate_limited_total (\d+)/m) >= 1);
    assert.ok(value(/^comfy_gate_auth_failures_total\{code="INVALID_KEY"\} (\d+)/m) >= 1);
    assert.ok(value(/^comfy_gate_http_request_duration_seconds_count\{route="queue"\} (\d+)/m) >= 4);
    assert.match(res.text, /^comfy_gate_websockets_open \d+/m);
    assert.ok(value(new RegExp(`^comfy_gate_key_requests_total\\{key_id="${user.key_id}",status_class="2xx"\\} (\\d+)`, 'm')) >= 2);
    assert.match(res.text, /^comfy_gate_process_resident_memory_bytes \d+/m);
    assert.ok(value(/^comfy_gate_store_write_duration_seconds_count\{store="keys"\} (\d+)/m) >= 1, 'key writes are timed');
    assert.ok(value(/^comfy_gate_store_write_duration_seconds_count\{store="usage"\} (\d+)/m) >= 1, 'usage appends are timed');
  });

  test('one JSON log line per request with its X-Request-Id; no key, cookie or Authorization ever logged', async () => {
    const res = await send(gateway.url, '/api/system_stats?token=abc', {
      key: admin.api_key,
      headers: { 'x-request-id': 'trace-123', authorization: `Bearer ${admin.api_key}`, cookie: 'comfy_gate_session=secret-cookie' },
    });
    assert.equal(res.headers['x-request-id'], 'trace-123');
    assert.equal(comfy.requests.at(-1)!.headers['x-request-id'], 'trace-123', 'passed on to ComfyUI for tracing');
    const generated = await send(gateway.url, '/healthz');
    assert.match(String(generated.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const lines = gateway
      .output()
      .stdout.split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const line = lines.find((l) => l.req_id === 'trace-123')!;
    assert.ok(line, 'a line for the request');
    assert.equal(line.method, 'GET');
    assert.equal(line.path, '/api/system_stats', 'no query string');
    assert.equal(line.status, 200);
    assert.equal(line.key_id, admin.key_id);
    assert.equal(typeof line.duration_ms, 'number');
    const all = gateway.output().stdout + gateway.output().stderr;
    for (const secret of [admin.api_key, user.api_key, 'secret-cookie']) assert.equal(all.includes(secret), false);
  });

  test("one JSON log line per WebSocket once it has ended: its key, status, how long it was open; not its key's secret", async () => {
    const socket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=log-line-socket`, { 'x-api-key': admin.api_key });
    await socket.close();
    const line = await waitFor(
      () =>
        gateway
          .output()
          .stdout.split('\n')
          .filter((text) => text.startsWith('{'))
          .map((text) => JSON.parse(text) as Record<string, unknown>)
          .find((entry) => entry.msg === 'websocket' && entry.key_id === admin.key_id),
      "the socket's log line",
    );
    assert.deepEqual(
      { method: line.method, path: line.path, status: line.status, level: line.level, service: line.service },
      { method: 'GET', path: '/ws', status: 101, level: 30, service: 'comfy-gate' },
    );
    assert.equal(typeof line.duration_ms, 'number');
    assert.equal(typeof line.ip, 'string');
    assert.equal('req_id' in line, false);
    assert.equal(gateway.output().stdout.includes(admin.api_key), false);
  });

  test('the audit trail records key changes and sign-ins with who, what, when and where', async () => {
    const since = Date.now() / 1000 - 1;
    const victim = await createKey(gateway.url, { name: 'audited' }, admin.api_key);
    await send(gateway.url, `/api/keys/${victim.key_id}`, { method: 'PATCH', key: admin.api_key, body: { is_active: false } });
    await send(gateway.url, `/api/keys/${victim.key_id}`, { method: 'PATCH', key: admin.api_key, body: { is_active: true } });
    await send(gateway.url, `/api/keys/${victim.key_id}`, { method: 'PATCH', key: admin.api_key, body: { name: 'renamed' } });
    await send(gateway.url, `/api/keys/${victim.key_id}/rotate`, { method: 'POST', key: admin.api_key, body: {} });
    await send(gateway.url, '/login', { method: 'POST', body: { api_key: admin.api_key } });
    await send(gateway.url, `/api/keys/${victim.key_id}`, { method: 'DELETE', key: admin.api_key });
    const res = await send(gateway.url, `/api/audit?since=${since}`, { key: admin.api_key });
    const entries = res.json<{ entries: Array<{ actor: string; action: string; key_id: string; ip: string; ts: number }> }>().entries;
    const forVictim = entries.filter((e) => e.key_id === victim.key_id).map((e) => e.action);
    assert.deepEqual(forVictim, ['key.create', 'key.disable', 'key.enable', 'key.update', 'key.rotate', 'key.delete']);
    assert.ok(entries.every((e) => e.ts >= since && e.ip === '127.0.0.1'));
    assert.ok(entries.filter((e) => e.key_id === victim.key_id).every((e) => e.actor === admin.key_id));
    assert.ok(entries.some((e) => e.action === 'session.sign_in' && e.key_id === admin.key_id));
    const reader = await createKey(gateway.url, { name: 'reader' }, admin.api_key);
    assert.equal((await send(gateway.url, '/api/audit', { key: reader.api_key })).status, 403, 'the audit trail is for admins');
  });
});

describe('--metrics-public', () => {
  test('a scraper reads /metrics without a key', async () => {
    const comfy = await startFakeComfyUI();
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--metrics-public'] });
    try {
      const res = await send(gateway.url, '/metrics');
      assert.equal(res.status, 200);
      assert.match(res.text, /comfy_gate_http_requests_total/);
    } finally {
      await gateway.stop();
      await comfy.close();
    }
  });
});
