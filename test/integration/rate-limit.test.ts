// Per-key hourly limits: headers, 429s, exactness under concurrency, what counts, and surviving a restart.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

describe('rate limits', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    admin = (await createKey(gateway.url, { name: 'bootstrap admin' })).api_key;
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('the i-th request sees limit − i; the next gets 429 with Retry-After', async () => {
    const key = await createKey(gateway.url, { name: 'five', rate_limit: 5 }, admin);
    for (let i = 1; i <= 5; i += 1) {
      const res = await send(gateway.url, '/api/queue', { key: key.api_key });
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-ratelimit-limit'], '5');
      assert.equal(res.headers['x-ratelimit-remaining'], String(5 - i));
      const reset = Number(res.headers['x-ratelimit-reset']);
      assert.ok(reset > Date.now() / 1000 + 3500 && reset <= Date.now() / 1000 + 3601);
      assert.equal(res.headers['ratelimit-policy'], '"per-key";q=5;w=3600');
      assert.match(String(res.headers.ratelimit), new RegExp(`^"per-key";r=${5 - i};t=\\d+$`));
    }
    const before = comfy.requests.length;
    const refused = await send(gateway.url, '/api/queue', { key: key.api_key });
    assert.equal(refused.status, 429);
    const body = refused.json<{ error: string; error_code: string; limit: number; reset_in: number }>();
    assert.equal(body.error_code, 'RATE_LIMIT_EXCEEDED');
    assert.equal(body.limit, 5);
    assert.ok(body.reset_in > 3500 && body.reset_in <= 3600);
    assert.equal(refused.headers['retry-after'], String(body.reset_in));
    assert.equal(refused.headers['x-ratelimit-remaining'], '0');
    assert.equal(comfy.requests.length, before, 'a refused request does not reach ComfyUI');
  });

  test('401s and 429s do not count; /api/usage does', async () => {
    const key = await createKey(gateway.url, { name: 'three', rate_limit: 3 }, admin);
    const wrong = key.api_key.slice(0, -1) + (key.api_key.endsWith('A') ? 'B' : 'A');
    assert.equal((await send(gateway.url, '/api/queue', { key: wrong })).status, 401);
    const usage = await send(gateway.url, '/api/usage', { key: key.api_key });
    assert.equal(usage.headers['x-ratelimit-remaining'], '2', 'the 401 did not count, /api/usage did');
    await send(gateway.url, '/api/queue', { key: key.api_key });
    await send(gateway.url, '/api/queue', { key: key.api_key });
    for (let i = 0; i < 3; i += 1) assert.equal((await send(gateway.url, '/api/queue', { key: key.api_key })).status, 429);
    const shown = await send(gateway.url, `/api/keys/${key.key_id}`, { key: admin });
    const stats = shown.json<{ usage_stats: { total_requests: number; rate_limited_requests: number } }>().usage_stats;
    assert.equal(stats.total_requests, 3);
    assert.equal(stats.rate_limited_requests, 3);
  });

  test('exact under concurrency: limit N, 3N simultaneous requests, exactly N pass', async () => {
    const n = 40;
    const key = await createKey(gateway.url, { name: 'burst', rate_limit: n }, admin);
    const answers = await Promise.all(Array.from({ length: 3 * n }, () => send(gateway.url, '/api/prompt', { key: key.api_key })));
    assert.equal(answers.filter((r) => r.status === 200).length, n);
    assert.equal(answers.filter((r) => r.status === 429).length, 2 * n);
  });

  test('a WebSocket counts once, with its connected time as duration', async () => {
    const key = await createKey(gateway.url, { name: 'ws', rate_limit: 10 }, admin);
    const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/ws`, { headers: { 'x-api-key': key.api_key } });
    await new Promise((resolve) => ws.once('open', resolve));
    await sleep(300);
    ws.close();
    await new Promise((resolve) => ws.once('close', resolve));
    await sleep(100);
    const res = await send(gateway.url, '/api/usage', { key: key.api_key });
    assert.equal(res.headers['x-ratelimit-remaining'], '8');
    const stats = res.json<{ usage_stats: { total_requests: number; total_duration: number } }>().usage_stats;
    assert.equal(stats.total_requests, 1);
    assert.ok(stats.total_duration >= 0.3 && stats.total_duration < 2, `duration ${stats.total_duration}`);
  });
});

describe('a restart does not reset a count', () => {
  test('SIGTERM and SIGKILL (after the flush interval) keep the window', async () => {
    const comfy = await startFakeComfyUI();
    const dir = await tempUserDirectory();
    try {
      let gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'], userDirectory: dir.path });
      const key = await createKey(gateway.url, { name: 'persist', rate_limit: 6 });
      for (let i = 0; i < 3; i += 1) await send(gateway.url, '/api/queue', { key: key.api_key });
      assert.equal(await gateway.stop('SIGTERM'), 0);
      gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'], userDirectory: dir.path });
      assert.equal((await send(gateway.url, '/api/queue', { key: key.api_key })).headers['x-ratelimit-remaining'], '2');
      await sleep(1100);
      await gateway.stop('SIGKILL');
      gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'], userDirectory: dir.path });
      assert.equal((await send(gateway.url, '/api/queue', { key: key.api_key })).headers['x-ratelimit-remaining'], '1');
      await gateway.stop();
    } finally {
      await comfy.close();
      await dir.remove();
    }
  });
});
