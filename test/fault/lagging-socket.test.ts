// A keyed socket whose client stops reading (and keeps itself alive with unsolicited pongs) cannot make the gateway hold its events without bound.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket, waitForHistory } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { memoryMiB, quietBaseline, type Baseline } from './process-probe.js';
import { openRawWebSocket, type RawWebSocket } from './raw-websocket.js';

const SOCKETS = 4;
/** Prompts the attacker runs while its sockets read nothing. */
const ROUNDS = 12;
/** Nodes of the attacker's prompt: ComfyUI's `progress_state` names every node begun so far, so its events grow with the square of this. */
const NODES = 300;
/** How much the gateway's resident memory may grow while the attacker's sockets read nothing. */
const RSS_BOUND_MIB = 400;

/** A chain of samplers ending in a save: every node runs, in order. */
function chainPrompt(nodes: number): Record<string, unknown> {
  const prompt: Record<string, unknown> = {};
  for (let i = 1; i <= nodes; i += 1) {
    prompt[String(i)] = { class_type: 'KSampler', inputs: { seed: i, steps: 1, ...(i > 1 ? { latent_image: [String(i - 1), 0] } : {}) } };
  }
  prompt['save'] = { class_type: 'SaveImage', inputs: { images: [String(nodes), 0], filename_prefix: 'chain' } };
  return prompt;
}

/** A masked pong with no payload, which a client may send unasked (RFC 6455 §5.5.3): it keeps the socket from looking dead. */
const UNSOLICITED_PONG = Buffer.from([0x8a, 0x80, 0, 0, 0, 0]);

describe('a keyed socket whose client stops reading', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let alice: string;
  let bob: string;
  let baseline: Baseline;

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 0 });
    gateway = await startGateway({
      upstream: comfy.url,
      args: ['--require-api-auth', '--ws-max-per-key', String(SOCKETS), '--ws-ping-interval', '2', '--log-level', 'warn'],
    });
    const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
    alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 100_000 }, admin)).api_key;
    bob = (await createKey(gateway.url, { name: 'bob', rate_limit: 100_000 }, admin)).api_key;
    baseline = await quietBaseline(gateway);
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  test('is cut once too much waits for it, memory stays bounded, and another key gets its events meanwhile', async () => {
    const stalled: RawWebSocket[] = [];
    for (let i = 0; i < SOCKETS; i += 1) {
      const raw = await openRawWebSocket(gateway.port, '/ws?clientId=lagging', { 'x-api-key': alice });
      raw.socket.pause();
      stalled.push(raw);
    }
    const pongs = setInterval(() => {
      for (const raw of stalled) if (!raw.socket.destroyed) raw.socket.write(UNSOLICITED_PONG);
    }, 250);
    const bobSocket = await openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws?clientId=bob-reads`, { 'x-api-key': bob });
    try {
      for (let round = 0; round < ROUNDS; round += 1) {
        const queued = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt: chainPrompt(NODES), client_id: 'lagging' } });
        assert.equal(queued.status, 200, queued.text);
        const bobQueued = await send(gateway.url, '/api/prompt', {
          method: 'POST',
          key: bob,
          body: { prompt: chainPrompt(2), client_id: 'bob-reads' },
        });
        assert.equal(bobQueued.status, 200, bobQueued.text);
        await waitForHistory(gateway.url, alice, queued.json<{ prompt_id: string }>().prompt_id, 120_000);
        const bobPrompt = bobQueued.json<{ prompt_id: string }>().prompt_id;
        await waitForHistory(gateway.url, bob, bobPrompt, 30_000);
        await sleep(200);
        assert.ok(
          bobSocket.texts.some((message) => message.type === 'execution_success' && message.data.prompt_id === bobPrompt),
          "bob's socket got his prompt's end",
        );
      }
      const { peak } = memoryMiB(gateway.pid);
      assert.ok(peak < baseline.rssMiB + RSS_BOUND_MIB, `the gateway's memory peaked at ${peak.toFixed(0)} MiB, from ${baseline.rssMiB.toFixed(0)} MiB`);
      // Read now, each stalled socket gets what was written before the gateway cut it, then its end.
      clearInterval(pongs);
      for (const raw of stalled) raw.socket.resume();
      const ends = await Promise.all(stalled.map((raw) => Promise.race([raw.closed, sleep(10_000).then(() => 'still open')])));
      assert.deepEqual(ends, Array(SOCKETS).fill(1006));
    } finally {
      clearInterval(pongs);
      for (const raw of stalled) raw.socket.destroy();
      await bobSocket.close();
    }
  });
});
