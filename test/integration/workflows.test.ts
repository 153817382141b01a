// Named workflows through a real gateway and a fake ComfyUI: registration and its validation, who may do what, runs with typed and image inputs, workflows_only, the OpenAPI paths.

import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { postToHangUp, send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

type Problem = { field: string; problem: string };

/** A graph with a loaded image, a prompt text and a sampler, whose output depends on the loaded image (so ComfyUI checks the file). */
const GRAPH = {
  '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'v1-5-pruned-emaonly.safetensors' } },
  '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a cat', clip: ['4', 1] } },
  '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 20, cfg: 7, sampler_name: 'euler', denoise: 1, positive: ['6', 0] } },
  '10': { class_type: 'LoadImage', inputs: { image: 'example.png' } },
  '9': { class_type: 'SaveImage', inputs: { images: ['10', 0], filename_prefix: 'wf' } },
};

/** A graph without a loader node. */
const PLAIN_GRAPH = {
  '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 20 } },
  '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'plain' } },
};

/** One input of each type. */
const INPUTS = {
  seed: { node: '3', input: 'seed', type: 'integer', min: 0, max: 1000, description: 'The noise seed' },
  cfg: { node: '3', input: 'cfg', type: 'number', default: 7.5, min: 1, max: 30 },
  text: { node: '6', input: 'text', type: 'string', default: 'a dog' },
  sampler: { node: '3', input: 'sampler_name', type: 'enum', values: ['euler', 'dpmpp_2m'], default: 'euler' },
  prefix_on: { node: '9', input: 'filename_prefix', type: 'boolean', default: false },
  image: { node: '10', input: 'image', type: 'image' },
};

/** A small PNG (a 1×1 pixel). */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
const BOUNDARY = 'workflow-test-boundary';

