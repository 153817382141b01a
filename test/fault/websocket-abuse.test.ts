// WebSocket abuse: malformed upgrades, too many sockets per key, oversized messages and floods; the gateway's memory stays bounded.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { startKillableUpstream, type KillableUpstream } from './killable-upstream.js';
import { assertHealthy, memoryMiB, quietBaseline, type Baseline } from './process-probe.js';
import { openRawWebSocket, rawAnswer, sendLargeFrame, upgradeRequest } from './raw-websocket.js';
import { closeCode } from './transfers.js';

const MiB = 1024 * 1024;
const MAX_PER_KEY = 4;
/** How much the gateway's resident memory may grow under any of these abuses. */
const RSS_BOUND_MIB = 200;

/** Opens a WebSocket with `key`; resolves it once open, or the status and body of the refusal. */
function openSocket(gateway: GatewayProcess, path: string, key: string): Promise<WebSocket | { status: number; body: string }> {
  const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}${path}`, { headers: { 'x-api-key': key } });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (text: string) => (body += text));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    ws.once('error', reject);
  });
}

async function mustOpen(gateway: GatewayProcess, path: string, key: string): Promise<WebSocket> {
  const opened = await openSocket(gateway, path, key);
  if (opened instanceof WebSocket) return opened;
  assert.fail(`the upgrade was refused: ${opened.status} ${opened.body}`);
}

/** Opens a socket, trying again for a while as long as the key is over its socket cap (slots free up when the gateway sees a close). */
async function openOnceFree(gateway: GatewayProcess, path: string, key: string): Promise<WebSocket> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const opened = await openSocket(gateway, path, key);
    if (opened instanceof WebSocket) return opened;
    assert.equal(opened.status, 429, opened.body);
    await sleep(50);
  }
  throw new Error('the slot never came free');
}

/** Resolves once `condition` holds, or false after `timeoutMs`. */
async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(10)) {
    if (condition()) return true;
  }
  return condition();
}

function assertMemoryBounded(gateway: GatewayProcess, baseline: Baseline, what: string): void {
  const { peak } = memoryMiB(gateway.pid);
  assert.ok(peak < baseline.rssMiB + RSS_BOUND_MIB, `${what}: the gateway's memory peaked at ${peak.toFixed(0)} MiB, from ${baseline.rssMiB.toFixed(0)} MiB`);
}

/** Memory comes back once the sockets are gone (given a moment for the garbage collector). */
async function assertMemoryBack(gateway: GatewayProcess, baseline: Baseline): Promise<void> {
  const back = await waitUntil(() => memoryMiB(gateway.pid).rss < baseline.rssMiB + RSS_BOUND_MIB / 2, 10_000);
  assert.ok(back, `memory stayed at ${memoryMiB(gateway.pid).rss.toFixed(0)} MiB, from ${baseline.rssMiB.toFixed(0)} MiB`);
}

