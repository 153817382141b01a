// Client faults: clients that hang up early or mid-transfer, slow uploads, and slowloris connections; nothing leaks.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { Socket } from 'node:net';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { startKillableUpstream, type KillableUpstream } from './killable-upstream.js';
import { assertHealthy, memoryMiB, quietBaseline, type Baseline } from './process-probe.js';
import { closeCode, download, openWebSocket, rawSocket, upload } from './transfers.js';

const MiB = 1024 * 1024;
const REPEATS = 3;

describe('client faults', () => {
  let upstream: KillableUpstream;
  let gateway: GatewayProcess;
  let key: string;
  let baseline: Baseline;

  before(async () => {
    upstream = await startKillableUpstream();
    gateway = await startGateway({ upstream: upstream.url, args: ['--require-api-auth', '--log-level', 'warn'] });
    key = (await createKey(gateway.url, { name: 'admin', rate_limit: 10_000_000 })).api_key;
    assert.equal((await send(gateway.url, '/ok', { key })).status, 200);
    baseline = await quietBaseline(gateway);
  });
  after(async () => {
    await gateway.stop();
    await upstream.kill();
  });

  test('clients that hang up before their request is complete', async () => {
    const partials = [
      'GET /o',
      `GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: ${key}\r\n`,
      `POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: ${key}\r\nContent-Length: 100000\r\n\r\nonly a little`,
      `POST /api/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: ${key}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"name": "cut`,
    ];
    for (let i = 0; i < 5; i += 1) {
      await Promise.all(
        partials.map(async (bytes) => {
          const socket = await rawSocket(gateway.port);
          socket.write(bytes);
          await sleep(50);
          socket.destroy();
        }),
      );
    }
    await assertHealthy(gateway, baseline);
  });

  test('a client that hangs up mid-upload: the upload to ComfyUI is cut too', async () => {
    for (let i = 0; i < REPEATS; i += 1) {
      const cut = upstream.waitFor(/^closed \/upload$/);
      const result = await upload(gateway.url, '/upload', {
        key,
        total: 256 * MiB,
        onProgress: (sent, hangUp) => sent >= 8 * MiB && hangUp(),
      });
      assert.equal(result.status, null);
      await cut;
    }
    await assertHealthy(gateway, baseline);
  });

  test('a client that hangs up mid-download: the download from ComfyUI is cut too', async () => {
    // The second way is a `/view` download, which the gateway streams from ComfyUI over a connection of its own.
    for (const [target, closed] of [
      [`/download?bytes=${512 * MiB}`, /^closed \/download$/],
      [`/view?filename=download&bytes=${512 * MiB}`, /^closed \/view$/],
    ] as const) {
      const cut = upstream.waitFor(closed);
      const result = await download(gateway.url, target, key, (bytes, hangUp) => bytes >= 8 * MiB && hangUp());
      assert.equal(result.complete, false);
      await cut;
    }
    await assertHealthy(gateway, baseline);
  });

  test('a client that gives up waiting for an answer: the request to ComfyUI is cut too', async () => {
    for (let i = 0; i < REPEATS; i += 1) {
      const arrived = upstream.waitFor(/^stall$/);
      const cut = upstream.waitFor(/^closed \/stall$/);
      const socket = await rawSocket(gateway.port);
      socket.write(`GET /stall HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: ${key}\r\n\r\n`);
      await arrived;
      socket.destroy();
      await cut;
    }
    await assertHealthy(gateway, baseline);
  });

  test('a WebSocket client that vanishes: the socket to ComfyUI is closed', async () => {
    for (let i = 0; i < REPEATS; i += 1) {
      const opened = await openWebSocket(gateway.url, '/ws', key);
      assert.ok('ws' in opened);
      const cut = upstream.waitFor(/^closed \/ws \d+$/);
      opened.ws.terminate();
      await cut;
      await closeCode(opened.ws, 1000);
    }
    await assertHealthy(gateway, baseline);
  });

  test('slow uploads are streamed through and answered, to ComfyUI and to the management API', async () => {
    const [proxied, managed] = await Promise.all([
      upload(gateway.url, '/upload', { key, total: 64 * 1024, chunkBytes: 1024, pauseMs: 25 }),
      (async () => {
        const body = JSON.stringify({ name: 'typed slowly', rate_limit: 5 });
        const socket = await rawSocket(gateway.port);
        let answer = '';
        socket.setEncoding('utf8').on('data', (text: string) => (answer += text));
        const closed = once(socket, 'close');
        socket.write(
          `POST /api/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        );
        for (const char of body) {
          socket.write(char);
          await sleep(40);
        }
        await closed;
        return answer;
      })(),
    ]);
    assert.equal(proxied.status, 200);
    assert.deepEqual(JSON.parse(proxied.body), { bytes: 64 * 1024 });
    assert.match(managed, /^HTTP\/1\.1 200 /);
    assert.match(managed, /"name":"typed slowly"/);
    await assertHealthy(gateway, baseline);
  });

  test('slowloris: 300 connections trickling their headers do not hold up other clients', async () => {
    const attackers: Socket[] = await Promise.all(Array.from({ length: 300 }, () => rawSocket(gateway.port)));
    for (const socket of attackers) socket.write('GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    let trickling = true;
    const trickle = (async () => {
      for (let n = 0; trickling; n += 1) {
        for (const socket of attackers) socket.write(`X-Slow-${n}: ${n}\r\n`);
        await sleep(200);
      }
    })();
    try {
      for (let round = 0; round < 10; round += 1) {
        const started = Date.now();
        const answers = await Promise.all(Array.from({ length: 10 }, () => send(gateway.url, '/ok', { key })));
        assert.deepEqual(
          answers.map((res) => res.status),
          answers.map(() => 200),
        );
        assert.ok(Date.now() - started < 1000, `round ${round}: 10 requests took ${Date.now() - started} ms beside the slow connections`);
        await sleep(200);
      }
      assert.ok(memoryMiB(gateway.pid).rss < baseline.rssMiB + 64, 'the slow connections hold little memory');
    } finally {
      trickling = false;
      await trickle;
      for (const socket of attackers) socket.destroy();
    }
    await assertHealthy(gateway, baseline);
  });
});
