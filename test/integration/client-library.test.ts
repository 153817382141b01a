// A popular ComfyUI client library (@saintno/comfyui-sdk) runs a workflow through comfy-gate in required mode with an X-API-Key header.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CallWrapper, ComfyApi, PromptBuilder } from '@saintno/comfyui-sdk';
import { PROMPT_ID_MODES, startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { createKey } from '../helpers/keys.js';

const WORKFLOW = {
  '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'model.safetensors' }, _meta: { title: 'Load Checkpoint' } },
  '3': { class_type: 'KSampler', inputs: { seed: 5, steps: 3, model: ['4', 0] }, _meta: { title: 'KSampler' } },
  '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'sdk' }, _meta: { title: 'Save Image' } },
};

for (const promptIds of PROMPT_ID_MODES) {
  describe(`@saintno/comfyui-sdk through the gateway (ComfyUI that ${promptIds} client prompt ids)`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let apiKey: string;

    before(async () => {
      comfy = await startFakeComfyUI({ promptIds });
      gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
      apiKey = (await createKey(gateway.url, { name: 'sdk' })).api_key;
    });
    after(async () => {
      await gateway.stop();
      await comfy.close();
    });

    test('queues a workflow, follows it over the WebSocket and gets its images', async () => {
      const api = new ComfyApi(gateway.url, 'sdk-client', { credentials: { type: 'custom', headers: { 'X-API-Key': apiKey } } });
      try {
        await api.init(3, 200).waitForReady();
        const prompt = new PromptBuilder(WORKFLOW, [], ['images']).setOutputNode('images', '9');
        const output = await new Promise<Record<string, unknown>>((resolve, reject) => {
          new CallWrapper(api, prompt)
            .onFinished((result) => resolve(result))
            .onFailed((error) => reject(error))
            .run()
            .catch(reject);
        });
        const images = (output.images as { images: Array<{ filename: string; type: string }> }).images;
        assert.equal(images.length, 1);
        assert.equal(images[0]!.type, 'output');
        const blob = await api.getImage(images[0]! as never);
        assert.ok(blob.size > 0);
        assert.equal(blob.type, 'image/png');
        const upgrades = comfy.requests.filter((r) => r.url.startsWith('/ws?clientId=sdk-client'));
        assert.equal(upgrades.length, 1);
        assert.equal(upgrades[0]!.headers['x-api-key'], undefined);
      } finally {
        api.destroy();
      }
    });

    test('without the key the library is refused', async () => {
      const api = new ComfyApi(gateway.url, 'no-key');
      try {
        const status = await api.fetchApi('/prompt').then((r) => r.status);
        assert.equal(status, 401);
      } finally {
        api.destroy();
      }
    });
  });
}
