// POST /v1/images/generations as OpenAI's client libraries send it (bearer key, their headers and body), served by the workflow an admin marked.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';

const GRAPH = {
  '5': { class_type: 'EmptyLatentImage', inputs: { width: 512, height: 512, batch_size: 1 } },
  '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a cat' } },
  '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 2, positive: ['6', 0], latent_image: ['5', 0] } },
  '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'openai' } },
};
const INPUTS = {
  text: { node: '6', input: 'text', type: 'string' },
  width: { node: '5', input: 'width', type: 'integer', min: 64, max: 2048, default: 512 },
  height: { node: '5', input: 'height', type: 'integer', min: 64, max: 2048, default: 512 },
  count: { node: '5', input: 'batch_size', type: 'integer', min: 1, max: 4, default: 1 },
};
const MAPPING = { prompt: 'text', width: 'width', height: 'height', n: 'count' };

/** What the official openai-node client (v4) sends with `client.images.generate(...)`: bearer auth, JSON, its own headers. */
function openAiRequest(url: string, key: string, body: Record<string, unknown>): Promise<TestResponse> {
  return send(url, '/v1/images/generations', {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json',
      'user-agent': 'OpenAI/JS 4.104.0',
      'x-stainless-lang': 'js',
      'x-stainless-package-version': '4.104.0',
      'x-stainless-os': 'Linux',
      'x-stainless-arch': 'x64',
      'x-stainless-runtime': 'node',
      'x-stainless-runtime-version': 'v20.18.1',
      'x-stainless-retry-count': '0',
    },
    body: JSON.stringify(body),
  });
}

