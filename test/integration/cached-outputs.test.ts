// ComfyUI's output cache through the gateway: a key whose graph another key ran before is not told that key's file names, in its history, its jobs or its events.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket, waitForHistory, type CollectingSocket } from '../helpers/comfy-client.js';
import { send } from '../helpers/http-client.js';
import { startTwoKeyStage, type TwoKeyStage } from '../helpers/two-keys.js';
import { waitFor } from '../helpers/wait-for.js';

const SAMPLER = { class_type: 'KSampler', inputs: { seed: 777, steps: 2 } };
const save = (prefix: string): unknown => ({ class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: prefix } });
/** A Preview3D node, which names its background image by a path string in its `result` list (`temp/bg_<hex>.png`). */
const PREVIEW_3D = { class_type: 'Preview3D', inputs: { model_file: '', bg_image: ['3', 0] } };

/** The words of ComfyUI's event for a prompt that took no node from its cache, as a client may write them in its extra_data. */
const LOOKS_UNCACHED = ['execution_cached', { nodes: [] }];

interface JobItem {
  id: string;
  outputs_count?: number;
  previewable_outputs_count?: number;
  preview_output?: { filename?: string; nodeId?: string };
  outputs?: Record<string, { images?: Array<{ filename: string }> }>;
}

describe("ComfyUI's output cache: what a key is told of a graph another key ran before", () => {
  let stage: TwoKeyStage;
  let socket: CollectingSocket;
  /** Alice's prompt whose nodes 9 (bob's file), 10 (her own) and 12 (bob's Preview3D) ComfyUI took from its cache, and 11 it ran. */
  let cachedRun: string;
  let aliceOwn: string;
  let aliceFresh: string;
  let bobSecret: string;
  /** The name of the background image bob's Preview3D wrote, which its `result` list gives as `temp/…`. */
  let bobBackground: string;

  const aliceGets = (target: string): ReturnType<typeof send> => send(stage.gateway.url, target, { key: stage.alice.api_key });
  const fileOf = (entry: Record<string, unknown>, node: string): string =>
    (entry.outputs as Record<string, { images: Array<{ filename: string }> }>)[node]!.images[0]!.filename;

  before(async () => {
    stage = await startTwoKeyStage([], { cachedOutputs: true, stepDelayMs: 5 });
    const run = async (key: string, prompt: unknown, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> => {
      const res = await send(stage.gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt, ...extra } });
      assert.equal(res.status, 200, res.text);
      const id = res.json<{ prompt_id: string }>().prompt_id;
      return { id, ...(await waitForHistory(stage.gateway.url, key, id)) };
    };
    aliceOwn = fileOf(await run(stage.alice.api_key, { '3': SAMPLER, '10': save('alice-own') }), '10');
    const bobs = await run(stage.bob.api_key, { '3': SAMPLER, '9': save('bob-secret'), '12': PREVIEW_3D });
    bobSecret = fileOf(bobs, '9');
    bobBackground = ((bobs.outputs as Record<string, { result: string[] }>)['12']!.result[2] ?? '').replace('temp/', '');
    assert.match(bobBackground, /^bg_[0-9a-f]{32}\.png$/);
    socket = await openCollectingSocket(`${stage.gateway.url.replace('http', 'ws')}/ws?clientId=alice-screen`, { 'x-api-key': stage.alice.api_key });
    const cached = await run(
      stage.alice.api_key,
      { '3': SAMPLER, '9': save('bob-secret'), '10': save('alice-own'), '11': save('alice-fresh'), '12': PREVIEW_3D },
      { client_id: 'alice-screen', extra_data: { extra_pnginfo: { note: LOOKS_UNCACHED } } },
    );
    cachedRun = cached.id as string;
    aliceFresh = fileOf(cached, '11');
    await waitFor(() => socket.texts.some((m) => m.type === 'execution_success' && m.data.prompt_id === cachedRun), "the end of alice's run on her socket");
    // ComfyUI itself answers nodes 9 and 10 with the earlier prompts' files: the history it holds names bob's.
    const upstream = await send(stage.comfy.url, `/history/${cachedRun}`);
    assert.ok(upstream.text.includes(bobSecret), "ComfyUI's own history names bob's file");
    assert.match(upstream.text, /"execution_cached", ?\{"nodes": ?\["9", ?"10", ?"12"\]/);
    assert.ok(upstream.text.includes(bobBackground), "ComfyUI's own history names bob's background image");
  });
  after(async () => {
    await socket?.close();
    await stage?.close();
  });

  const historyTargets = [(id: string) => `/history/${id}`, (id: string) => `/api/history/${id}`, () => '/history', () => '/api/history?max_items=5'];
  for (const target of historyTargets) {
    test(`her history (${target('{id}')}) names her own files, fresh and cached, and not bob's`, async () => {
      const res = await aliceGets(target(cachedRun));
      assert.equal(res.status, 200, res.text);
      assert.ok(!res.text.includes('bob-secret_'), `bob's file is not named: ${res.text.slice(0, 400)}`);
      assert.ok(!res.text.includes(bobBackground), `bob's background image, named by a path string, is not named: ${res.text.slice(0, 400)}`);
      const entry = res.json<Record<string, { outputs: Record<string, { images: Array<{ filename: string }> }> }>>()[cachedRun]!;
      assert.deepEqual(Object.keys(entry.outputs), ['10', '11'], "the node that holds only bob's file is left out");
      assert.equal(entry.outputs['10']!.images[0]!.filename, aliceOwn, 'her own cached file stays');
      assert.equal(entry.outputs['11']!.images[0]!.filename, aliceFresh, 'her fresh file stays');
    });
  }

  test("her job (/api/jobs/{id}) counts and previews her own files, and does not name bob's", async () => {
    const detail = await aliceGets(`/api/jobs/${cachedRun}`);
    assert.equal(detail.status, 200, detail.text);
    assert.ok(!detail.text.includes('bob-secret_'), `the job does not name bob's file: ${detail.text.slice(0, 400)}`);
    assert.ok(!detail.text.includes(bobBackground), `the job does not name bob's background image: ${detail.text.slice(0, 400)}`);
    const job = detail.json<JobItem>();
    assert.deepEqual(Object.keys(job.outputs!), ['10', '11']);
    assert.equal(job.outputs_count, 2);
    assert.equal(job.previewable_outputs_count, 2);
    assert.deepEqual([job.preview_output?.filename, job.preview_output?.nodeId], [aliceOwn, '10'], 'the preview is her first saved file');
  });

  test("her job list (/api/jobs) counts and previews her own files, and does not name bob's", async () => {
    const list = await aliceGets('/api/jobs');
    assert.equal(list.status, 200, list.text);
    assert.ok(!list.text.includes('bob-secret_'), `the list does not name bob's file: ${list.text.slice(0, 400)}`);
    const item = list.json<{ jobs: JobItem[] }>().jobs.find((listed) => listed.id === cachedRun)!;
    assert.deepEqual([item.outputs_count, item.previewable_outputs_count, item.preview_output?.filename], [2, 2, aliceOwn]);
    assert.equal(item.outputs, undefined, 'the list has no outputs, as ComfyUI lists jobs');
  });

  test("her socket's executed events name her own files, and not bob's", () => {
    const executed = socket.texts.filter((m) => m.type === 'executed' && m.data.prompt_id === cachedRun);
    assert.ok(!JSON.stringify(socket.texts).includes('bob-secret_'), "no event names bob's file");
    assert.ok(!JSON.stringify(socket.texts).includes(bobBackground), "no event names bob's background image");
    const outputOf = (node: string): unknown => executed.find((m) => m.data.node === node)?.data.output;
    assert.equal(outputOf('9'), null, "the cached node of bob's file is told as a node without output");
    assert.equal(outputOf('12'), null, "so is bob's cached Preview3D, whose only file is named by a path string");
    assert.deepEqual(outputOf('10'), { images: [{ filename: aliceOwn, subfolder: '', type: 'output' }] });
    assert.deepEqual(outputOf('11'), { images: [{ filename: aliceFresh, subfolder: '', type: 'output' }] });
  });

  test('bob, whose file it is, is shown it when his own run of the graph is answered from the cache', async () => {
    const again = await send(stage.gateway.url, '/api/prompt', {
      method: 'POST',
      key: stage.bob.api_key,
      body: { prompt: { '3': SAMPLER, '9': save('bob-secret') } },
    });
    const id = again.json<{ prompt_id: string }>().prompt_id;
    await waitForHistory(stage.gateway.url, stage.bob.api_key, id);
    const history = await send(stage.gateway.url, `/api/history/${id}`, { key: stage.bob.api_key });
    assert.ok(history.text.includes(bobSecret), `his cached run names his own file: ${history.text.slice(0, 300)}`);
    const job = (await send(stage.gateway.url, `/api/jobs/${id}`, { key: stage.bob.api_key })).json<JobItem>();
    assert.deepEqual([job.outputs_count, job.preview_output?.filename], [1, bobSecret]);
  });
});

