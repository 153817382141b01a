// Routes that span the backends of a gateway in front of two ComfyUIs: uploads to each, the catalog cache, and every backend's /system_stats.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitForHistory } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI, type FakeComfyUIOptions } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

/** Every fake holds its node definitions this long, so that requests for them overlap. */
const FAKE_OPTIONS: FakeComfyUIOptions = { objectInfoDelayMs: 300, stepDelayMs: 2 };
const NAMES = ['a', 'b'] as const;
const BOUNDARY = 'backend-routes-boundary';

interface ReadyBackend {
  name: string;
  state: string;
  events: string;
}

interface SystemStats {
  system: Record<string, unknown>;
  devices: Array<Record<string, unknown>>;
  backends?: Array<{ name: string; system: Record<string, unknown>; devices: unknown[] }>;
}

/** A multipart form with one image part, as a ComfyUI client uploads it. */
function imageForm(filename: string, content: Buffer): { body: Buffer; headers: Record<string, string> } {
  const head = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="${filename}"\r\nContent-Type: image/png\r\n\r\n`;
  return {
    body: Buffer.concat([Buffer.from(head), content, Buffer.from(`\r\n--${BOUNDARY}--\r\n`)]),
    headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
  };
}

/** A prompt whose output is the image a LoadImage node loads, so ComfyUI validates that the file is there. */
function loadingPrompt(image: string): Record<string, unknown> {
  return {
    '1': { class_type: 'LoadImage', inputs: { image } },
    '9': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'loaded' } },
  };
}

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('routes across two backends', () => {
  const fakes: FakeComfyUI[] = [];
  let gateway: GatewayProcess;
  let userDirectory: { path: string; remove(): Promise<void> };
  let admin = '';
  let alice = '';

  /** Requests for `target` that reached any backend running now. */
  const upstreamRequests = (target: string): number => fakes.reduce((sum, fake) => sum + fake.requests.filter((r) => r.url === target).length, 0);

  const everyBackendReady = (): Promise<void> =>
    until(async () => {
      const backends = (await send(gateway.url, '/readyz')).json<{ backends: ReadyBackend[] }>().backends;
      return backends.length === NAMES.length && backends.every((backend) => backend.state === 'up' && backend.events === 'connected');
    }, 'every backend up with its event socket open');

  const upload = (key: string, filename: string, content: Buffer, target = '/api/upload/image'): Promise<TestResponse> =>
    send(gateway.url, target, { method: 'POST', key, ...imageForm(filename, content) });

  /** Whether alice's key may use the input file: /view shows it, and a prompt may load it. */
  async function aliceOwns(name: string): Promise<boolean> {
    const view = await send(gateway.url, `/api/view?filename=${encodeURIComponent(name)}&type=input`, { key: alice });
    return view.status === 200;
  }

  before(async () => {
    for (let i = 0; i < NAMES.length; i += 1) fakes.push(await startFakeComfyUI(FAKE_OPTIONS));
    userDirectory = await tempUserDirectory();
    const upstreams = fakes.flatMap((fake, i) => ['--upstream', `${fake.url}#name=${NAMES[i]}`]);
    gateway = await startGateway({ upstream: null, userDirectory: userDirectory.path, args: [...upstreams, '--require-api-auth'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 100_000 }, admin)).api_key;
    await everyBackendReady();
  });
  after(async () => {
    await gateway?.stop();
    await Promise.all(fakes.map((fake) => fake.close()));
    await userDirectory?.remove();
  });

  test("an upload reaches every backend's input, and a prompt loading it runs on whichever backend it is placed", async () => {
    const content = randomBytes(4 * 1024 * 1024);
    const res = await upload(alice, 'everywhere.png', content);
    assert.equal(res.status, 200, res.text);
    const { name } = res.json<{ name: string }>();
    assert.equal(name, 'everywhere.png');
    for (const fake of fakes) assert.ok(content.equals(await readFile(join(fake.inputDir, name))), 'every backend stored the whole file');
    assert.ok(await aliceOwns(name), "the file is alice's");

    const ids: string[] = [];
    for (let i = 0; i < NAMES.length; i += 1) {
      const queued = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt: loadingPrompt(name) } });
      assert.equal(queued.status, 200, queued.text);
      ids.push(queued.json<{ prompt_id: string }>().prompt_id);
    }
    for (const id of ids) {
      const entry = await waitForHistory(gateway.url, alice, id);
      assert.equal((entry.status as { status_str: string }).status_str, 'success', `prompt ${id} ran`);
    }
    for (const fake of fakes) {
      assert.equal(fake.prompts.filter((p) => ids.includes(p.id)).length, 1, 'each backend ran one of the prompts');
    }

    const byAdmin = await upload(admin, 'admin.png', Buffer.from('ADMIN'), '/upload/image');
    assert.equal(byAdmin.status, 200, byAdmin.text);
    for (const fake of fakes) assert.equal(await readFile(join(fake.inputDir, 'admin.png'), 'utf8'), 'ADMIN');
  });

  test('an upload that a backend stores under another name is 502 UPLOAD_INCOMPLETE and not the key’s', async () => {
    await writeFile(join(fakes[1]!.inputDir, 'clash.png'), 'SOMEONE ELSE');
    const res = await upload(alice, 'clash.png', Buffer.from('ALICE'));
    assert.equal(res.status, 502, res.text);
    const body = res.json<{ error: string; error_code: string; failed: Array<{ backend: string; problem: string }> }>();
    assert.equal(body.error_code, 'UPLOAD_INCOMPLETE');
    assert.deepEqual(
      body.failed.map((f) => f.backend),
      ['b'],
    );
    assert.match(body.error, /b stored it as "input\/clash \(1\)\.png", not "input\/clash\.png"/);
    assert.equal(await readFile(join(fakes[0]!.inputDir, 'clash.png'), 'utf8'), 'ALICE', 'backend a stored it');
    assert.equal(await aliceOwns('clash.png'), false);
    const load = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt: loadingPrompt('clash.png') } });
    assert.equal(load.status, 403, load.text);
  });

  test("a user key's refused form reaches no backend's folder: its 403, not UPLOAD_INCOMPLETE", async () => {
    const form = imageForm('elsewhere.png', Buffer.from('OUT'));
    const typed = Buffer.concat([Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="type"\r\n\r\noutput\r\n`), form.body]);
    const res = await send(gateway.url, '/api/upload/image', { method: 'POST', key: alice, body: typed, headers: form.headers });
    assert.equal(res.status, 403, res.text);
    assert.equal(res.json().error_code, 'FORBIDDEN');
    for (const fake of fakes) assert.equal(existsSync(join(fake.outputDir, 'elsewhere.png')), false);
  });

  test('node definitions are kept: a second request reaches no backend, with the headers ComfyUI sent', async () => {
    const first = await send(gateway.url, '/api/object_info', { key: alice });
    assert.equal(first.status, 200);
    assert.equal(upstreamRequests('/api/object_info'), 1);
    for (const key of [alice, admin]) {
      const again = await send(gateway.url, '/api/object_info', { key });
      assert.equal(again.status, 200);
      assert.equal(again.headers['content-type'], 'application/json; charset=utf-8');
      // A user key's answer lists no uploaded files; an admin key's is ComfyUI's.
      if (key === alice) assert.equal(again.text, first.text);
      else assert.deepEqual({ ...again.json<object>(), LoadImage: null }, { ...first.json<object>(), LoadImage: null });
    }
    assert.equal(upstreamRequests('/api/object_info'), 1, 'the later requests were answered by the gateway');
    for (const target of ['/models', '/api/embeddings']) {
      assert.equal((await send(gateway.url, target, { key: alice })).status, 200);
      assert.equal((await send(gateway.url, target, { key: admin })).status, 200);
      assert.equal(upstreamRequests(target), 1, target);
    }
  });

  test('concurrent misses of one path share one upstream request', async () => {
    const target = '/api/object_info/KSampler';
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => send(gateway.url, target, { key: i % 2 === 0 ? alice : admin })));
    for (const answer of answers) {
      assert.equal(answer.status, 200);
      assert.equal(answer.text, answers[0]!.text);
    }
    assert.ok('KSampler' in answers[0]!.json());
    assert.equal(upstreamRequests(target), 1);
  });

  test('a backend unreachable during an upload: 502 UPLOAD_INCOMPLETE naming it; once it restarts, the catalog is asked for again', async () => {
    const port = fakes[1]!.port;
    await fakes[1]!.close();
    const res = await upload(alice, 'partial.png', Buffer.from('PARTIAL'));
    assert.equal(res.status, 502, res.text);
    const body = res.json<{ error_code: string; failed: Array<{ backend: string; problem: string }> }>();
    assert.equal(body.error_code, 'UPLOAD_INCOMPLETE');
    assert.deepEqual(body.failed, [{ backend: 'b', problem: 'could not be reached' }]);
    assert.ok(existsSync(join(fakes[0]!.inputDir, 'partial.png')), 'backend a stored it');
    assert.equal(await aliceOwns('partial.png'), false);

    fakes[1] = await startFakeComfyUI({ ...FAKE_OPTIONS, port });
    await everyBackendReady();
    const asked = upstreamRequests('/api/object_info');
    assert.equal((await send(gateway.url, '/api/object_info', { key: alice })).status, 200);
    assert.equal(upstreamRequests('/api/object_info'), asked + 1, 'the restart dropped the kept answer');
    assert.equal((await send(gateway.url, '/api/object_info', { key: admin })).status, 200);
    assert.equal(upstreamRequests('/api/object_info'), asked + 1, 'and the new answer is kept');
  });

  test("/system_stats: an admin key gets every backend's, a user key one backend's without argv", async () => {
    const stats = (await send(gateway.url, '/api/system_stats', { key: admin })).json<SystemStats>();
    assert.deepEqual(
      stats.backends?.map((b) => b.name),
      [...NAMES],
    );
    assert.deepEqual(
      stats.devices.map((device) => device.backend),
      [...NAMES],
    );
    assert.ok(Array.isArray(stats.system.argv), 'admins keep argv');
    for (const backend of stats.backends!) {
      assert.ok(Array.isArray(backend.system.argv));
      assert.equal(backend.devices.length, 1);
    }
    const own = (await send(gateway.url, '/system_stats', { key: alice })).json<SystemStats>();
    assert.equal('argv' in own.system, false);
    assert.equal(own.backends, undefined);
    assert.equal(own.devices.length, 1);
    assert.equal('backend' in own.devices[0]!, false);
  });
});