describe('POST /v1/images/generations', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let directory: { path: string; remove(): Promise<void> };
  let admin: string;
  let user: CreatedKey;
  const put = (name: string, body: unknown): Promise<TestResponse> =>
    send(gateway.url, `/api/gateway/workflows/${name}`, { method: 'PUT', key: admin, body: body as object });
  const lastPrompt = (): Record<string, { inputs: Record<string, unknown> }> =>
    comfy.prompts.at(-1)!.body.prompt as Record<string, { inputs: Record<string, unknown> }>;

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 2 });
    directory = await tempUserDirectory();
    gateway = await startGateway({ upstream: comfy.url, userDirectory: directory.path, args: ['--require-api-auth'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    user = await createKey(gateway.url, { name: 'app', rate_limit: 100_000, policy: { workflows_only: true } }, admin);
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
    await directory?.remove();
  });

  test('without a marked workflow: 404 in OpenAI’s error shape; no key: 401', async () => {
    const res = await openAiRequest(gateway.url, user.api_key, { prompt: 'a cat' });
    assert.equal(res.status, 404, res.text);
    assert.equal(res.json<{ error: { code: string } }>().error.code, 'WORKFLOW_NOT_FOUND');
    assert.equal((await send(gateway.url, '/v1/images/generations', { method: 'POST', body: { prompt: 'x' } })).status, 401);
  });

  test('a marking is checked: each mapped input exists with the right type, and one workflow serves the endpoint', async () => {
    const bad = await put('bad', { prompt: GRAPH, inputs: INPUTS, openai_images: { prompt: 'width', width: 'nope', n: 'count', colour: 1 } });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json<{ details: Array<{ field: string; problem: string }> }>().details, [
      { field: 'openai_images.colour', problem: 'unknown field' },
      { field: 'openai_images.prompt', problem: 'names an input of type integer, not string' },
      { field: 'openai_images.width', problem: 'not the name of one of the inputs' },
      { field: 'openai_images', problem: 'input text has no default, and no request field sets it' },
      { field: 'openai_images', problem: 'width and height go together: give both (the request size) or neither' },
    ]);
    assert.equal((await put('images', { prompt: GRAPH, inputs: INPUTS, openai_images: MAPPING })).status, 201);
    const second = await put('other', { prompt: GRAPH, inputs: INPUTS, openai_images: MAPPING });
    assert.equal(second.status, 400);
    assert.match(JSON.stringify(second.json()), /workflow images serves it already/);
  });

  test('b64_json: the images inline, with the prompt, size and n set on the workflow, for a workflows_only key', async () => {
    const res = await openAiRequest(gateway.url, user.api_key, {
      model: 'dall-e-3',
      prompt: 'a red fox in the snow',
      n: 2,
      size: '1024x768',
      response_format: 'b64_json',
      quality: 'standard',
      user: 'user-1234',
    });
    assert.equal(res.status, 200, res.text);
    const body = res.json<{ created: number; data: Array<{ b64_json?: string; url?: string }> }>();
    assert.ok(Number.isInteger(body.created) && Math.abs(body.created - Date.now() / 1000) < 60);
    assert.equal(body.data.length, 1, 'the fake ComfyUI saves one file per SaveImage');
    const graph = lastPrompt();
    assert.equal(graph['6']!.inputs.text, 'a red fox in the snow');
    assert.deepEqual([graph['5']!.inputs.width, graph['5']!.inputs.height, graph['5']!.inputs.batch_size], [1024, 768, 2]);
    const job = (await send(gateway.url, '/api/gateway/jobs?limit=1', { key: user.api_key })).json<{ jobs: Array<{ outputs: Array<{ filename: string }> }> }>()
      .jobs[0]!;
    const file = await readFile(join(comfy.outputDir, job.outputs[0]!.filename));
    assert.equal(body.data[0]!.b64_json, file.toString('base64'));
  });

  test('url (the default for dall-e models): an absolute /view URL that opens with the same bearer key; defaults where left out', async () => {
    const res = await openAiRequest(gateway.url, user.api_key, { model: 'dall-e-2', prompt: 'a boat' });
    assert.equal(res.status, 200, res.text);
    const [image] = res.json<{ data: Array<{ url: string }> }>().data;
    assert.ok(image!.url.startsWith(`${gateway.url}/view?`), image!.url);
    const view = await send(gateway.url, image!.url.slice(gateway.url.length), { headers: { authorization: `Bearer ${user.api_key}` } });
    assert.equal(view.status, 200);
    assert.equal(view.headers['content-type'], 'image/png');
    assert.deepEqual([lastPrompt()['5']!.inputs.width, lastPrompt()['5']!.inputs.batch_size], [512, 1]);
    const gpt = await openAiRequest(gateway.url, user.api_key, { model: 'gpt-image-1', prompt: 'a boat' });
    assert.ok(gpt.json<{ data: Array<{ b64_json?: string }> }>().data[0]!.b64_json, 'gpt-image models answer base64 by default');
  });

  test('a bad request gets OpenAI’s error shape naming the request field, and nothing is queued', async () => {
    const queued = comfy.prompts.length;
    const refusal = async (body: Record<string, unknown>): Promise<{ param: string | null; code: string; type: string }> => {
      const res = await openAiRequest(gateway.url, user.api_key, body);
      assert.equal(res.status, 400, res.text);
      return res.json<{ error: { param: string | null; code: string; type: string } }>().error;
    };
    const missing = await refusal({ n: 1 });
    assert.deepEqual([missing.param, missing.code, missing.type], ['prompt', 'INVALID_REQUEST', 'invalid_request_error']);
    assert.equal((await refusal({ prompt: 'x', size: '4096x4096' })).param, 'size', "beyond the width input's max");
    assert.equal((await refusal({ prompt: 'x', size: 'big' })).param, 'size');
    assert.equal((await refusal({ prompt: 'x', n: 5 })).param, 'n', "beyond the batch input's max");
    assert.equal((await refusal({ prompt: 'x', response_format: 'png' })).param, 'response_format');
    assert.equal((await refusal({ prompt: 'x', stream: true })).param, 'stream');
    assert.equal(comfy.prompts.length, queued);
  });
});