describe('WebSocket upgrades: malformed ones and the per-key socket cap', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let alice: string;
  let bob: string;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--ws-max-per-key', String(MAX_PER_KEY), '--log-level', 'warn'] });
    const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
    alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 100_000 }, admin)).api_key;
    bob = (await createKey(gateway.url, { name: 'bob', rate_limit: 100_000 }, admin)).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  const upgradesAtComfy = (): number => comfy.requests.filter((r) => r.headers.upgrade !== undefined).length;

  test('a malformed upgrade gets 400 INVALID_REQUEST before it is counted or reaches ComfyUI', async () => {
    const malformed: Record<string, Record<string, string | null>> = {
      'no Sec-WebSocket-Key': { 'sec-websocket-key': null },
      'an empty Sec-WebSocket-Key': { 'sec-websocket-key': '' },
      'a Sec-WebSocket-Key that is not base64': { 'sec-websocket-key': 'not base64 at all!!!!!==' },
      'a Sec-WebSocket-Key of 15 bytes': { 'sec-websocket-key': Buffer.alloc(15, 1).toString('base64') },
      'a Sec-WebSocket-Key of 17 bytes': { 'sec-websocket-key': Buffer.alloc(17, 1).toString('base64') },
      'no Sec-WebSocket-Version': { 'sec-websocket-version': null },
      'Sec-WebSocket-Version 8': { 'sec-websocket-version': '8' },
      'Sec-WebSocket-Version 14': { 'sec-websocket-version': '14' },
      'no Connection: upgrade': { connection: null },
      'Connection: keep-alive': { connection: 'keep-alive' },
      'a malformed Sec-WebSocket-Protocol': { 'sec-websocket-protocol': 'a b, c' },
      'a repeated Sec-WebSocket-Protocol': { 'sec-websocket-protocol': 'chat, chat' },
    };
    const before = await send(gateway.url, '/api/usage?days=1', { key: alice });
    const upgradesBefore = upgradesAtComfy();
    const requestsBefore = comfy.requests.length;
    for (const [what, headers] of Object.entries(malformed)) {
      const answer = await rawAnswer(gateway.port, upgradeRequest('/ws?clientId=alice-malformed', { 'x-api-key': alice, ...headers }));
      assert.equal(answer.status, 400, `${what}: ${answer.head}\n${answer.body}`);
      assert.equal(JSON.parse(answer.body).error_code, 'INVALID_REQUEST', what);
    }
    assert.equal(upgradesAtComfy(), upgradesBefore, 'ComfyUI received an upgrade');
    assert.equal(comfy.requests.length, requestsBefore, 'ComfyUI received a request');
    const afterwards = await send(gateway.url, '/api/usage?days=1', { key: alice });
    assert.equal(Number(afterwards.headers['x-ratelimit-remaining']), Number(before.headers['x-ratelimit-remaining']) - 1, 'a malformed upgrade was counted');
    // The same handshake, well formed, goes through.
    const good = await openRawWebSocket(gateway.port, '/ws?clientId=alice-malformed', { 'x-api-key': alice });
    good.socket.destroy();
  });

  test(`a key holds at most ${MAX_PER_KEY} sockets: 429 TOO_MANY_WEBSOCKETS before ComfyUI is asked, and closed sockets free their slots`, async () => {
    const open: WebSocket[] = [];
    for (let i = 0; i < MAX_PER_KEY; i += 1) open.push(await mustOpen(gateway, `/ws?clientId=alice-${i}`, alice));
    const upgradesBefore = upgradesAtComfy();
    const remainingBefore = Number((await send(gateway.url, '/api/usage?days=1', { key: alice })).headers['x-ratelimit-remaining']);
    for (let i = 0; i < 3; i += 1) {
      const refused = await openSocket(gateway, `/ws?clientId=alice-extra-${i}`, alice);
      assert.ok(!(refused instanceof WebSocket), 'a socket over the cap was opened');
      assert.equal(refused.status, 429);
      assert.equal(JSON.parse(refused.body).error_code, 'TOO_MANY_WEBSOCKETS');
    }
    assert.equal(upgradesAtComfy(), upgradesBefore, 'ComfyUI received an upgrade over the cap');
    const remainingAfter = Number((await send(gateway.url, '/api/usage?days=1', { key: alice })).headers['x-ratelimit-remaining']);
    assert.equal(remainingAfter, remainingBefore - 1, 'a refused upgrade was counted against the rate limit');

    // Another key has its own slots.
    const bobs = await mustOpen(gateway, '/ws?clientId=bob-0', bob);

    // A clean close, and a client that vanishes, each give a slot back.
    open.shift()!.close(1000);
    open.push(await openOnceFree(gateway, '/ws?clientId=alice-again-0', alice));
    open.shift()!.terminate();
    open.push(await openOnceFree(gateway, '/ws?clientId=alice-again-1', alice));
    const full = await openSocket(gateway, '/ws?clientId=alice-extra', alice);
    assert.ok(!(full instanceof WebSocket) && full.status === 429, 'the cap no longer holds after slots were given back');

    // Upgrades refused after the slot was taken (another key's clientId) give it back.
    for (const ws of open) ws.close(1000);
    bobs.close(1000);
    const first = await openOnceFree(gateway, '/ws?clientId=alice-first', alice);
    for (let i = 0; i < 2 * MAX_PER_KEY; i += 1) {
      const stolen = await openSocket(gateway, '/ws?clientId=bob-0', alice);
      assert.ok(!(stolen instanceof WebSocket) && stolen.status === 403, `another key's clientId was not refused: ${JSON.stringify(stolen)}`);
    }
    const rest = [first];
    for (let i = 1; i < MAX_PER_KEY; i += 1) rest.push(await openOnceFree(gateway, `/ws?clientId=alice-last-${i}`, alice));
    for (const ws of rest) ws.close(1000);
  });
});

