// The three modes: off (transparent), optional (keys checked when presented), required (deny by default, no path tricks).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { rawStatus, send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';

/** Opens a WebSocket and resolves 'open' or the refusing HTTP status. */
function wsOutcome(url: string, headers: Record<string, string> = {}): Promise<'open' | number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => {
      ws.close();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => undefined);
  });
}

describe('no flag: a transparent proxy', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url });
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('requests pass without a key, and even a bogus key is not checked', async () => {
    assert.equal((await send(gateway.url, '/api/system_stats')).status, 200);
    const res = await send(gateway.url, '/api/queue', { key: 'not-a-key' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-ratelimit-limit'], undefined);
  });

  test('the WebSocket is proxied', async () => {
    assert.equal(await wsOutcome(`ws://127.0.0.1:${gateway.port}/ws?clientId=abc`), 'open');
  });

  test('a /view download comes whole over a download connection, and so do Range and HEAD', async () => {
    const content = randomBytes(1 << 20).toString('hex');
    await writeFile(join(comfy.outputDir, 'plain.txt'), content);
    const whole = await send(gateway.url, '/view?filename=plain.txt&type=output');
    assert.equal(whole.status, 200);
    assert.equal(whole.text, content);
    const part = await send(gateway.url, '/api/view?filename=plain.txt', { headers: { range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.equal(part.text, content.slice(10, 20));
    const head = await send(gateway.url, '/view?filename=plain.txt', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(content.length));
    const asked = comfy.requests.filter((request) => request.url.includes('filename=plain.txt'));
    assert.deepEqual(
      asked.map((request) => [request.method, request.headers.connection]),
      // A download connection says nothing (HTTP/1.1 keeps it open); the pool would say keep-alive.
      [
        ['GET', undefined],
        ['GET', undefined],
        ['HEAD', undefined],
      ],
    );
  });
});

describe('--enable-api-auth: keys are checked when presented', () => {
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

  test('without a key a request passes untracked', async () => {
    const res = await send(gateway.url, '/api/queue');
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-ratelimit-limit'], undefined);
  });

  test('an unknown key is refused, never treated as anonymous', async () => {
    const res = await send(gateway.url, '/api/queue', { key: `comfy_${'A'.repeat(43)}` });
    assert.equal(res.status, 401);
    assert.equal(res.json().error_code, 'INVALID_KEY');
  });

  test('a malformed key and a Bearer key', async () => {
    assert.equal((await send(gateway.url, '/api/queue', { key: 'garbage' })).status, 401);
    const bearer = await send(gateway.url, '/api/queue', { headers: { authorization: `Bearer ${key.api_key}` } });
    assert.equal(bearer.status, 200);
    assert.equal(bearer.headers['x-ratelimit-limit'], '100');
    const forwarded = comfy.requests.at(-1)!;
    assert.equal(forwarded.headers.authorization, undefined, 'our Bearer credential is not forwarded');
  });

  test('a disabled key gets KEY_DISABLED; enabled again it works', async () => {
    assert.equal((await send(gateway.url, `/api/keys/${key.key_id}`, { method: 'PATCH', body: { is_active: false } })).status, 200);
    const res = await send(gateway.url, '/api/queue', { key: key.api_key });
    assert.equal(res.status, 401);
    assert.equal(res.json().error_code, 'KEY_DISABLED');
    assert.equal((await send(gateway.url, `/api/keys/${key.key_id}`, { method: 'PATCH', body: { is_active: true } })).status, 200);
    assert.equal((await send(gateway.url, '/api/queue', { key: key.api_key })).status, 200);
  });

  test('a WebSocket with an invalid key is refused', async () => {
    assert.equal(await wsOutcome(`ws://127.0.0.1:${gateway.port}/ws`, { 'x-api-key': `comfy_${'B'.repeat(43)}` }), 401);
    assert.equal(await wsOutcome(`ws://127.0.0.1:${gateway.port}/ws`, { 'x-api-key': key.api_key }), 'open');
  });
});

describe('--require-api-auth: deny by default', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let key: CreatedKey;
  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--public-path', '/extensions/'] });
    key = await createKey(gateway.url, { name: 'admin' });
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  const protectedTargets = [
    ['GET', '/'],
    ['GET', '/prompt'],
    ['POST', '/prompt'],
    ['POST', '/api/prompt'],
    ['GET', '//prompt'],
    ['GET', '/api//prompt'],
    ['GET', '/%70rompt'],
    ['GET', '/api/%70rompt'],
    ['GET', '/prompt/'],
    ['GET', '/./prompt'],
    ['GET', '/api/../prompt'],
    ['GET', '/PROMPT'],
    ['GET', '/history'],
    ['GET', '/history/abc'],
    ['GET', '/view?filename=ComfyUI_00001_.png'],
    ['POST', '/interrupt'],
    ['POST', '/free'],
    ['POST', '/upload/image'],
    ['GET', '/userdata?dir=workflows'],
    ['GET', '/userdata/workflows%2Fa.json'],
    ['GET', '/internal/logs'],
    ['GET', '/object_info'],
    ['GET', '/system_stats'],
    ['GET', '/queue'],
    ['HEAD', '/prompt'],
    ['OPTIONS', '/prompt'],
    ['DELETE', '/userdata/a'],
    ['PATCH', '/settings'],
    ['GET', '/healthz/../prompt'],
    ['GET', '/extensions/../prompt'],
    ['GET', '/extensions/%2e%2e/prompt'],
    ['GET', '/extensions//../../prompt'],
    ['POST', '/extensions/x.js'],
    ['GET', '/api/usage'],
    ['GET', '/api/keys'],
  ] as const;

  for (const [method, target] of protectedTargets) {
    // A spelling that could be read two ways is refused before the key is even looked at.
    const [status, code] = /%(?!2F)|\/\/|\/\.\.?(\/|$)/.test(target) ? [400, 'INVALID_REQUEST'] : [401, 'AUTH_REQUIRED'];
    test(`${method} ${target} without a key: ${status} ${code}, nothing reaches ComfyUI`, async () => {
      const before = comfy.requests.length;
      const res = await send(gateway.url, target, { method });
      assert.equal(res.status, status);
      if (method !== 'HEAD') assert.equal(res.json().error_code, code);
      assert.equal(comfy.requests.length, before);
    });
  }

  test('an unknown method is refused before anything is forwarded', async () => {
    const before = comfy.requests.length;
    assert.equal(await rawStatus(gateway.port, 'FOO /prompt HTTP/1.1\r\nHost: x\r\n\r\n'), 400);
    assert.equal(comfy.requests.length, before);
  });

  test('a request target that is not a path is refused', async () => {
    assert.equal(await rawStatus(gateway.port, 'GET http://127.0.0.1:1/prompt HTTP/1.1\r\nHost: x\r\n\r\n'), 400);
    assert.equal(await rawStatus(gateway.port, 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n'), 400);
  });

  test('the WebSocket needs a key too', async () => {
    assert.equal(await wsOutcome(`ws://127.0.0.1:${gateway.port}/ws?clientId=x`), 401);
    assert.equal(await wsOutcome(`ws://127.0.0.1:${gateway.port}/api/ws?clientId=x`), 401);
    assert.equal(await wsOutcome(`ws://127.0.0.1:${gateway.port}/ws?clientId=x`, { 'x-api-key': key.api_key }), 'open');
  });

  test('with a key the plain paths are forwarded, and an escaped plain character is refused even for an admin', async () => {
    assert.equal((await send(gateway.url, '/prompt', { key: key.api_key })).status, 200);
    const before = comfy.requests.length;
    const escaped = await send(gateway.url, '/%70rompt', { key: key.api_key });
    assert.equal(escaped.status, 400);
    assert.equal(escaped.json().error_code, 'INVALID_REQUEST');
    assert.equal(comfy.requests.length, before);
  });

  test('public paths: only GET/HEAD of the plain prefix', async () => {
    const res = await send(gateway.url, '/extensions/core/x.js');
    assert.notEqual(res.status, 401);
    assert.equal((await send(gateway.url, '/extensions/core/x.js', { method: 'HEAD' })).status, res.status);
  });

  test('health and readiness need no key', async () => {
    assert.deepEqual((await send(gateway.url, '/healthz')).json(), { status: 'ok' });
    const ready = await send(gateway.url, '/readyz');
    assert.equal(ready.status, 200, ready.text);
  });
});