function imageForm(filename: string, content: Buffer): { body: Buffer; headers: Record<string, string> } {
  const head = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="${filename}"\r\nContent-Type: image/png\r\n\r\n`;
  return {
    body: Buffer.concat([Buffer.from(head), content, Buffer.from(`\r\n--${BOUNDARY}--\r\n`)]),
    headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
  };
}

/**
 * A loopback server for image URLs: /cat.png (an image), /held.png (the image, once the test calls the
 * answer it adds to `held`), /stalled.png (never answered), /page (HTML), /hop/N (redirects N more times, then
 * to the image), /big (too large); `asked` lists the paths requested, `cut` those whose connection closed unanswered.
 */
async function startImageServer(): Promise<{ url: string; server: Server; asked: string[]; cut: string[]; held: Array<() => void> }> {
  const asked: string[] = [];
  const cut: string[] = [];
  const held: Array<() => void> = [];
  const server = createServer((req, res) => {
    asked.push(req.url ?? '');
    res.once('close', () => {
      if (!res.writableEnded) cut.push(req.url ?? '');
    });
    if (req.url === '/stalled.png') return;
    const hops = /^\/hop\/(\d+)$/.exec(req.url ?? '');
    if (req.url === '/cat.png') return res.writeHead(200, { 'content-type': 'image/png' }).end(PNG);
    if (req.url === '/held.png') return held.push(() => res.writeHead(200, { 'content-type': 'image/png' }).end(PNG));
    if (req.url === '/page') return res.writeHead(200, { 'content-type': 'text/html' }).end('<p>hi</p>');
    if (hops) return res.writeHead(302, { location: Number(hops[1]) > 1 ? `/hop/${Number(hops[1]) - 1}` : '/cat.png' }).end();
    if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'image/png' });
      const chunk = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < 33; i++) res.write(chunk);
      return res.end();
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, asked, cut, held };
}

describe('named workflows', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let strictGateway: GatewayProcess;
  /** The admin key of `strictGateway` (its first, made without a key). */
  let strictAdmin: string;
  let directories: Array<{ remove(): Promise<void> }> = [];
  let images: Awaited<ReturnType<typeof startImageServer>>;
  let admin: string;
  let alice: CreatedKey;
  let bob: CreatedKey;
  let onlyWorkflows: CreatedKey;

  const put = (name: string, body: unknown, key = admin, url = gateway.url): Promise<TestResponse> =>
    send(url, `/api/gateway/workflows/${name}`, { method: 'PUT', key, body: body as object });
  const run = (name: string, body: unknown, key: string, url = gateway.url): Promise<TestResponse> =>
    send(url, `/api/gateway/workflows/${name}/run`, { method: 'POST', key, body: body as object });
  const problems = (res: TestResponse): Problem[] => res.json<{ details: Problem[] }>().details;
  /** The graph ComfyUI received for the most recent prompt. */
  const lastPrompt = (): Record<string, { inputs: Record<string, unknown> }> =>
    comfy.prompts.at(-1)!.body.prompt as Record<string, { inputs: Record<string, unknown> }>;
  const upload = async (key: string, name: string): Promise<string> => {
    const res = await send(gateway.url, '/api/upload/image', { method: 'POST', key, ...imageForm(name, PNG) });
    assert.equal(res.status, 200, res.text);
    return res.json<{ name: string }>().name;
  };

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 2 });
    images = await startImageServer();
    const [one, two] = [await tempUserDirectory(), await tempUserDirectory()];
    directories = [one, two];
    gateway = await startGateway({ upstream: comfy.url, userDirectory: one.path, args: ['--require-api-auth', '--webhook-allow-private'] });
    strictGateway = await startGateway({ upstream: comfy.url, userDirectory: two.path, args: ['--require-api-auth'] });
    strictAdmin = (await createKey(strictGateway.url, { name: 'admin', role: 'admin' })).api_key;
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    alice = await createKey(gateway.url, { name: 'alice', rate_limit: 100_000 }, admin);
    bob = await createKey(gateway.url, { name: 'bob', rate_limit: 100_000 }, admin);
    onlyWorkflows = await createKey(gateway.url, { name: 'kiosk', rate_limit: 100_000, policy: { workflows_only: true, max_steps: 30 } }, admin);
    assert.equal((await put('txt2img', { prompt: GRAPH, description: 'Text to image', inputs: INPUTS })).status, 201);
  });
  after(async () => {
    await gateway?.stop();
    await strictGateway?.stop();
    await comfy?.close();
    images?.server.close();
    for (const directory of directories) await directory.remove();
  });

  test('registration lists every problem of a workflow, and stores nothing', async () => {
    const res = await put('broken', {
      prompt: { ...GRAPH, bad: { inputs: {} } },
      extra: true,
      inputs: {
        a: { node: '99', input: 'seed', type: 'integer' },
        b: { node: '3', input: 'nope', type: 'integer' },
        c: { node: '3', input: 'steps', type: 'integer', min: 10, max: 5 },
        d: { node: '3', input: 'cfg', type: 'number', default: 'high' },
        e: { node: '3', input: 'denoise', type: 'number', min: 0, max: 1, default: 2 },
        f: { node: '6', input: 'text', type: 'string', values: ['x'] },
        g: { node: '3', input: 'sampler_name', type: 'enum' },
        h: { node: '4', input: 'ckpt_name', type: 'enum', values: ['euler'], default: 'heun' },
        i: { node: '10', input: 'image', type: 'image', default: 'x.png', colour: 'red' },
        j: { node: '9', input: 'filename_prefix', type: 'float' },
        k: { node: '3', input: 'seed', type: 'integer' },
        l: { node: '3', input: 'seed', type: 'integer', min: 0.5 },
        '9lives': { node: '6', input: 'clip', type: 'string' },
      },
    });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json().error_code, 'INVALID_REQUEST');
    const got = problems(res);
    const has = (field: string, pattern: RegExp): void =>
      assert.ok(
        got.some((p) => p.field === field && pattern.test(p.problem)),
        `${field} ~ ${pattern} in ${JSON.stringify(got)}`,
      );
    has('extra', /unknown field/);
    has('prompt.bad.class_type', /missing/);
    has('inputs.a.node', /no node "99"/);
    has('inputs.b.input', /has no input "nope"/);
    has('inputs.c.min', /greater than max/);
    has('inputs.d.default', /not a number/);
    has('inputs.e.default', /above the maximum 1/);
    has('inputs.f.values', /only enum inputs/);
    has('inputs.g.values', /missing/);
    has('inputs.h.default', /not one of/);
    has('inputs.i.default', /no default/);
    has('inputs.i.colour', /unknown field/);
    has('inputs.j.type', /not one of/);
    has('inputs.l.min', /not a whole number/);
    has('inputs.l', /same node input as inputs\.k/);
    has('inputs.9lives', /not a name/);
    assert.equal((await put('Bad_Name', { prompt: GRAPH })).status, 400);
    assert.equal((await put('x'.repeat(65), { prompt: GRAPH })).status, 400);
    assert.equal((await put('broken-2', { inputs: {} })).json<{ details: Problem[] }>().details[0]!.field, 'prompt');
    assert.equal((await send(gateway.url, '/api/gateway/workflows/broken', { key: admin })).json().error_code, 'WORKFLOW_NOT_FOUND');
  });

  test('admins register, replace and delete; every key lists and reads, without the graph; no key gets 401', async () => {
    assert.equal((await put('mine', { prompt: GRAPH, inputs: {} }, alice.api_key)).status, 403);
    const listed = await send(gateway.url, '/api/gateway/workflows', { key: alice.api_key });
    assert.equal(listed.status, 200, listed.text);
    const entry = listed.json<{ workflows: Array<Record<string, unknown>> }>().workflows.find((w) => w.name === 'txt2img')!;
    assert.equal(entry.description, 'Text to image');
    assert.deepEqual(entry.inputs, INPUTS);
    assert.equal(entry.prompt, undefined, 'a user key does not see the graph');
    assert.equal((await send(gateway.url, '/api/gateway/workflows/txt2img', { key: alice.api_key })).json().prompt, undefined);
    assert.deepEqual((await send(gateway.url, '/api/gateway/workflows/txt2img', { key: admin })).json().prompt, GRAPH);
    assert.equal((await send(gateway.url, '/api/gateway/workflows')).status, 401);
    assert.equal((await send(gateway.url, '/api/gateway/workflows/txt2img/run', { method: 'POST', body: {} })).status, 401);

    const first = await put('temp', { prompt: PLAIN_GRAPH, inputs: { seed: INPUTS.seed } });
    assert.equal(first.status, 201, first.text);
    const replaced = await put('temp', { prompt: { ...PLAIN_GRAPH, '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 7 } } }, inputs: {} });
    assert.equal(replaced.status, 200, 'a replacement is 200');
    assert.equal(replaced.json().created_at, first.json().created_at, 'the creation time is kept');
    assert.ok((replaced.json().updated_at as number) >= (first.json().updated_at as number));
    assert.equal((await run('temp', { inputs: { seed: 3 } }, alice.api_key)).json<{ details: Problem[] }>().details[0]!.field, 'inputs.seed', 'the new inputs');
    assert.equal((await run('temp', { inputs: {}, wait: 0 }, admin)).status, 202);
    assert.equal(lastPrompt()['3']!.inputs.steps, 7, 'runs use the replacing graph');
    assert.equal((await send(gateway.url, '/api/gateway/workflows/temp', { method: 'DELETE', key: alice.api_key })).status, 403);
    assert.equal((await send(gateway.url, '/api/gateway/workflows/temp', { method: 'DELETE', key: admin })).status, 200);
    assert.equal((await send(gateway.url, '/api/gateway/workflows/temp', { method: 'DELETE', key: admin })).status, 404);
    const gone = await run('temp', {}, alice.api_key);
    assert.equal(gone.status, 404);
    assert.equal(gone.json().error_code, 'WORKFLOW_NOT_FOUND');
    const audit = (await send(gateway.url, '/api/audit', { key: admin })).json<{ entries: Array<{ action: string; details?: { workflow?: string } }> }>()
      .entries;
    assert.deepEqual(
      audit.filter((e) => e.details?.workflow === 'temp').map((e) => e.action),
      ['workflow.create', 'workflow.replace', 'workflow.delete'],
    );
  });

  test('a run sets each input of each type in a copy of the graph, defaults where left out, and answers as /api/gateway/run', async () => {
    const name = await upload(alice.api_key, 'alice-cat.png');
    const res = await run(
      'txt2img',
      { inputs: { seed: 42, cfg: 3.5, text: 'a fox', sampler: 'dpmpp_2m', prefix_on: true, image: name }, wait: 30 },
      alice.api_key,
    );
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json().status, 'success');
    assert.equal(res.json().key_id, alice.key_id);
    const graph = lastPrompt();
    assert.equal(graph['3']!.inputs.seed, 42);
    assert.equal(graph['3']!.inputs.cfg, 3.5);
    assert.equal(graph['3']!.inputs.sampler_name, 'dpmpp_2m');
    assert.equal(graph['6']!.inputs.text, 'a fox');
    assert.equal(graph['9']!.inputs.filename_prefix, true);
    assert.equal(graph['10']!.inputs.image, name);
    assert.deepEqual(graph['6']!.inputs.clip, ['4', 1], 'links are kept');
    const defaults = await run('txt2img', { inputs: { seed: 0, image: name }, wait: 30 }, alice.api_key);
    assert.equal(defaults.status, 200, defaults.text);
    assert.equal(lastPrompt()['3']!.inputs.cfg, 7.5);
    assert.equal(lastPrompt()['6']!.inputs.text, 'a dog');
    const stored = (await send(gateway.url, '/api/gateway/workflows/txt2img', { key: admin })).json<{ prompt: typeof GRAPH }>().prompt;
    assert.deepEqual(stored, GRAPH, 'the registered graph is unchanged');
  });

  test('inputs are checked first: missing, unknown, out of range, wrong type and unlisted values, each listed; nothing is queued', async () => {
    const queued = comfy.prompts.length;
    const res = await run(
      'txt2img',
      { inputs: { cfg: 99, text: 5, sampler: 'heun', prefix_on: 'yes', steps: 3, image: 7 }, colour: 'red', wait: 'soon' },
      alice.api_key,
    );
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json().error_code, 'INVALID_REQUEST');
    assert.deepEqual(
      problems(res).sort((a, b) => a.field.localeCompare(b.field)),
      [
        { field: 'colour', problem: 'unknown field' },
        { field: 'inputs.cfg', problem: 'above the maximum 30' },
        { field: 'inputs.image', problem: 'not an image: give the name of a file this key uploaded, {"base64": "..."}, a data: URL or {"url": "https://..."}' },
        { field: 'inputs.prefix_on', problem: 'not a boolean' },
        { field: 'inputs.sampler', problem: 'not one of ["euler","dpmpp_2m"]' },
        { field: 'inputs.seed', problem: 'missing (it has no default)' },
        { field: 'inputs.steps', problem: 'unknown input' },
        { field: 'inputs.text', problem: 'not a string' },
        { field: 'wait', problem: 'not a number of seconds from 0 to 600' },
      ],
    );
    const integer = await run('txt2img', { inputs: { seed: 1.5, image: 'x.png' } }, alice.api_key);
    assert.deepEqual(problems(integer), [{ field: 'inputs.seed', problem: 'not a whole number' }]);
    const below = await run('txt2img', { inputs: { seed: -1, cfg: 0.5, image: 'x.png' } }, alice.api_key);
    assert.deepEqual(problems(below), [
      { field: 'inputs.seed', problem: 'below the minimum 0' },
      { field: 'inputs.cfg', problem: 'below the minimum 1' },
    ]);
    assert.equal(comfy.prompts.length, queued, 'nothing reached ComfyUI');
  });

  test("an image input by upload name must be the key's own upload", async () => {
    const bobs = await upload(bob.api_key, 'bob-secret.png');
    const res = await run('txt2img', { inputs: { seed: 1, image: bobs } }, alice.api_key);
    assert.equal(res.status, 403, res.text);
    assert.match(res.json<{ error: string }>().error, /inputs\.image/);
    const unknown = await run('txt2img', { inputs: { seed: 1, image: 'nobody.png' } }, alice.api_key);
    assert.equal(unknown.status, 403);
    assert.equal((await run('txt2img', { inputs: { seed: 1, image: bobs }, wait: 30 }, admin)).status, 200, 'an admin key loads any file');
  });

  test('a base64 or data: URL image is uploaded to ComfyUI and becomes the key’s file', async () => {
    for (const image of [{ base64: PNG.toString('base64') }, `data:image/png;base64,${PNG.toString('base64')}`]) {
      const res = await run('txt2img', { inputs: { seed: 1, image }, wait: 30 }, alice.api_key);
      assert.equal(res.status, 200, res.text);
      const name = lastPrompt()['10']!.inputs.image as string;
      assert.deepEqual(await readFile(join(comfy.inputDir, name)), PNG, 'ComfyUI stored the bytes under the name the graph loads');
      const view = await send(gateway.url, `/api/view?filename=${encodeURIComponent(name)}&type=input`, { key: alice.api_key });
      assert.equal(view.status, 200, "the stored image is alice's");
      assert.equal(
        (await send(gateway.url, `/api/view?filename=${encodeURIComponent(name)}&type=input`, { key: bob.api_key })).status,
        404,
        "bob does not see alice's file",
      );
    }
    const bad = await run('txt2img', { inputs: { seed: 1, image: { base64: '***' } } }, alice.api_key);
    assert.deepEqual(problems(bad), [{ field: 'inputs.image', problem: 'not valid base64' }]);
    const text = await run('txt2img', { inputs: { seed: 1, image: 'data:text/plain;base64,aGk=' } }, alice.api_key);
    assert.deepEqual(problems(text), [{ field: 'inputs.image', problem: 'the data: URL is text/plain, not an image/* type' }]);
  });

  test("a data: URL's type is one media type: line breaks that would add headers to the upload's form are refused, and nothing is stored", async () => {
    const stored = (await readdir(comfy.inputDir)).length;
    for (const type of ['image/png\r\ncontent-encoding: deflate', 'image/png\r\n\r\nprefix', 'image/png x']) {
      const res = await run('txt2img', { inputs: { seed: 1, image: `data:${type};base64,${PNG.toString('base64')}` }, wait: 30 }, alice.api_key);
      assert.equal(res.status, 400, `${JSON.stringify(type)}: ${res.text}`);
      assert.match(problems(res)[0]!.problem, /not an image\/\* type/);
    }
    assert.equal((await readdir(comfy.inputDir)).length, stored, 'nothing was uploaded');
  });

  test('a URL image is fetched (redirects followed, each checked) with --webhook-allow-private, and refused to a private address without it', async () => {
    const res = await run('txt2img', { inputs: { seed: 1, image: { url: `${images.url}/hop/3` } }, wait: 30 }, alice.api_key);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(await readFile(join(comfy.inputDir, lastPrompt()['10']!.inputs.image as string)), PNG);
    const refusal = async (path: string): Promise<string> => {
      const answer = await run('txt2img', { inputs: { seed: 1, image: { url: `${images.url}${path}` } } }, alice.api_key);
      assert.equal(answer.status, 400, answer.text);
      return problems(answer)[0]!.problem;
    };
    assert.match(await refusal('/hop/4'), /redirected more than 3 times/);
    assert.match(await refusal('/page'), /text\/html, not an image/);
    assert.match(await refusal('/missing'), /answered 404/);
    assert.match(await refusal('/big'), /larger than 33554432 bytes/);
    assert.equal((await put('txt2img', { prompt: GRAPH, inputs: INPUTS }, strictAdmin, strictGateway.url)).status, 201);
    const refused = await run('txt2img', { inputs: { seed: 1, image: { url: `${images.url}/cat.png` } } }, strictAdmin, strictGateway.url);
    assert.equal(refused.status, 400, refused.text);
    assert.match(problems(refused)[0]!.problem, /private .*--webhook-allow-private/);
  });

  test("without --webhook-allow-private, an image URL to this machine in any spelling, the gateway's own port included, is refused and nothing is fetched", async () => {
    assert.equal((await put('spellings', { prompt: GRAPH, inputs: INPUTS }, strictAdmin, strictGateway.url)).status, 201);
    const port = new URL(images.url).port;
    const asked = images.asked.length;
    const hosts = [`0.0.0.0:${port}`, `0:${port}`, `0177.0.0.1:${port}`, `0x7f.1:${port}`, `localhost.:${port}`, `[::]:${port}`, `[::ffff:7f00:1]:${port}`];
    for (const host of [...hosts, new URL(strictGateway.url).host]) {
      const res = await run('spellings', { inputs: { seed: 1, image: { url: `http://${host}/cat.png` } }, wait: 30 }, strictAdmin, strictGateway.url);
      assert.equal(res.status, 400, `${host}: ${res.text}`);
      assert.match(problems(res)[0]!.problem, /--webhook-allow-private/, host);
    }
    assert.equal(images.asked.length, asked, 'no image URL was fetched');
  });

  test("an image URL never reaches a ComfyUI backend, even with --webhook-allow-private: another key's output is not fetched", async () => {
    const bobs = await send(gateway.url, '/api/gateway/run', { method: 'POST', key: bob.api_key, body: { prompt: PLAIN_GRAPH, wait: 30 } });
    assert.equal(bobs.status, 200, bobs.text);
    const output = bobs.json<{ outputs: Array<{ filename: string }> }>().outputs[0]!.filename;
    const backend = new URL(comfy.url);
    for (const host of [backend.host, `localhost:${backend.port}`, `[::ffff:127.0.0.1]:${backend.port}`]) {
      const url = `http://${host}/api/view?filename=${encodeURIComponent(output)}&type=output`;
      const res = await run('txt2img', { inputs: { seed: 1, image: { url } }, wait: 30 }, alice.api_key);
      assert.equal(res.status, 400, `${host}: ${res.text}`);
      assert.match(problems(res)[0]!.problem, /ComfyUI backend/);
    }
  });

  test('a run refused for its policy or its webhook fetches and stores none of its images', async () => {
    const fewSteps = await createKey(gateway.url, { name: 'few-steps', rate_limit: 100_000, policy: { max_steps: 10 } }, admin);
    const stored = (await readdir(comfy.inputDir)).length;
    const asked = images.asked.length;
    for (const image of [{ base64: PNG.toString('base64') }, { url: `${images.url}/cat.png` }]) {
      const refused = await run('txt2img', { inputs: { seed: 1, image }, wait: 30 }, fewSteps.api_key);
      assert.equal(refused.status, 403, refused.text);
      assert.deepEqual(refused.json<{ error_code: string; details: unknown[] }>().details, [{ node_id: '3', rule: 'max_steps', limit: 10, value: 20 }]);
      const noWebhooks = await run('txt2img', { inputs: { seed: 1, image }, webhook_url: `${images.url}/hook`, wait: 30 }, alice.api_key);
      assert.equal(noWebhooks.status, 400, noWebhooks.text);
      assert.equal(noWebhooks.json().error_code, 'WEBHOOKS_DISABLED');
    }
    assert.equal((await readdir(comfy.inputDir)).length, stored, 'nothing was uploaded to ComfyUI');
    assert.equal(images.asked.length, asked, 'no image URL was fetched');
  });

  test('a run counts against max_queued from its check on: while its image is fetched, another run or prompt of the key is refused and fetches and stores nothing', async () => {
    const single = await createKey(gateway.url, { name: 'single', rate_limit: 100_000, max_queued: 1 }, admin);
    const stored = (await readdir(comfy.inputDir)).length;
    const first = run('txt2img', { inputs: { seed: 1, image: { url: `${images.url}/held.png` } }, wait: 30 }, single.api_key);
    await waitFor(() => images.held.length === 1, 'the first run to fetch its image');
    const asked = images.asked.length;
    const second = await run('txt2img', { inputs: { seed: 2, image: { url: `${images.url}/cat.png` } }, wait: 30 }, single.api_key);
    assert.equal(second.status, 429, second.text);
    assert.equal(second.json().error_code, 'QUEUE_LIMIT');
    const raw = await send(gateway.url, '/api/gateway/run', { method: 'POST', key: single.api_key, body: { prompt: PLAIN_GRAPH, wait: 30 } });
    assert.equal(raw.status, 429, raw.text);
    assert.equal(images.asked.length, asked, 'the refused run fetched nothing');
    images.held.shift()!();
    const admitted = await first;
    assert.equal(admitted.status, 200, admitted.text);
    assert.equal((await readdir(comfy.inputDir)).length, stored + 1, 'only the admitted run stored its image');
    const unfetched = await run('txt2img', { inputs: { seed: 3, image: { url: `${images.url}/page` } }, wait: 30 }, single.api_key);
    assert.equal(unfetched.status, 400, unfetched.text);
    const next = await run('txt2img', { inputs: { seed: 4, image: { url: `${images.url}/cat.png` } }, wait: 30 }, single.api_key);
    assert.equal(next.status, 200, `the places of the ended and of the refused run were let go: ${next.text}`);
  });

  test('a workflows_only key runs a workflow, is refused a raw prompt, and its other rules still apply', async () => {
    const name = await upload(onlyWorkflows.api_key, 'kiosk.png');
    const ok = await run('txt2img', { inputs: { seed: 5, image: name }, wait: 30 }, onlyWorkflows.api_key);
    assert.equal(ok.status, 200, ok.text);
    const raw = await send(gateway.url, '/api/gateway/run', { method: 'POST', key: onlyWorkflows.api_key, body: { prompt: GRAPH } });
    assert.equal(raw.status, 403);
    assert.equal(raw.json().error_code, 'PROMPT_POLICY');
    assert.equal((await put('long', { prompt: { ...PLAIN_GRAPH, '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 50 } } } })).status, 201);
    const long = await run('long', {}, onlyWorkflows.api_key);
    assert.equal(long.status, 403, long.text);
    assert.deepEqual(long.json<{ details: unknown[] }>().details, [{ node_id: '3', rule: 'max_steps', limit: 30, value: 50 }]);
  });

  test('the OpenAPI document has a run path per workflow whose schema takes a good run and refuses a bad one', async () => {
    const doc = (await send(gateway.url, '/api/gateway/openapi.json')).json<{
      paths: Record<string, { post?: { requestBody: { content: { 'application/json': { schema: object } } } } }>;
      components: unknown;
    }>();
    const operation = doc.paths['/api/gateway/workflows/txt2img/run']?.post;
    assert.ok(operation, 'the workflow has its own path');
    const schema = operation.requestBody.content['application/json'].schema as { properties: { inputs: Record<string, unknown> } };
    assert.deepEqual(schema.properties.inputs.required, ['seed', 'image']);
    assert.deepEqual((schema.properties.inputs.properties as Record<string, unknown>).seed, {
      type: 'integer',
      minimum: 0,
      maximum: 1000,
      description: 'The noise seed',
    });
    const ajv = new Ajv2020({ strict: false });
    const validate = ajv.compile(schema);
    assert.ok(validate({ inputs: { seed: 3, image: { url: 'https://example.com/a.png' }, sampler: 'euler' }, wait: 5 }), JSON.stringify(validate.errors));
    assert.equal(validate({ inputs: { seed: 3000, image: 'a.png' } }), false, 'out of range');
    assert.equal(validate({ inputs: { seed: 3, image: 'a.png', sampler: 'heun' } }), false, 'not listed');
    assert.equal(validate({ inputs: { image: 'a.png' } }), false, 'seed is required');
  });
});

describe('a workflow image input with several backends', () => {
  const fakes: FakeComfyUI[] = [];
  let gateway: GatewayProcess;
  let directory: { path: string; remove(): Promise<void> };

  before(async () => {
    for (let i = 0; i < 2; i++) fakes.push(await startFakeComfyUI({ stepDelayMs: 2 }));
    directory = await tempUserDirectory();
    const upstreams = fakes.flatMap((fake, i) => ['--upstream', `${fake.url}#name=b${i}`]);
    gateway = await startGateway({ upstream: null, userDirectory: directory.path, args: [...upstreams, '--require-api-auth'] });
  });
  after(async () => {
    await gateway?.stop();
    for (const fake of fakes) await fake.close();
    await directory?.remove();
  });

  test('a base64 image is stored on every backend, so the run may go to any of them', async () => {
    const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    const user = await createKey(gateway.url, { name: 'user', rate_limit: 100_000 }, admin);
    await waitFor(
      async () =>
        (await send(gateway.url, '/readyz')).json<{ backends: Array<{ state: string }> }>().backends.every((backend) => backend.state === 'up') || undefined,
      'both backends up',
      10_000,
    );
    assert.equal(
      (await send(gateway.url, '/api/gateway/workflows/img', { method: 'PUT', key: admin, body: { prompt: GRAPH, inputs: { image: INPUTS.image } } })).status,
      201,
    );
    const res = await send(gateway.url, '/api/gateway/workflows/img/run', {
      method: 'POST',
      key: user.api_key,
      body: { inputs: { image: { base64: PNG.toString('base64') } }, wait: 30 },
    });
    assert.equal(res.status, 200, res.text);
    const ran = fakes.find((fake) => fake.prompts.length > 0)!;
    const name = (ran.prompts[0]!.body.prompt as Record<string, { inputs: { image: string } }>)['10']!.inputs.image;
    for (const fake of fakes) assert.deepEqual(await readFile(join(fake.inputDir, name)), PNG, 'each backend has the image');
  });
});

describe('image URL fetches are capped across the gateway (--max-image-fetches 1) and per key (a quarter of 4)', () => {
  let comfy: FakeComfyUI;
  let images: Awaited<ReturnType<typeof startImageServer>>;
  let gateway: GatewayProcess;
  let directories: Array<{ remove(): Promise<void> }> = [];
  let admin: string;
  /** A gateway of --max-image-fetches 4, of which one key holds at most 1, and its admin key. */
  let wide: { url: string; admin: string; process: GatewayProcess };

  const run = (key: string, url: string, at = gateway.url): Promise<TestResponse> =>
    send(at, '/api/gateway/workflows/img/run', { method: 'POST', key, body: { inputs: { seed: 1, image: { url } }, wait: 30 } });
  const userKey = async (name: string, fields: object = {}, at = { url: gateway.url, admin }): Promise<string> =>
    (await createKey(at.url, { name, rate_limit: 100_000, ...fields }, at.admin)).api_key;
  /** The image fetches waiting for a place, or holding one, as /metrics tells. */
  const fetches = async (state: 'waiting' | 'in_flight', at = { url: gateway.url, admin }): Promise<number> =>
    Number(new RegExp(`^comfy_gate_image_fetches_${state} (\\d+)$`, 'm').exec((await send(at.url, '/metrics', { key: at.admin })).text)?.[1] ?? NaN);
  const waiting = (): Promise<number> => fetches('waiting');
  /** How many of `paths` (the image server's `asked` or `cut`) are /stalled.png. */
  const stalled = (paths: string[]): number => paths.filter((path) => path === '/stalled.png').length;

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 2 });
    images = await startImageServer();
    const [oneDirectory, fourDirectory] = [await tempUserDirectory(), await tempUserDirectory()];
    directories = [oneDirectory, fourDirectory];
    const args = ['--require-api-auth', '--webhook-allow-private', '--max-image-fetches'];
    gateway = await startGateway({ upstream: comfy.url, userDirectory: oneDirectory.path, args: [...args, '1'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    const wideGateway = await startGateway({ upstream: comfy.url, userDirectory: fourDirectory.path, args: [...args, '4'] });
    wide = { url: wideGateway.url, admin: (await createKey(wideGateway.url, { name: 'admin', role: 'admin' })).api_key, process: wideGateway };
    const loadImage = { class_type: 'LoadImage', inputs: { image: 'example.png' } };
    const pair = { prompt: { ...GRAPH, '11': loadImage }, inputs: { ...INPUTS, other: { node: '11', input: 'image', type: 'image' } } };
    const quad = {
      prompt: { ...pair.prompt, '12': loadImage, '13': loadImage },
      inputs: { ...pair.inputs, third: { node: '12', input: 'image', type: 'image' }, fourth: { node: '13', input: 'image', type: 'image' } },
    };
    const register = async (at: { url: string; admin: string }, name: string, body: object): Promise<void> =>
      assert.equal((await send(at.url, `/api/gateway/workflows/${name}`, { method: 'PUT', key: at.admin, body })).status, 201);
    const narrow = { url: gateway.url, admin };
    await register(narrow, 'img', { prompt: GRAPH, inputs: INPUTS });
    await register(narrow, 'pair', pair);
    await register(wide, 'img', { prompt: GRAPH, inputs: INPUTS });
    await register(wide, 'quad', quad);
  });
  after(async () => {
    await gateway?.stop();
    await wide?.process.stop();
    await comfy?.close();
    images?.server.close();
    for (const directory of directories) await directory.remove();
  });

  test("another key's image fetch does not start until the fetch in flight ends", async () => {
    const first = run(await userKey('first'), `${images.url}/held.png`);
    await waitFor(() => images.held.length === 1, 'the first fetch to reach the image server');
    const asked = images.asked.length;
    const second = run(await userKey('second'), `${images.url}/cat.png`);
    await waitFor(async () => images.asked.length > asked || (await waiting()) === 1, 'the second fetch to start or wait');
    assert.equal(images.asked.length, asked, 'the second fetch did not reach the image server while the first held the place');
    images.held.shift()!();
    assert.equal((await first).status, 200);
    const answered = await second;
    assert.equal(answered.status, 200, answered.text);
    assert.deepEqual(images.asked.slice(asked), ['/cat.png'], 'the second fetch ran once the first ended');
  });

  test('a run whose fetch gets no place within the fetch timeout gets 503 IMAGE_FETCHES_BUSY, fetches and stores nothing, and gives its queue place back', async () => {
    const first = run(await userKey('holder'), `${images.url}/held.png`);
    await waitFor(() => images.held.length === 1, 'the first fetch to reach the image server');
    const next = run(await userKey('next'), `${images.url}/held.png`);
    await waitFor(async () => (await waiting()) === 1, 'the second fetch to wait');
    const single = await userKey('single', { max_queued: 1 });
    const refused = run(single, `${images.url}/cat.png`);
    await waitFor(async () => (await waiting()) === 2, 'the third fetch to wait');
    // The place goes to the fetch that waited first, whose download the image server then holds past the third fetch's wait.
    images.held.shift()!();
    assert.equal((await first).status, 200);
    await waitFor(() => images.held.length === 1, 'the second fetch to reach the image server');
    const [stored, prompts, asked] = [(await readdir(comfy.inputDir)).length, comfy.prompts.length, images.asked.length];
    const answer = await refused;
    assert.equal(answer.status, 503, answer.text);
    assert.equal(answer.json().error_code, 'IMAGE_FETCHES_BUSY');
    assert.match(answer.json<{ error: string }>().error, /Retry later/);
    assert.ok(Number(answer.headers['retry-after']) > 0, 'Retry-After');
    assert.equal(images.asked.length, asked, 'its image was not fetched');
    assert.deepEqual([(await readdir(comfy.inputDir)).length, comfy.prompts.length], [stored, prompts], 'nothing was stored or queued');
    // Its download may have run out of its own time meanwhile; either way it ends and gives its place back.
    images.held.shift()!();
    await next;
    const again = await run(single, `${images.url}/cat.png`);
    assert.equal(again.status, 200, `the refused run gave back its place among the key's jobs: ${again.text}`);
  });

  test('a client that goes away while its image is fetched ends the run: the download is cut at once and gives its place back; nothing is stored or queued', async () => {
    const key = await userKey('leaver', { max_queued: 1 });
    const [stored, prompts, asked] = [(await readdir(comfy.inputDir)).length, comfy.prompts.length, stalled(images.asked)];
    const req = postToHangUp(gateway.url, '/api/gateway/workflows/img/run', key, {
      inputs: { seed: 1, image: { url: `${images.url}/stalled.png` } },
      wait: 30,
    });
    await waitFor(() => stalled(images.asked) === asked + 1, 'the fetch to reach the image server');
    req.destroy();
    await waitFor(() => stalled(images.cut) === asked + 1, 'the image server to see the download cut');
    await waitFor(async () => (await fetches('in_flight')) === 0, 'the fetch to give its place back');
    assert.deepEqual([(await readdir(comfy.inputDir)).length, comfy.prompts.length], [stored, prompts], 'nothing was stored or queued');
    const again = await run(key, `${images.url}/cat.png`);
    assert.equal(again.status, 200, `the run gave back its place among the key's jobs: ${again.text}`);
  });

  test("a run whose image gets 503 IMAGE_FETCHES_BUSY cuts its other image's download at once, which gives its place back", async () => {
    const [stored, prompts, asked] = [(await readdir(comfy.inputDir)).length, comfy.prompts.length, stalled(images.asked)];
    const holder = run(await userKey('stalled-holder'), `${images.url}/stalled.png`);
    await waitFor(() => stalled(images.asked) === asked + 1, 'the first fetch to reach the image server');
    const image = { url: `${images.url}/stalled.png` };
    const body = { inputs: { seed: 1, image, other: image }, wait: 30 };
    const both = send(gateway.url, '/api/gateway/workflows/pair/run', { method: 'POST', key: await userKey('pair'), body });
    await waitFor(async () => (await waiting()) === 2, "both of the run's images to wait");
    // The first fetch runs out of its time before the run's images have waited theirs: its place goes to the run's first image, the second waits on.
    const timedOut = await holder;
    assert.equal(timedOut.status, 400, timedOut.text);
    const answer = await both;
    assert.equal(answer.status, 503, answer.text);
    assert.equal(answer.json().error_code, 'IMAGE_FETCHES_BUSY');
    await waitFor(async () => (await fetches('in_flight')) === 0, "the run's first image to give its place back");
    await waitFor(() => stalled(images.cut) === stalled(images.asked), 'the image server to see every download cut');
    assert.deepEqual([(await readdir(comfy.inputDir)).length, comfy.prompts.length], [stored, prompts], 'nothing was stored or queued');
  });

  test("a key holds at most a quarter of the places: its held images leave the other places free, another key's run fetches at once, and each of its images gets the key's place in turn", async () => {
    const image = { url: `${images.url}/held.png` };
    const body = { inputs: { seed: 1, image, other: image, third: image, fourth: image }, wait: 30 };
    const holder = send(wide.url, '/api/gateway/workflows/quad/run', { method: 'POST', key: await userKey('quad', {}, wide), body });
    await waitFor(async () => (await fetches('in_flight', wide)) + (await fetches('waiting', wide)) === 4, "the run's four images to be fetched or wait");
    assert.deepEqual([await fetches('in_flight', wide), await fetches('waiting', wide)], [1, 3], 'the key holds 1 of the 4 places; its other images wait');
    await waitFor(() => images.held.length === 1, "the key's first image to reach the image server");
    const other = await run(await userKey('other', {}, wide), `${images.url}/cat.png`, wide.url);
    assert.equal(other.status, 200, other.text);
    assert.deepEqual([images.held.length, await fetches('waiting', wide)], [1, 3], "the other key's run was answered while the key's images were still held");
    for (let left = 2; left >= 0; left--) {
      images.held.shift()!();
      await waitFor(() => images.held.length === 1, "the key's next image to take the key's place");
      assert.deepEqual([await fetches('in_flight', wide), await fetches('waiting', wide)], [1, left], 'one image at a time holds the place');
    }
    images.held.shift()!();
    const answer = await holder;
    assert.equal(answer.status, 200, answer.text);
    assert.equal(await fetches('in_flight', wide), 0);
  });
});
