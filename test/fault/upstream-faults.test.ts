// Upstream faults: ComfyUI killed mid-request, mid-upload, mid-download and mid-WebSocket, down, silent, or stalled mid-body.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { startKillableUpstream, type KillableUpstream } from './killable-upstream.js';
import { assertHealthy, quietBaseline, type Baseline } from './process-probe.js';
import { closeCode, download, openWebSocket, upload } from './transfers.js';

const MiB = 1024 * 1024;
const REPEATS = 3;
/** Each route twice: as the pool forwards it, and as a `/view` download, which the gateway streams over a connection of its own. */
const bothWays = (name: string, query = ''): string[] => [`/${name}${query && `?${query}`}`, `/view?filename=${name}${query && `&${query}`}`];

/** Asserts a JSON gateway error: its status and error_code. */
function assertGatewayError(status: number | null, body: string, expectedStatus: number, code: string): void {
  assert.equal(status, expectedStatus, body);
  assert.equal((JSON.parse(body) as { error_code: string }).error_code, code);
}

describe('upstream faults', () => {
  let upstream: KillableUpstream;
  let gateway: GatewayProcess;
  let key: string;
  let baseline: Baseline;

  before(async () => {
    upstream = await startKillableUpstream();
    gateway = await startGateway({ upstream: upstream.url, args: ['--require-api-auth', '--upstream-timeout', '1', '--log-level', 'warn'] });
    key = (await createKey(gateway.url, { name: 'admin', rate_limit: 10_000_000 })).api_key;
    assert.equal((await send(gateway.url, '/ok', { key })).status, 200);
    baseline = await quietBaseline(gateway);
  });
  after(async () => {
    await gateway.stop();
    await upstream.kill();
  });

  test('killed before answering: 502 UPSTREAM_UNAVAILABLE, then served again once it is back', async () => {
    for (const target of [...bothWays('stall'), ...bothWays('stall')]) {
      const arrived = upstream.waitFor(/^stall$/);
      const answer = send(gateway.url, target, { key });
      await arrived;
      await upstream.kill();
      const res = await answer;
      assertGatewayError(res.status, res.text, 502, 'UPSTREAM_UNAVAILABLE');
      await upstream.restart();
      assert.equal((await send(gateway.url, '/ok', { key })).status, 200);
    }
    await assertHealthy(gateway, baseline);
  });

  test('down: 502 UPSTREAM_UNAVAILABLE for HTTP and for a WebSocket upgrade', async () => {
    await upstream.kill();
    try {
      for (let i = 0; i < REPEATS; i += 1) {
        for (const target of bothWays('ok')) {
          const res = await send(gateway.url, target, { key });
          assertGatewayError(res.status, res.text, 502, 'UPSTREAM_UNAVAILABLE');
        }
        const ws = await openWebSocket(gateway.url, '/ws', key);
        assert.ok('status' in ws, 'the upgrade is refused');
        assertGatewayError(ws.status, ws.body, 502, 'UPSTREAM_UNAVAILABLE');
      }
    } finally {
      await upstream.restart();
    }
    await assertHealthy(gateway, baseline);
  });

  test('killed mid-upload: a 502 answer, or a cut connection, and nothing held', async () => {
    for (let i = 0; i < REPEATS; i += 1) {
      const midway = upstream.waitFor(/^upload \d+$/);
      const result = upload(gateway.url, '/upload', { key, total: 256 * MiB });
      await midway;
      await upstream.kill();
      const { status, body, sent } = await result;
      assert.ok(sent < 256 * MiB, 'the upload stopped');
      if (status !== null) assertGatewayError(status, body, 502, 'UPSTREAM_UNAVAILABLE');
      await upstream.restart();
    }
    await assertHealthy(gateway, baseline);
  });

  test('killed mid-download: the client sees the download cut, never a complete-looking answer', async () => {
    for (const target of [...bothWays('download', `bytes=${512 * MiB}`), ...bothWays('download', `bytes=${512 * MiB}`)]) {
      let killing: Promise<void> | undefined;
      const result = await download(gateway.url, target, key, (bytes) => {
        if (bytes >= 8 * MiB) killing ??= upstream.kill();
      });
      await killing;
      assert.equal(result.status, 200);
      assert.equal(result.complete, false, 'a cut download does not end like a complete one');
      assert.ok(result.bytes < 512 * MiB);
      await upstream.restart();
    }
    await assertHealthy(gateway, baseline);
  });

  test('killed mid-WebSocket: the client socket is closed at once', async () => {
    for (let i = 0; i < REPEATS; i += 1) {
      const opened = await openWebSocket(gateway.url, '/ws', key);
      assert.ok('ws' in opened, 'the WebSocket opens');
      assert.equal(opened.first, 'hello');
      const closed = closeCode(opened.ws, 3000);
      await upstream.kill();
      assert.notEqual(await closed, 1000, 'an abnormal end is not reported as a normal close');
      await upstream.restart();
    }
    await assertHealthy(gateway, baseline);
  });

  test('never answers: 504 UPSTREAM_TIMEOUT after --upstream-timeout, for HTTP and a WebSocket upgrade', async () => {
    const started = Date.now();
    const answers = await Promise.all([...bothWays('stall'), '/stall', '/view?filename=stall'].map((target) => send(gateway.url, target, { key })));
    const elapsed = Date.now() - started;
    for (const res of answers) assertGatewayError(res.status, res.text, 504, 'UPSTREAM_TIMEOUT');
    assert.ok(elapsed >= 900 && elapsed < 4000, `answered after ${elapsed} ms, with --upstream-timeout 1`);
    const ws = await openWebSocket(gateway.url, '/ws-stall', key);
    assert.ok('status' in ws, 'the upgrade is refused');
    assertGatewayError(ws.status, ws.body, 504, 'UPSTREAM_TIMEOUT');
    await assertHealthy(gateway, baseline);
  });

  test('stalls mid-body: the download is cut after --upstream-timeout', async () => {
    const started = Date.now();
    const results = await Promise.all([...bothWays('trickle'), ...bothWays('trickle', `length=${MiB}`)].map((target) => download(gateway.url, target, key)));
    for (const result of results) {
      assert.equal(result.status, 200);
      assert.equal(result.complete, false);
      assert.equal(result.bytes, 1024);
    }
    assert.ok(Date.now() - started < 5000, 'cut within a few seconds');
    await assertHealthy(gateway, baseline);
  });

  test('a download whose answer has no length (chunked): asked again through the pool and sent whole', async () => {
    const bytes = 3 * MiB + 5;
    // First on a download connection (no Connection header), then through the pool (keep-alive).
    const asked = upstream.waitFor(/^chunked -$/);
    const askedAgain = upstream.waitFor(/^chunked keep-alive$/);
    const result = await download(gateway.url, `/view?filename=chunked&bytes=${bytes}`, key);
    assert.equal(result.status, 200);
    assert.equal(result.complete, true);
    assert.equal(result.bytes, bytes);
    await asked;
    await askedAgain;
    await assertHealthy(gateway, baseline);
  });
});
