// The gateway's own clientId, which every key's prompts carry to ComfyUI, can never be joined by a caller without a key, however long the gateway runs.

import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket, queuePrompt, waitForHistory } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

const SHIFTED_CLOCK = pathToFileURL(resolve(import.meta.dirname, '../helpers/shifted-clock.js')).href;

/** Opens a socket without a key; resolves 101 once open (then closes it), or the refusing status. */
function anonymousSocketStatus(gateway: GatewayProcess, clientId: string): Promise<number> {
  return openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws?clientId=${clientId}`, {}).then(
    async (socket) => {
      await socket.close();
      return 101;
    },
    (error: { status?: number }) => error.status ?? 0,
  );
}

describe("the gateway's own clientId, with callers without a key allowed (--enable-api-auth)", () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let user: string;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'], env: { NODE_OPTIONS: `--import ${SHIFTED_CLOCK}` } });
    user = (await createKey(gateway.url, { name: 'user' })).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  test('is refused to a socket without a key, also once a month has passed and other clientIds have been claimed since', async () => {
    const promptId = await queuePrompt(gateway.url, user);
    await waitForHistory(gateway.url, user, promptId);
    // A caller without a key reads ComfyUI's history as it is: the client_id every key's prompt carries is the gateway's.
    const history = (await send(gateway.url, `/api/history/${promptId}`)).json<Record<string, { prompt: [number, string, unknown, { client_id: string }] }>>();
    const gatewayClientId = history[promptId]!.prompt[3].client_id;
    assert.equal(await anonymousSocketStatus(gateway, gatewayClientId), 403);

    process.kill(gateway.pid, 'SIGUSR2');
    // A new claim forgets the clientId claims unused for 30 days.
    const fresh = await openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws?clientId=a-new-one`, { 'x-api-key': user });
    await fresh.close();
    assert.equal(await anonymousSocketStatus(gateway, gatewayClientId), 403);
  });
});