describe('WebSocket memory under abuse', () => {
  let upstream: KillableUpstream;
  let gateway: GatewayProcess;
  let admin: string;
  /** Five keys for the 20 sockets of the first test, one for the flood. */
  let users: string[];
  let baseline: Baseline;

  before(async () => {
    upstream = await startKillableUpstream();
    gateway = await startGateway({
      upstream: upstream.url,
      // A user key reaches the stalled upstream's path as it would a custom node's socket.
      args: ['--require-api-auth', '--ws-max-per-key', String(MAX_PER_KEY), '--ws-ping-interval', '10', '--user-route', 'GET:/ws-deaf', '--log-level', 'warn'],
    });
    admin = (await createKey(gateway.url, { name: 'admin', rate_limit: 100_000 })).api_key;
    users = [];
    for (let i = 0; i < 6; i += 1) users.push((await createKey(gateway.url, { name: `user-${i}`, rate_limit: 100_000 }, admin)).api_key);
    baseline = await quietBaseline(gateway);
  });
  after(async () => {
    await gateway?.stop();
    await upstream?.kill();
  });

  test('20 user-key sockets each sending a 60 MiB frame are closed with 1009; memory stays bounded and comes back', async () => {
    const sockets = await Promise.all(
      Array.from({ length: 20 }, (_, i) => openRawWebSocket(gateway.port, `/ws?clientId=big-${i}`, { 'x-api-key': users[i % 5]! })),
    );
    const sent = await Promise.all(sockets.map((raw) => sendLargeFrame(raw, 60 * MiB)));
    const codes = await Promise.all(sockets.map((raw) => raw.closed));
    for (const raw of sockets) raw.socket.destroy();
    assert.deepEqual(codes, Array(20).fill(1009), `close codes after ${sent.map((n) => n / MiB).join(', ')} MiB sent`);
    assertMemoryBounded(gateway, baseline, '60 MiB frames');
    await assertMemoryBack(gateway, baseline);
  });

  test('an oversized message closes its sender with 1009 and the other side cleanly with 1001: 4 MiB from a client, 64 MiB from ComfyUI', async () => {
    // An admin's socket is relayed to ComfyUI (a user key's is the gateway's own, with no other side).
    const fromClient = await openRawWebSocket(gateway.port, '/ws?clientId=oversized', { 'x-api-key': admin });
    const upstreamClosed = upstream.waitFor(/^closed \/ws \d+$/, 10_000);
    await sendLargeFrame(fromClient, 4 * MiB + 1);
    assert.equal(await fromClient.closed, 1009);
    fromClient.socket.destroy();
    assert.equal(await upstreamClosed, 'closed /ws 1001');

    // ComfyUI sets no limit of its own and sends whole images (SaveImageWebsocket): up to 64 MiB passes.
    const bigOutput = await mustOpen(gateway, `/ws-big?bytes=${5 * MiB}`, admin);
    const output = await new Promise<number>((resolve) => bigOutput.on('message', (data, isBinary) => isBinary && resolve((data as Buffer).length)));
    assert.equal(output, 5 * MiB);
    const outputClosed = upstream.waitFor(/^closed \/ws-big \d+$/, 10_000);
    bigOutput.close(1000);
    assert.equal(await outputClosed, 'closed /ws-big 1000');
    const upstreamRefused = upstream.waitFor(/^closed \/ws-big \d+$/, 10_000);
    const client = await mustOpen(gateway, `/ws-big?bytes=${64 * MiB + 1}`, admin);
    assert.equal(await closeCode(client, 10_000), 1001);
    assert.equal(await upstreamRefused, 'closed /ws-big 1009');

    // A client's message of exactly ComfyUI's limit goes through.
    const echo = await mustOpen(gateway, '/ws', admin);
    const received = new Promise<number>((resolve) => echo.on('message', (data, isBinary) => isBinary && resolve((data as Buffer).length)));
    echo.send(Buffer.alloc(4 * MiB), { binary: true });
    assert.equal(await received, 4 * MiB);
    echo.close(1000);
  });

  test('a client flooding a ComfyUI that stopped reading is paused: memory stays bounded, and the silent side is cut by the keep-alive', async () => {
    const ws = await mustOpen(gateway, '/ws-deaf', users[5]!);
    const message = Buffer.alloc(MiB, 0x61);
    let sent = 0;
    while (sent < 512 * MiB && ws.readyState === WebSocket.OPEN) {
      ws.send(message, { binary: true });
      sent += message.length;
      if (!(await waitUntil(() => ws.bufferedAmount < 4 * MiB, 2000))) break;
    }
    assert.ok(sent < 128 * MiB, `the gateway took ${sent / MiB} MiB from the client while ComfyUI read nothing`);
    assertMemoryBounded(gateway, baseline, 'a flood towards a deaf ComfyUI');
    assert.equal(await closeCode(ws, 30_000), 1006);
    // ComfyUI's side is closed too: the gateway holds no more sockets than before.
    await assertHealthy(gateway, baseline, { rssSlackMiB: RSS_BOUND_MIB });
    await assertMemoryBack(gateway, baseline);
  });

  test('ComfyUI flooding a client that stopped reading is paused, and everything arrives once the client reads again', async () => {
    const stalled = upstream.waitFor(/^flood (stalled \d+|done)$/, 60_000);
    const ws = await mustOpen(gateway, '/ws-flood', admin);
    ws.pause();
    const line = await stalled;
    assert.match(line, /^flood stalled \d+$/, 'the gateway took every message from ComfyUI while the client read nothing');
    assert.ok(Number(line.split(' ')[2]) < 128, `the gateway took ${line.split(' ')[2]} MiB while the client read nothing`);
    assertMemoryBounded(gateway, baseline, 'a flood towards a paused client');

    let received = 0;
    ws.on('message', (data) => (received += (data as Buffer).length));
    const done = upstream.waitFor(/^flood done$/, 120_000);
    ws.resume();
    await done;
    assert.ok(await waitUntil(() => received === 512 * MiB, 30_000), `the client received ${received / MiB} of 512 MiB`);
    const closed = upstream.waitFor(/^closed \/ws-flood \d+$/, 10_000);
    ws.close(1000);
    assert.equal(await closed, 'closed /ws-flood 1000');
    assertMemoryBounded(gateway, baseline, 'a flood towards a paused client');
    await assertMemoryBack(gateway, baseline);
  });
});
