// A required-mode gateway in front of a fake ComfyUI with an admin key and two user keys, one of which has run a prompt: the stage of the bypass suites.

import { queuePrompt, waitForHistory } from './comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI, type FakeComfyUIOptions } from './fake-comfyui.js';
import { startGateway, type GatewayProcess } from './gateway-process.js';
import { createKey, type CreatedKey } from './keys.js';

export interface TwoKeyStage {
  comfy: FakeComfyUI;
  gateway: GatewayProcess;
  admin: string;
  /** The attacker. */
  alice: CreatedKey;
  /** The victim, with one finished prompt. */
  bob: CreatedKey;
  bobPrompt: string;
  /** The file name of an image that bob's prompt produced. */
  bobImage: string;
  close(): Promise<void>;
}

/** Starts the stage; `args` are added to `--require-api-auth`, and ComfyUI is the fake with `comfyOptions`. */
export async function startTwoKeyStage(args: string[] = [], comfyOptions: FakeComfyUIOptions = {}): Promise<TwoKeyStage> {
  const comfy = await startFakeComfyUI(comfyOptions);
  const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', ...args] });
  const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
  const alice = await createKey(gateway.url, { name: 'alice', rate_limit: 100000 }, admin);
  const bob = await createKey(gateway.url, { name: 'bob', rate_limit: 100000 }, admin);
  const bobPrompt = await queuePrompt(gateway.url, bob.api_key);
  const entry = await waitForHistory(gateway.url, bob.api_key, bobPrompt);
  const bobImage = Object.values(entry.outputs as Record<string, { images?: Array<{ filename: string }> }>).find((o) => o.images)!.images![0]!.filename;
  return {
    comfy,
    gateway,
    admin,
    alice,
    bob,
    bobPrompt,
    bobImage,
    async close() {
      await gateway.stop();
      await comfy.close();
    },
  };
}
