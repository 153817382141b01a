// Keyed ComfyUI sockets through the gateway receive their jobs' events from the event hub, once, as the preview type they asked for.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { loadServeConfig } from '../../src/config/load.js';
import { binaryFrameType, readPreviewWithMetadata } from '../../src/events/preview-frames.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { createGatewayServer, type Gateway } from '../../src/server/app.js';
import { createStores } from '../../src/store/index.js';
import { openCollectingSocket, SAVE_WORKFLOW, type CollectingSocket } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { tempUserDirectory } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

describe('keyed sockets get their jobs from the event hub', () => {
  let fake: FakeComfyUI;
  let gateway: Gateway;
  let url: string;
  let folder: { path: string; remove(): Promise<void> };
  let user: CreatedKey;
  let admin: CreatedKey;

  before(async () => {
    fake = await startFakeComfyUI({ previewFrames: true, progressText: true, stepDelayMs: 2 });
    folder = await tempUserDirectory();
    const log = pino({ level: 'silent' });
    const config = loadServeConfig(['--require-api-auth', '--listen', '127.0.0.1', '--port', '0', '--upstream', fake.url, '--user-directory', folder.path], {});
    gateway = createGatewayServer(config, await createStores(config, log), log, createMetrics({ perKey: false }));
    url = `http://127.0.0.1:${(await gateway.listen()).port}`;
    admin = await createKey(url, { name: 'admin', role: 'admin' });
    user = await createKey(url, { name: 'user' }, admin.api_key);
  });

  after(async () => {
    await gateway.close();
    await fake.close();
    await folder.remove();
  });

  /** Opens a socket with a key and sends its feature_flags; resolves once answered. */
  async function open(key: CreatedKey, clientId: string, previewMetadata: boolean): Promise<CollectingSocket> {
    const socket = await openCollectingSocket(`${url.replace('http', 'ws')}/ws?clientId=${clientId}`, { 'x-api-key': key.api_key });
    socket.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: previewMetadata } }));
    await waitFor(() => socket.texts.some((m) => m.type === 'feature_flags'), 'the feature_flags answer');
    return socket;
  }

  /** Queues a prompt through the gateway with a key and the client's own client_id; resolves its id. */
  async function submit(key: CreatedKey, clientId: string): Promise<string> {
    const res = await send(url, '/api/prompt', { method: 'POST', key: key.api_key, body: { prompt: SAVE_WORKFLOW, client_id: clientId } });
    assert.equal(res.status, 200, res.text);
    return res.json<{ prompt_id: string }>().prompt_id;
  }

  const finished = (socket: CollectingSocket, jobId: string): boolean =>
    socket.texts.some((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === jobId);
  const count = (socket: CollectingSocket, type: string): number => socket.texts.filter((m) => m.type === type).length;

  test("a user and an admin socket each get their own job's events and progress text once, and previews as negotiated", async () => {
    const userSocket = await open(user, 'user-client', false);
    const adminSocket = await open(admin, 'admin-client', true);
    const userJob = await submit(user, 'user-client');
    const adminJob = await submit(admin, 'admin-client');
    await waitFor(() => finished(userSocket, userJob) && finished(adminSocket, adminJob), 'both jobs to finish');

    for (const [socket, job] of [
      [userSocket, userJob],
      [adminSocket, adminJob],
    ] as const) {
      assert.equal(count(socket, 'execution_start'), 1, 'delivered once');
      assert.equal(count(socket, 'execution_success'), 1);
      const promptIds = new Set(socket.texts.filter((m) => m.data.prompt_id !== undefined).map((m) => m.data.prompt_id));
      assert.deepEqual([...promptIds], [job], 'only its own job');
      assert.equal(socket.binaries.length, 2, 'one preview and one progress text (ComfyUI broadcasts the text to every socket)');
      assert.equal(binaryFrameType(socket.binaries[1]!), 3);
    }
    const assetsFlag = (socket: CollectingSocket): unknown => socket.texts.find((m) => m.type === 'feature_flags')?.data.assets;
    assert.equal(assetsFlag(userSocket), false, 'a user key is told assets are off: the assets API is refused to it');
    assert.equal(assetsFlag(adminSocket), true, "an admin key gets ComfyUI's flags as they are");
    assert.equal(binaryFrameType(userSocket.binaries[0]!), 1, 'the user asked for plain previews');
    assert.equal(readPreviewWithMetadata(adminSocket.binaries[0]!)?.metadata.prompt_id, adminJob, 'the admin asked for previews with metadata');
    await userSocket.close();
    await adminSocket.close();
  });

  test('a user socket whose first messages are JSON but no object still has its feature_flags read and answered, as ComfyUI reads them', async () => {
    const socket = await openCollectingSocket(`${url.replace('http', 'ws')}/ws?clientId=late-flags`, { 'x-api-key': user.api_key });
    for (const first of ['null', '[1]', '7', '"text"']) socket.ws.send(first);
    socket.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    await waitFor(() => socket.texts.some((m) => m.type === 'feature_flags'), 'the feature_flags answer');
    const job = await submit(user, 'late-flags');
    await waitFor(() => finished(socket, job), 'the job to finish');
    assert.equal(readPreviewWithMetadata(socket.binaries[0]!)?.metadata.prompt_id, job, 'previews with metadata, as the flags asked');
    await socket.close();
  });
});

describe('a user socket that asks for feature flags before ComfyUI has answered the gateway', () => {
  const FLAGS_DELAY_MS = 3000;

  test("is answered once ComfyUI answers the gateway's, with ComfyUI's flags", async () => {
    const fake = await startFakeComfyUI({ featureFlagsDelayMs: FLAGS_DELAY_MS });
    const folder = await tempUserDirectory();
    const log = pino({ level: 'silent' });
    const config = loadServeConfig(['--require-api-auth', '--listen', '127.0.0.1', '--port', '0', '--upstream', fake.url, '--user-directory', folder.path], {});
    const gateway = createGatewayServer(config, await createStores(config, log), log, createMetrics({ perKey: false }));
    try {
      const url = `http://127.0.0.1:${(await gateway.listen()).port}`;
      const listened = Date.now();
      const admin = await createKey(url, { name: 'admin', role: 'admin' });
      const user = await createKey(url, { name: 'user' }, admin.api_key);
      const socket = await openCollectingSocket(`${url.replace('http', 'ws')}/ws?clientId=early-client`, { 'x-api-key': user.api_key });
      socket.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
      const asked = Date.now();
      assert.ok(asked - listened < FLAGS_DELAY_MS, 'the client asked before ComfyUI answered the gateway');
      await waitFor(() => socket.texts.some((m) => m.type === 'feature_flags'), 'the feature_flags answer', 10_000);
      assert.ok(Date.now() - listened >= FLAGS_DELAY_MS - 50, 'answered once ComfyUI had answered');
      const answers = socket.texts.filter((m) => m.type === 'feature_flags');
      assert.deepEqual(
        answers.map((m) => m.data),
        [{ supports_preview_metadata: true, max_upload_size: 104857600, assets: false }],
        "ComfyUI's flags, once, with assets off: the assets API is refused to user keys",
      );
      await socket.close();
    } finally {
      await gateway.close();
      await fake.close();
      await folder.remove();
    }
  });
});
