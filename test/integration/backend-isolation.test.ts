// Two keys' files on a gateway in front of two ComfyUIs: while a backend is down, no key gets another key's file of the same name from the other.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { waitForHistory } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { multipart } from '../helpers/multipart.js';
import { waitFor } from '../helpers/wait-for.js';

const NAMES = ['a', 'b'] as const;
/** Long enough for a backend to be confirmed down (3 failed checks, 2 seconds apart). */
const DOWN_WITHIN_MS = 15_000;

interface ReadyBackend {
  name: string;
  state: string;
  events: string;
}

describe('files of two keys across two backends', () => {
  let fakes: FakeComfyUI[] = [];
  let gateway: GatewayProcess | undefined;
  let userDirectory: { path: string; remove(): Promise<void> } | undefined;
  let admin = '';
  let alice = '';
  let bob = '';

  async function startGatewayOnFakes(): Promise<void> {
    const upstreams = fakes.flatMap((fake, i) => ['--upstream', `${fake.url}#name=${NAMES[i]}`]);
    gateway = await startGateway({ upstream: null, userDirectory: userDirectory!.path, args: [...upstreams, '--require-api-auth'] });
    await backendsAre(['up', 'up']);
  }

  async function backendsAre(states: readonly string[]): Promise<void> {
    await waitFor(
      async () => {
        const backends = (await send(gateway!.url, '/readyz')).json<{ backends: ReadyBackend[] }>().backends;
        return NAMES.every((name, i) => {
          const backend = backends.find((b) => b.name === name);
          return backend?.state === states[i] && (states[i] !== 'up' || backend?.events === 'connected');
        });
      },
      `backends ${states.join(', ')}`,
      DOWN_WITHIN_MS,
    );
  }

  const upload = (key: string, filename: string, content: string): Promise<TestResponse> =>
    send(gateway!.url, '/api/upload/image', { method: 'POST', key, ...multipart([{ name: 'image', filename, value: content }]) });

  const view = (key: string, query: string): Promise<TestResponse> => send(gateway!.url, `/api/view?${query}`, { key });

  beforeEach(async () => {
    fakes = [await startFakeComfyUI({ stepDelayMs: 2 }), await startFakeComfyUI({ stepDelayMs: 2 })];
    userDirectory = await tempUserDirectory();
    await startGatewayOnFakes();
    admin = (await createKey(gateway!.url, { name: 'admin', role: 'admin' })).api_key;
    alice = (await createKey(gateway!.url, { name: 'alice', rate_limit: 100_000 }, admin)).api_key;
    bob = (await createKey(gateway!.url, { name: 'bob', rate_limit: 100_000 }, admin)).api_key;
  });
  afterEach(async () => {
    await gateway?.stop();
    // A fake a test stopped is stopped again: that may fail, and changes nothing.
    await Promise.allSettled(fakes.map((fake) => fake.close()));
    await userDirectory?.remove();
  });
  test("a user key's upload while a backend is down is refused, so another key's upload of that name cannot land on it when it is back", async () => {
    const port = fakes[0]!.port;
    await fakes[0]!.close();
    await backendsAre(['down', 'up']);
    const during = await upload(alice, 'shared.png', 'ALICE');
    const storedDuring = existsSync(join(fakes[1]!.inputDir, 'shared.png'));
    fakes[0] = await startFakeComfyUI({ stepDelayMs: 2, port });
    await backendsAre(['up', 'up']);
    const later = await upload(bob, 'shared.png', 'BOB');
    const seen = await view(alice, 'filename=shared.png&type=input');
    assert.notEqual(seen.text, 'BOB', "alice is never served bob's upload");

    assert.equal(during.status, 502, during.text);
    const refusal = during.json<{ error_code: string; failed: Array<{ backend: string; problem: string }> }>();
    assert.equal(refusal.error_code, 'UPLOAD_INCOMPLETE');
    assert.deepEqual(refusal.failed, [{ backend: 'a', problem: "is down, and a user key's upload must reach every backend" }]);
    assert.equal(storedDuring, false, 'no backend stored it');
    assert.equal(seen.status, 404);
    assert.equal(later.status, 200, later.text);
    assert.equal((await view(bob, 'filename=shared.png&type=input')).text, 'BOB');
  });

  test("another key's newer output of the name the key owns is served to it in no spelling, even where only that key's backend still has it", async () => {
    const save = {
      '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
      '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'shot' } },
    };
    const run = async (key: string): Promise<number> => {
      const queued = await send(gateway!.url, '/api/prompt', { method: 'POST', key, body: { prompt: save } });
      assert.equal(queued.status, 200, queued.text);
      const id = queued.json<{ prompt_id: string }>().prompt_id;
      await waitForHistory(gateway!.url, key, id);
      return NAMES.indexOf((await send(gateway!.url, `/api/gateway/jobs/${id}`, { key: admin })).json<{ backend: (typeof NAMES)[number] }>().backend);
    };
    // Bob's job saves shot_00001_.png first, so the name is his; alice's job saves her own under that name on the other backend.
    const bobs = await run(bob);
    const alices = await run(alice);
    assert.notEqual(alices, bobs, 'each job ran on its own backend');
    await waitFor(async () => (await view(bob, 'filename=shot_00001_.png&type=output')).status === 404, "the name's newest file is alice's");
    // A node may open any string as a file: one naming the name in another case could run where alice's file is.
    const reading = await send(gateway!.url, '/api/prompt', {
      method: 'POST',
      key: bob,
      body: { prompt: { '1': { class_type: 'CustomLoader', inputs: { path: 'SHOT_00001_.PNG [output]' } } } },
    });
    assert.equal(reading.status, 403, reading.text);
    // Bob's file is gone from his backend (its disk was cleaned or replaced): alice's backend alone has a file of the name.
    await rm(join(fakes[bobs]!.outputDir, 'shot_00001_.png'));
    for (const query of ['filename=shot_00001_.png&subfolder=.&type=output', 'filename=shot_00001_.png&subfolder=./&type=output', 'filename=shot_00001_.png']) {
      const seen = await view(bob, query);
      assert.equal(seen.status, 404, `${query}: alice's file is not bob's`);
    }
  });

  test("a file of the key's name that no known job made may be another key's on a backend: neither ComfyUI's cache nor a node gives it to the key", async () => {
    await gateway!.stop();
    await Promise.all(fakes.map((fake) => fake.close()));
    fakes = [await startFakeComfyUI({ stepDelayMs: 2, cachedOutputs: true }), await startFakeComfyUI({ stepDelayMs: 2, cachedOutputs: true })];
    await startGatewayOnFakes();
    const graph = (prefix: string): Record<string, unknown> => ({
      '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
      '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: prefix } },
    });
    const run = async (key: string, prefix: string): Promise<string> => {
      const queued = await send(gateway!.url, '/api/prompt', { method: 'POST', key, body: { prompt: graph(prefix) } });
      assert.equal(queued.status, 200, queued.text);
      const id = queued.json<{ prompt_id: string }>().prompt_id;
      await waitForHistory(gateway!.url, key, id);
      return (await send(gateway!.url, `/api/gateway/jobs/${id}`, { key: admin })).json<{ backend: string }>().backend;
    };
    // Bob's graph saves shot_00001_.png on a first, so the name is his; alice's same graph saves hers under that name on b.
    assert.deepEqual([await run(bob, 'shot'), await run(alice, 'shot')], ['a', 'b']);
    await writeFile(join(fakes[1]!.outputDir, 'shot_00001_.png'), 'ALICE');
    // The job registry forgets both jobs (they outlived --job-retention-days); the name stays bob's.
    await gateway!.stop();
    for (const file of await readdir(userDirectory!.path)) if (file.startsWith('jobs.')) await rm(join(userDirectory!.path, file));
    await startGatewayOnFakes();
    // A node may open any string as a file: the name, no known job's, could be read on b.
    const reading = await send(gateway!.url, '/api/prompt', {
      method: 'POST',
      key: bob,
      body: { prompt: { '1': { class_type: 'CustomLoader', inputs: { path: 'shot_00001_.png [output]' } } } },
    });
    assert.equal(reading.status, 403, reading.text);
    // Bob's same graph runs on b, whose cache gives the file alice's prompt made there.
    assert.deepEqual([await run(bob, 'other'), await run(bob, 'shot')], ['a', 'b']);
    const seen = await view(bob, 'filename=shot_00001_.png&type=output');
    assert.notEqual(seen.text, 'ALICE', "bob is never served alice's file of his name");
    assert.equal(seen.status, 404);
  });

  test('an output no known job made is not served while a backend that may hold the key’s own file is down', async () => {
    const queued = await send(gateway!.url, '/api/prompt', {
      method: 'POST',
      key: alice,
      body: {
        prompt: {
          '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
          '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'shot' } },
        },
      },
    });
    assert.equal(queued.status, 200, queued.text);
    const id = queued.json<{ prompt_id: string }>().prompt_id;
    await waitForHistory(gateway!.url, alice, id);
    const job = (await send(gateway!.url, `/api/gateway/jobs/${id}`, { key: admin })).json<{ backend: string }>();
    const own = NAMES.indexOf(job.backend as (typeof NAMES)[number]);
    const other = 1 - own;
    const [name] = await readdir(fakes[own]!.outputDir);
    assert.equal(name, 'shot_00001_.png');
    // Another key's output of the same name on the other backend (each ComfyUI numbers its own).
    await writeFile(join(fakes[other]!.outputDir, name), 'BOB');
    // Once the registry lists the file as her job's, it is served from her job's backend.
    await waitFor(async () => (await view(alice, `filename=${name}&type=output`)).status === 200, 'her output served');

    // The job registry forgets the job (it outlived --job-retention-days); the file stays alice's.
    await gateway!.stop();
    for (const file of await readdir(userDirectory!.path)) if (file.startsWith('jobs.')) await rm(join(userDirectory!.path, file));
    await startGatewayOnFakes();
    assert.equal((await view(alice, `filename=${name}&type=output`)).status, 404, 'both backends have the name: neither is known to be hers');

    await fakes[own]!.close();
    const states = NAMES.map((_, i) => (i === own ? 'down' : 'up'));
    await backendsAre(states);
    const seen = await view(alice, `filename=${name}&type=output`);
    assert.notEqual(seen.text, 'BOB', "alice is never served the other backend's file of her name");
    assert.equal(seen.status, 404);
  });
});