describe("ComfyUI's output cache across a cut in the gateway's socket to ComfyUI", () => {
  let stage: TwoKeyStage;
  before(async () => {
    // Slow steps: the sampler runs for about 1.6 s between the prompt's execution_cached and its cached node's executed.
    stage = await startTwoKeyStage([], { cachedOutputs: true, stepDelayMs: 200 });
  });
  after(async () => {
    await stage?.close();
  });

  // Cut after execution_cached, the gateway knows which nodes are cached; cut after execution_start, it missed the list.
  for (const [cutAfter, seed] of [
    ['execution_cached', 4242],
    ['execution_start', 4343],
  ] as const) {
    test(`a cached node's executed event sent after the gateway's socket to ComfyUI came back (cut after ${cutAfter}) still names only the key's own files`, async () => {
      const sampler = { class_type: 'KSampler', inputs: { seed, steps: 2 } };
      const bobs = await send(stage.gateway.url, '/api/prompt', {
        method: 'POST',
        key: stage.bob.api_key,
        body: { prompt: { '3': sampler, '9': save('bob-late') } },
      });
      const bobId = bobs.json<{ prompt_id: string }>().prompt_id;
      const bobRun = await waitForHistory(stage.gateway.url, stage.bob.api_key, bobId);
      const bobFile = (bobRun.outputs as Record<string, { images: Array<{ filename: string }> }>)['9']!.images[0]!.filename;
      // ComfyUI's own history holds the gateway's client_id, which its socket to ComfyUI uses.
      const upstream = (await send(stage.comfy.url, `/history/${bobId}`)).json<Record<string, { prompt: [number, string, unknown, { client_id: string }] }>>();
      const gatewayClientId = upstream[bobId]!.prompt[3].client_id;
      assert.ok(stage.comfy.openSockets().includes(gatewayClientId), `the gateway's socket is ${gatewayClientId}`);

      const socket = await openCollectingSocket(`${stage.gateway.url.replace('http', 'ws')}/ws?clientId=alice-late`, { 'x-api-key': stage.alice.api_key });
      try {
        const res = await send(stage.gateway.url, '/api/prompt', {
          method: 'POST',
          key: stage.alice.api_key,
          body: { prompt: { '3': sampler, '9': save('bob-late') }, client_id: 'alice-late' },
        });
        const aliceRun = res.json<{ prompt_id: string }>().prompt_id;
        await waitFor(() => socket.texts.some((m) => m.type === cutAfter && m.data.prompt_id === aliceRun), `${cutAfter} on her socket`);
        stage.comfy.cutSocket(gatewayClientId, 0);
        await waitFor(() => socket.texts.some((m) => m.type === 'execution_success' && m.data.prompt_id === aliceRun), 'the end of her run', 20_000);
        const executed = socket.texts.find((m) => m.type === 'executed' && m.data.prompt_id === aliceRun && m.data.node === '9');
        assert.ok(executed, "the cached node's executed event came after the socket was back");
        assert.ok(!JSON.stringify(socket.texts).includes(bobFile), `no event names bob's file: ${JSON.stringify(executed)}`);
        assert.equal(executed.data.output, null);
        // The job's record (GET /api/gateway/jobs/{id}, a run's answer, webhooks) lists none of bob's files either.
        await waitFor(
          async () =>
            (await send(stage.gateway.url, `/api/gateway/jobs/${aliceRun}`, { key: stage.alice.api_key })).json<{ status: string }>().status === 'success',
          'her job recorded as ended',
        );
        const record = await send(stage.gateway.url, `/api/gateway/jobs/${aliceRun}`, { key: stage.alice.api_key });
        assert.ok(!record.text.includes(bobFile), `her job record does not name bob's file: ${record.text.slice(0, 400)}`);
      } finally {
        await socket.close();
      }
    });
  }
});
