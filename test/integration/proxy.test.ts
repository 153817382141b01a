// The proxy path end to end: a prompt over HTTP and WebSocket, frames, close codes, pings, headers, Range, %2F and upstream faults.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { ACTIVE_CONTENT_MODES, startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { multipart } from '../helpers/multipart.js';

const WORKFLOW = {
  '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
  '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'ComfyUI' } },
};

type Message = { type: string; data: Record<string, unknown> };

/** Text messages a socket received that no one has taken yet, and the takers still waiting. */
interface Inbox {
  queued: Message[];
  waiting: Array<{ predicate: (m: Message) => boolean; resolve: (m: Message) => void }>;
}
const inboxes = new WeakMap<WebSocket, Inbox>();

/**
 * Opens a socket with a key. Its text messages are kept from the first byte on: the gateway may send
 * ComfyUI's first frame in the same packet as the upgrade answer, before any listener added after `open`.
 */
function openSocket(url: string, key: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { 'x-api-key': key, ...headers } });
    const inbox: Inbox = { queued: [], waiting: [] };
    inboxes.set(ws, inbox);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const message = JSON.parse(data.toString()) as Message;
      const taker = inbox.waiting.findIndex((w) => w.predicate(message));
      if (taker >= 0) inbox.waiting.splice(taker, 1)[0]!.resolve(message);
      else inbox.queued.push(message);
    });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** The first message (received already, or to come) that matches. */
