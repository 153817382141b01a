// What ComfyUI broadcasts to every socket tells a user key's socket nothing of other keys: no message that names no prompt, even while the key's prompt runs, and a queue of its own jobs only.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { binaryFrameType } from '../../src/events/preview-frames.js';
import { openCollectingSocket, queuePrompt, waitForHistory, type CollectingSocket } from '../helpers/comfy-client.js';
import { CUSTOM_BINARY_TYPE } from '../helpers/fake-comfyui.js';
import { send } from '../helpers/http-client.js';
import { startTwoKeyStage, type TwoKeyStage } from '../helpers/two-keys.js';
import { waitFor } from '../helpers/wait-for.js';

describe("ComfyUI's broadcasts on a user key's socket", () => {
  let stage: TwoKeyStage;

  // Slow steps: alice's prompt runs for about two seconds, while bob's request starts a scan.
  before(async () => (stage = await startTwoKeyStage([], { assetScans: true, stepDelayMs: 100, previewFrames: true, customBinaryFrames: true })));
  after(() => stage.close());

  test("a custom node's binary frame of a type ComfyUI does not define, broadcast while alice's prompt runs, reaches admin sockets only", async () => {
    const { gateway, admin } = stage;
    const wsBase = `ws://127.0.0.1:${gateway.port}`;
    const adminSocket = await openCollectingSocket(`${wsBase}/ws?clientId=admin-custom`, { 'x-api-key': admin });
    const aliceSocket = await openCollectingSocket(`${wsBase}/ws?clientId=alice-custom`, { 'x-api-key': stage.alice.api_key });
    const alicePrompt = await queuePrompt(gateway.url, stage.alice.api_key, { client_id: 'alice-custom' });
    await waitForHistory(gateway.url, stage.alice.api_key, alicePrompt);
    await waitFor(() => aliceSocket.texts.some((m) => m.type === 'executing' && m.data.node === null), "alice's last event");
    await waitFor(
      () => adminSocket.binaries.some((frame) => binaryFrameType(frame) === CUSTOM_BINARY_TYPE),
      'the frame on the admin socket, relayed from ComfyUI',
    );

    const types = aliceSocket.binaries.map((frame) => binaryFrameType(frame));
    assert.deepEqual(types, [1], "alice gets her prompt's preview, and no frame of a type the gateway cannot read");
    await adminSocket.close();
    await aliceSocket.close();
  });

  test("a scan that bob's request starts while alice's prompt runs, counting every key's files, reaches her socket in no form", async () => {
    const { comfy, gateway, admin } = stage;
    const [alice, bob] = [stage.alice.api_key, stage.bob.api_key];
    const wsBase = `ws://127.0.0.1:${gateway.port}`;
    const adminSocket = await openCollectingSocket(`${wsBase}/ws?clientId=admin-tab`, { 'x-api-key': admin });
    const aliceSocket = await openCollectingSocket(`${wsBase}/ws?clientId=alice-tab`, { 'x-api-key': alice });
    const alicePrompt = await queuePrompt(gateway.url, alice, { client_id: 'alice-tab' });
    await waitFor(() => aliceSocket.texts.some((m) => m.type === 'execution_start'), "alice's prompt to start");

    // Bob opens the web UI: ComfyUI's seeder scans the folders and broadcasts its counts to every socket.
    const nodes = await send(gateway.url, '/api/object_info', { key: bob });
    assert.equal(nodes.status, 200);
    assert.ok(
      comfy.inFlight().some((p) => p.id === alicePrompt),
      "the scan was broadcast while alice's prompt ran",
    );
    await waitForHistory(gateway.url, alice, alicePrompt);
    await waitFor(() => aliceSocket.texts.some((m) => m.type === 'executing' && m.data.node === null), "alice's last event");
    await waitFor(() => adminSocket.texts.some((m) => m.type === 'assets.seed.completed'), 'the scan on the admin socket, relayed from ComfyUI');

    const types = (socket: CollectingSocket): string[] => socket.texts.map((m) => m.type);
    assert.ok(types(aliceSocket).includes('execution_success'), 'alice gets the events of her own prompt');
    assert.deepEqual(
      types(aliceSocket).filter((type) => type.startsWith('assets.')),
      [],
      'no scan of every key’s files reaches alice',
    );
    await adminSocket.close();
    await aliceSocket.close();
  });

  test("the status of each of ComfyUI's queue changes counts alice's own jobs only, never bob's", async () => {
    const { gateway } = stage;
    const aliceSocket = await openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws?clientId=alice-status`, { 'x-api-key': stage.alice.api_key });
    const bobPrompts = [await queuePrompt(gateway.url, stage.bob.api_key), await queuePrompt(gateway.url, stage.bob.api_key)];
    for (const prompt of bobPrompts) await waitForHistory(gateway.url, stage.bob.api_key, prompt);
    // ComfyUI broadcasts its status as each of bob's prompts is queued, starts and ends: the gateway sends alice one for each.
    const statuses = await waitFor(() => {
      const all = aliceSocket.texts.filter((m) => m.type === 'status');
      return all.length >= 1 + 2 * 3 && all;
    }, "the status of each of bob's queue changes");
    const remaining = statuses.map((m) => (m.data.status as { exec_info: { queue_remaining: number } }).exec_info.queue_remaining);
    assert.deepEqual(new Set(remaining), new Set([0]), `alice has no job: ${JSON.stringify(remaining)}`);
    await aliceSocket.close();
  });
});