function nextMessage(ws: WebSocket, predicate: (m: Message) => boolean = () => true): Promise<Message> {
  const inbox = inboxes.get(ws)!;
  const found = inbox.queued.findIndex(predicate);
  if (found >= 0) return Promise.resolve(inbox.queued.splice(found, 1)[0]!);
  return new Promise((resolve) => inbox.waiting.push({ predicate, resolve }));
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

describe('proxying ComfyUI', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let key: CreatedKey;
  let wsBase: string;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--ws-ping-interval', '1', '--allowed-host', 'gw.example'] });
    key = await createKey(gateway.url, { name: 'runner', rate_limit: 10000 });
    wsBase = `ws://127.0.0.1:${gateway.port}`;
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('a full prompt run: WebSocket events in order, history, and the output image via /view', async () => {
    const ws = await openSocket(`${wsBase}/ws?clientId=client-1`, key.api_key);
    const status = await nextMessage(ws);
    assert.equal(status.type, 'status');
    assert.equal(status.data.sid, 'client-1');
    ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    assert.equal((await nextMessage(ws, (m) => m.type === 'feature_flags')).data.supports_preview_metadata, true);

    const seen: string[] = [];
    ws.on('message', (data, isBinary) => {
      if (!isBinary) seen.push((JSON.parse(data.toString()) as Message).type);
    });
    const queued = await send(gateway.url, '/api/prompt', { method: 'POST', key: key.api_key, body: { prompt: WORKFLOW, client_id: 'client-1' } });
    assert.equal(queued.status, 200, queued.text);
    const promptId = queued.json<{ prompt_id: string }>().prompt_id;
    await nextMessage(ws, (m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === promptId);
    ws.close();
    for (const type of ['execution_start', 'executing', 'progress', 'executed', 'execution_success']) assert.ok(seen.includes(type), `${type} relayed`);
    assert.ok(seen.indexOf('execution_start') < seen.indexOf('execution_success'));

    const history = (await send(gateway.url, `/api/history/${promptId}`, { key: key.api_key })).json<
      Record<string, { outputs: Record<string, { images: Array<{ filename: string }> }> }>
    >();
    const image = history[promptId]!.outputs['9']!.images[0]!;
    const view = await send(gateway.url, `/api/view?filename=${encodeURIComponent(image.filename)}&type=output`, { key: key.api_key });
    assert.equal(view.status, 200);
    assert.equal(view.headers['content-type'], 'image/png');
    assert.equal(Buffer.from(view.text, 'latin1').length > 0, true);
  });

  test('text and binary frames both ways, byte for byte', async () => {
    const ws = await openSocket(`${wsBase}/api/ws?clientId=echo`, key.api_key);
    await nextMessage(ws);
    ws.send(JSON.stringify({ type: 'echo', data: 'héllo' }));
    assert.deepEqual((await nextMessage(ws, (m) => m.type === 'echo')).data, 'héllo' as unknown as Record<string, unknown>);
    const payload = Buffer.from([0, 0, 0, 1, 0, 0, 0, 2, 255, 254, 253]);
    const echoed = new Promise<Buffer>((resolve) => ws.on('message', (data, isBinary) => isBinary && resolve(data as Buffer)));
    ws.send(payload);
    assert.deepEqual(await echoed, payload);
    ws.close();
  });

  test('the gateway pings idle WebSockets (keep-alive)', async () => {
    const ws = await openSocket(`${wsBase}/ws?clientId=pinged`, key.api_key);
    await new Promise((resolve) => ws.once('ping', resolve));
    ws.close();
  });

  test('path and query go byte for byte, %2F included', async () => {
    const target = '/api/userdata/workflows%2Fmy%20flow.json?overwrite=true';
    const saved = await send(gateway.url, target, { method: 'POST', key: key.api_key, body: '{"nodes":[]}' });
    assert.equal(saved.status, 200, saved.text);
    assert.equal(comfy.requests.at(-1)!.url, target);
    const read = await send(gateway.url, '/api/userdata/workflows%2Fmy%20flow.json', { key: key.api_key });
    assert.equal(read.text, '{"nodes":[]}');
  });

  test('X-Forwarded-* are added; our credentials and hop-by-hop headers are not forwarded', async () => {
    await send(gateway.url, '/api/system_stats', {
      key: key.api_key,
      headers: { authorization: `Bearer ${key.api_key}`, 'x-custom': 'kept', connection: 'keep-alive, x-drop-me', 'x-drop-me': '1', host: 'gw.example:8443' },
    });
    const { headers } = comfy.requests.at(-1)!;
    assert.equal(headers['x-api-key'], undefined);
    assert.equal(headers.authorization, undefined);
    assert.equal(headers['x-drop-me'], undefined);
    assert.equal(headers['x-custom'], 'kept');
    assert.equal(headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(headers['x-forwarded-proto'], 'http');
    assert.equal(headers['x-forwarded-host'], 'gw.example:8443');
  });

  test("a browser POST and WebSocket with the gateway's Origin pass ComfyUI's origin check", async () => {
    const origin = { origin: gateway.url, 'sec-fetch-site': 'same-origin' };
    const res = await send(gateway.url, '/api/prompt', { method: 'POST', key: key.api_key, headers: origin, body: { prompt: WORKFLOW } });
    assert.equal(res.status, 200, res.text);
    const crossSite = await send(gateway.url, '/api/queue', { key: key.api_key, headers: { ...origin, 'sec-fetch-site': 'cross-site' } });
    assert.equal(crossSite.status, 200);
    const ws = await openSocket(`${wsBase}/ws?clientId=browser`, key.api_key, origin);
    ws.close();
  });

  test('Range requests (206), conditional requests (304) and HEAD are relayed', async () => {
    const history = (await send(gateway.url, '/api/history', { key: key.api_key })).json<
      Record<string, { outputs: Record<string, { images?: Array<{ filename: string }> }> }>
    >();
    const filename = Object.values(history)[0]!.outputs['9']!.images![0]!.filename;
    const file = await readFile(join(comfy.outputDir, filename));
    const target = `/view?filename=${filename}&type=output`;
    const partial = await send(gateway.url, target, { key: key.api_key, headers: { range: 'bytes=0-9' } });
    assert.equal(partial.status, 206);
    assert.equal(partial.headers['content-range'], `bytes 0-9/${file.length}`);
    assert.equal(partial.headers['content-length'], '10');
    const full = await send(gateway.url, target, { key: key.api_key });
    const notModified = await send(gateway.url, target, { key: key.api_key, headers: { 'if-none-match': String(full.headers.etag) } });
    assert.equal(notModified.status, 304);
    const head = await send(gateway.url, target, { method: 'HEAD', key: key.api_key });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(file.length));
    assert.equal(head.text, '');
    // A HEAD answer leaves ComfyUI's connection open for the next request (undici would close it after each one).
    const connectionsBefore = comfy.connectionsAccepted;
    for (let i = 0; i < 5; i += 1) assert.equal((await send(gateway.url, target, { method: 'HEAD', key: key.api_key })).status, 200);
    assert.ok(comfy.connectionsAccepted - connectionsBefore <= 1, `${comfy.connectionsAccepted - connectionsBefore} new connections for 5 HEAD requests`);
  });

  test('the answer to a keyed request is private to it (Cache-Control), unless ComfyUI or the gateway chose otherwise', async () => {
    const history = (await send(gateway.url, '/api/history', { key: key.api_key })).json<
      Record<string, { outputs: Record<string, { images?: Array<{ filename: string }> }> }>
    >();
    const filename = Object.values(history)[0]!.outputs['9']!.images![0]!.filename;
    for (const target of ['/api/history', '/api/queue', '/object_info', `/view?filename=${filename}&type=output`, '/api/prompt', '/api/system_stats'])
      assert.equal((await send(gateway.url, target, { key: key.api_key })).headers['cache-control'], 'private', target);
    assert.equal((await send(gateway.url, '/', { key: key.api_key })).headers['cache-control'], 'no-cache', "ComfyUI's own is kept");
    assert.equal(
      (await send(gateway.url, '/api/usage', { key: key.api_key })).headers['cache-control'],
      'no-store',
      "the gateway's own answers are not kept at all",
    );
    assert.equal((await send(gateway.url, '/api/history')).headers['cache-control'], 'no-store', 'nor is a refusal');
  });

  test("ComfyUI's own errors pass through unchanged", async () => {
    const res = await send(gateway.url, '/api/prompt', { method: 'POST', key: key.api_key, body: { nothing: true } });
    assert.equal(res.status, 400);
    assert.equal(res.json<{ error: { type: string } }>().error.type, 'no_prompt');
    assert.equal((await send(gateway.url, '/view?filename=missing.png', { key: key.api_key })).status, 404);
  });
});

for (const activeContent of ACTIVE_CONTENT_MODES) {
  describe(`an uploaded SVG served back (ComfyUI that serves active files ${activeContent === 'attachment' ? 'as downloads' : 'inline'})`, () => {
    const svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>';
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let admin: string;
    let user: string;

    before(async () => {
      comfy = await startFakeComfyUI({ activeContent });
      gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
      admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
      user = (await createKey(gateway.url, { name: 'user' }, admin)).api_key;
    });
    after(async () => {
      await gateway.stop();
      await comfy.close();
    });

    test("is sandboxed by the gateway, and ComfyUI's own guards, with the Sec-Fetch-Dest they follow, get through", async () => {
      const uploaded = await send(gateway.url, '/api/upload/image', {
        method: 'POST',
        key: user,
        ...multipart([{ name: 'image', filename: 'cat.svg', value: svg }]),
      });
      assert.equal(uploaded.status, 200, uploaded.text);
      const saved = await send(gateway.url, '/api/userdata/cat.svg', { method: 'POST', key: admin, body: svg });
      assert.equal(saved.status, 200, saved.text);
      const targets: Array<[string, string]> = [
        [user, `/api/view?filename=${uploaded.json<{ name: string }>().name}&type=input`],
        [admin, '/api/userdata/cat.svg'],
      ];
      for (const [key, target] of targets) {
        for (const dest of ['document', 'image']) {
          const res = await send(gateway.url, target, { key, headers: { 'sec-fetch-dest': dest } });
          const what = `${target} as ${dest}`;
          assert.equal(res.status, 200, what);
          assert.equal(res.text, svg, what);
          assert.equal(res.headers['content-security-policy'], 'sandbox', what);
          assert.equal(res.headers['x-content-type-options'], 'nosniff', what);
          if (activeContent === 'inline') {
            assert.equal(res.headers['content-type'], 'image/svg+xml', what);
            assert.equal(res.headers['cache-control'], 'private', what);
          } else if (target.includes('/view') && dest === 'image') {
            assert.equal(res.headers['content-type'], 'image/svg+xml', `${what}: shown, as ComfyUI shows an SVG to an <img>`);
          } else {
            assert.equal(res.headers['content-type'], 'application/octet-stream', what);
            assert.match(String(res.headers['content-disposition']), /^attachment/, what);
          }
        }
      }
      if (activeContent === 'attachment') {
        const view = await send(gateway.url, targets[0]![1], { key: user });
        assert.equal(view.headers['cache-control'], 'no-store', "ComfyUI's Cache-Control is kept");
        assert.equal(view.headers.vary, 'Sec-Fetch-Dest');
      }
    });
  });
}

describe('WebSocket close codes are relayed both ways', () => {
  test('client → ComfyUI and ComfyUI → client', async () => {
    const upstream = createServer();
    const wss = new WebSocketServer({ server: upstream });
    /** The close code and reason ComfyUI's side of each relayed socket gets, in the order the sockets were opened. */
    const upstreamCloses: Array<Promise<[number, string]>> = [];
    wss.on('connection', (socket) => {
      socket.on('message', (data) => {
        if (data.toString() === 'close please') socket.close(4321, 'as asked');
      });
      upstreamCloses.push(new Promise((resolve) => socket.once('close', (code, reason) => resolve([code, reason.toString()]))));
    });
    const port = await listen(upstream);
    const gateway = await startGateway({ upstream: `http://127.0.0.1:${port}` });
    try {
      const first = new WebSocket(`ws://127.0.0.1:${gateway.port}/ws`);
      await new Promise((resolve) => first.once('open', resolve));
      first.send('close please');
      const [code, reason] = await new Promise<[number, string]>((resolve) => first.once('close', (c, r) => resolve([c, r.toString()])));
      assert.deepEqual([code, reason], [4321, 'as asked']);

      const second = new WebSocket(`ws://127.0.0.1:${gateway.port}/ws`);
      await new Promise((resolve) => second.once('open', resolve));
      second.close(4000, 'client bye');
      await new Promise((resolve) => second.once('close', resolve));
      // The relay opens its socket to ComfyUI before it accepts the client's, so the second one is known by now.
      assert.equal(upstreamCloses.length, 2);
      assert.deepEqual(await upstreamCloses[1], [4000, 'client bye']);
    } finally {
      await gateway.stop();
      wss.close();
      upstream.close();
    }
  });
});

describe('upstream faults', () => {
  test('ComfyUI down: 502 UPSTREAM_UNAVAILABLE for HTTP and WebSocket, /readyz 503, the gateway keeps running', async () => {
    const closed = createServer();
    const port = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));
    const gateway = await startGateway({ upstream: `http://127.0.0.1:${port}` });
    try {
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', body: { prompt: WORKFLOW } });
      assert.equal(res.status, 502);
      assert.equal(res.json().error_code, 'UPSTREAM_UNAVAILABLE');
      const ws = await new Promise<number>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${gateway.port}/ws`);
        socket.once('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
        socket.once('error', () => undefined);
      });
      assert.equal(ws, 502);
      const ready = await send(gateway.url, '/readyz');
      assert.equal(ready.status, 503);
      assert.match(String(ready.json().upstream), /unreachable/);
      assert.equal((await send(gateway.url, '/healthz')).status, 200);
    } finally {
      await gateway.stop();
    }
  });

  test('ComfyUI slow to accept a WebSocket: 504 UPSTREAM_TIMEOUT after --upstream-timeout, and the keep-alive rounds meanwhile leave the gateway running', async () => {
    const slow = createServer(() => undefined);
    const heldUpgrades: Duplex[] = [];
    slow.on('upgrade', (_req, socket: Duplex) => heldUpgrades.push(socket));
    const port = await listen(slow);
    // The relay's socket to ComfyUI waits 3 s for its upgrade: the keep-alive rounds (every second) come while it connects.
    const gateway = await startGateway({ upstream: `http://127.0.0.1:${port}`, args: ['--upstream-timeout', '3', '--ws-ping-interval', '1'] });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const socket = new WebSocket(`ws://127.0.0.1:${gateway.port}/ws`);
        socket.once('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
        socket.once('error', reject);
      });
      assert.equal(status, 504);
      assert.equal((await send(gateway.url, '/healthz')).status, 200);
    } finally {
      await gateway.stop();
      for (const socket of heldUpgrades) socket.destroy();
      slow.closeAllConnections();
      slow.close();
    }
  });

  test('ComfyUI silent: 504 UPSTREAM_TIMEOUT after --upstream-timeout', async () => {
    const silent = createServer(() => undefined);
    const port = await listen(silent);
    const gateway = await startGateway({ upstream: `http://127.0.0.1:${port}`, args: ['--upstream-timeout', '1'] });
    try {
      const started = Date.now();
      const res = await send(gateway.url, '/api/object_info');
      assert.equal(res.status, 504);
      assert.equal(res.json().error_code, 'UPSTREAM_TIMEOUT');
      assert.ok(Date.now() - started < 5000);
      assert.equal((await send(gateway.url, '/healthz')).status, 200);
    } finally {
      await gateway.stop();
      silent.closeAllConnections();
      silent.close();
    }
  });
});
