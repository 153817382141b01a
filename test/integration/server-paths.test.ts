// A job's errors, refusals and outputs through the gateway: a user key sees no server path on its socket, in its history, in ComfyUI's jobs API, the gateway's jobs API, its run or ComfyUI's answer to its prompt; an admin key sees them whole.

import assert from 'node:assert/strict';
import { unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket, SAVE_WORKFLOW, waitForHistory, type CollectingSocket } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { multipart } from '../helpers/multipart.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

/** A prompt whose VAEDecode fails: the fake's exception names a missing input file, and its traceback the fake's files, by their absolute paths. */
const FAILING = { '1': { class_type: 'VAEDecode', inputs: {} }, '2': { class_type: 'SaveImage', inputs: { images: ['1', 0] } } };

describe('server paths in a failed job', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;
  let alice: string;
  /** The fake ComfyUI's folder, where its traceback's files and its input folder are. */
  let root: string;
  /** While set, a prompt that starts in ComfyUI waits for it, and the gateway holds the next (it sends one at a time). */
  let runsHeld: Promise<void> | null = null;

  before(async () => {
    comfy = await startFakeComfyUI({
      failingClassTypes: ['VAEDecode'],
      failuresNameFiles: true,
      refusalsNameFiles: true,
      outputFullPaths: true,
      beforeRun: () => runsHeld ?? undefined,
    });
    root = dirname(comfy.inputDir);
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '1'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 10_000 }, admin)).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  /** Queues `prompt` with `key`'s socket open; resolves its id and the socket's event of type `awaited` (of node `node`, if given), once its history entry is written. */
  async function runWithSocket(
    key: string,
    clientId: string,
    prompt: Record<string, unknown>,
    awaited: string,
    node?: string,
  ): Promise<{ id: string; event: Record<string, unknown> }> {
    const socket: CollectingSocket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=${clientId}`, { 'x-api-key': key });
    const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt, client_id: clientId } });
    assert.equal(res.status, 200, res.text);
    const id = res.json<{ prompt_id: string }>().prompt_id;
    const event = await waitFor(
      () => socket.texts.find((m) => m.type === awaited && m.data.prompt_id === id && (node === undefined || m.data.node === node))?.data,
      `the ${awaited}`,
      10_000,
    );
    await socket.close();
    await waitForHistory(gateway.url, key, id);
    return { id, event };
  }

  /** Queues the failing prompt with `key`'s socket open; resolves its id and the socket's execution_error, once its history entry is written. */
  const failWithSocket = (key: string, clientId: string): Promise<{ id: string; event: Record<string, unknown> }> =>
    runWithSocket(key, clientId, FAILING, 'execution_error');

  /** Uploads an image as `key` and then deletes it from ComfyUI's input folder: the key owns the name, and ComfyUI refuses a prompt that loads it. */
  async function uploadGone(key: string, filename: string): Promise<Record<string, unknown>> {
    const res = await send(gateway.url, '/api/upload/image', { method: 'POST', key, ...multipart([{ name: 'image', filename, value: Buffer.from('png') }]) });
    assert.equal(res.status, 200, res.text);
    const name = res.json<{ name: string }>().name;
    await unlink(join(comfy.inputDir, name));
    return { '1': { class_type: 'LoadImage', inputs: { image: name } }, '2': { class_type: 'SaveImage', inputs: { images: ['1', 0] } } };
  }

  /** What `key` gets of the job `id` everywhere a request shows its error. */
  async function everyView(key: string, id: string): Promise<Record<string, unknown>> {
    const get = async (target: string): Promise<unknown> => {
      const res = await send(gateway.url, target, { key });
      assert.equal(res.status, 200, `${target}: ${res.text}`);
      return res.json();
    };
    const jobs = (await get('/api/jobs')) as { jobs: Array<{ id: string }> };
    const gatewayJobs = (await get('/api/gateway/jobs')) as { jobs: Array<{ id: string }> };
    return {
      historyEntry: ((await get(`/api/history/${id}`)) as Record<string, unknown>)[id],
      historyList: ((await get('/api/history')) as Record<string, unknown>)[id],
      jobsItem: jobs.jobs.find((job) => job.id === id),
      job: await get(`/api/jobs/${id}`),
      gatewayJob: await get(`/api/gateway/jobs/${id}`),
      gatewayJobsItem: gatewayJobs.jobs.find((job) => job.id === id),
    };
  }

  test("a user key's socket, history, ComfyUI's jobs API and the gateway's jobs API and run name no server path, and keep the file, line and custom node", async () => {
    const { id, event } = await failWithSocket(alice, 'alice-fails');
    const views = await everyView(alice, id);
    const run = await send(gateway.url, '/api/gateway/run', { method: 'POST', key: alice, body: { prompt: FAILING, wait: 30 } });
    assert.equal(run.status, 200, run.text);
    const seen = Object.entries({ socket: event, ...views, run: run.json() });
    for (const [where, view] of seen) assert.ok(view, `${where} shows the job`);
    const naming = (text: string): string[] => seen.filter(([, view]) => JSON.stringify(view).includes(text)).map(([where]) => where);
    assert.deepEqual(naming(root), [], 'no place names a server path');
    assert.deepEqual(naming("No such file or directory: 'missing file.png'").length, seen.length, "every place keeps the file's name");
    for (const where of ['historyEntry', 'historyList', 'job'] as const)
      assert.ok(!JSON.stringify(views[where]).includes('"traceback":[]'), `${where} has a traceback`);
    assert.deepEqual(event.traceback, [
      '  File "execution.py", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all)\n',
      `  File "custom_nodes/fake-pack/nodes.py", line 12, in run\n    with open("missing file.png", 'rb') as f:\n`,
    ]);
    assert.equal(
      (views.job as { execution_error: { exception_message: string } }).execution_error.exception_message,
      "VAEDecode failed: [Errno 2] No such file or directory: 'missing file.png'",
    );
  });

  test('an admin key sees the same failure whole, of its own job and of a user key’s', async () => {
    const own = await failWithSocket(admin, 'admin-fails');
    assert.ok(JSON.stringify(own.event).includes(`${root}/custom_nodes/fake-pack/nodes.py`), JSON.stringify(own.event));
    const alices = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt: FAILING } });
    const id = alices.json<{ prompt_id: string }>().prompt_id;
    await waitForHistory(gateway.url, alice, id);
    for (const jobId of [own.id, id]) {
      for (const [where, seen] of Object.entries(await everyView(admin, jobId)))
        assert.ok(JSON.stringify(seen).includes(`${root}/input/missing file.png`), `${where} keeps the path: ${JSON.stringify(seen)}`);
    }
  });

  test("a held prompt that ComfyUI refuses when it is sent: its user key's history entry and job cut the path its message names; an admin's keep it", async () => {
    let release = (): void => undefined;
    runsHeld = new Promise((resolve) => (release = resolve));
    const running = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt: SAVE_WORKFLOW } });
    assert.equal(running.status, 200, running.text);
    const res = await send(gateway.url, '/api/prompt', {
      method: 'POST',
      key: alice,
      body: { prompt: { '1': { class_type: '/srv/comfy/NoSuchNode', inputs: {} } } },
    });
    assert.equal(res.status, 200, `held: the gateway answers for it: ${res.text}`);
    const id = res.json<{ prompt_id: string }>().prompt_id;
    runsHeld = null;
    release();
    type Entries = Record<string, { status: { messages: Array<[string, { exception_message: string }]> } }>;
    /** The message `key` reads in the job's history entry, in its history window (a user key's own: an admin's is ComfyUI's, which never had the job) and in the jobs API. */
    const errorOf = async (key: string): Promise<Record<string, string>> => {
      const messageIn = async (target: string): Promise<string> =>
        (await send(gateway.url, target, { key })).json<Entries>()[id]!.status.messages[0]![1].exception_message;
      const job = await send(gateway.url, `/api/gateway/jobs/${id}`, { key });
      return {
        entry: await messageIn(`/api/history/${id}`),
        ...(key === alice ? { window: await messageIn('/api/history') } : {}),
        job: job.json<{ error: { message: string } }>().error.message,
      };
    };
    await waitFor(
      async () => (await send(gateway.url, `/api/gateway/jobs/${id}`, { key: alice })).json<{ status: string }>().status === 'error',
      'the refusal',
      10_000,
    );
    const message = 'Cannot execute because node NoSuchNode does not exist.';
    assert.deepEqual(await errorOf(alice), { entry: message, window: message, job: message });
    const whole = message.replace('NoSuchNode', '/srv/comfy/NoSuchNode');
    assert.deepEqual(await errorOf(admin), { entry: whole, job: whole });
  });
  test("the failing node's current_inputs: a user key is shown the model file's name, on its socket, in its history and jobs API; an admin the path", async () => {
    const vae = join(root, 'models', 'vae', 'vae.safetensors');
    const inputsOf = async (key: string, clientId: string): Promise<unknown[]> => {
      const { id, event } = await failWithSocket(key, clientId);
      const entry = (await send(gateway.url, `/api/history/${id}`, { key })).json<
        Record<string, { status: { messages: Array<[string, Record<string, unknown>]> } }>
      >()[id]!;
      const job = (await send(gateway.url, `/api/jobs/${id}`, { key })).json<{ execution_error: Record<string, unknown> }>();
      const fromHistory = entry.status.messages.find(([type]) => type === 'execution_error')![1];
      return [event.current_inputs, fromHistory.current_inputs, job.execution_error.current_inputs];
    };
    const shown = { vae: ["<VAE loaded from 'vae.safetensors'>"], tile_size: [512] };
    assert.deepEqual(await inputsOf(alice, 'alice-inputs'), [shown, shown, shown]);
    const whole = { vae: [`<VAE loaded from '${vae}'>`], tile_size: [512] };
    assert.deepEqual(await inputsOf(admin, 'admin-inputs'), [whole, whole, whole]);
  });

  test("ComfyUI's refusal of a user key's prompt names no server path, in POST /prompt's and the run's answer; an admin's names it", async () => {
    const refusalOf = async (key: string, target: string, prompt: Record<string, unknown>): Promise<string> => {
      const res = await send(gateway.url, target, { method: 'POST', key, body: { prompt } });
      assert.equal(res.status, 400, res.text);
      return res.text;
    };
    for (const target of ['/api/prompt', '/api/gateway/run']) {
      const text = await refusalOf(alice, target, await uploadGone(alice, 'alice-gone.png'));
      assert.ok(!text.includes(root), `${target}: ${text}`);
      const body = JSON.parse(text) as { error: { details: string }; node_errors: Record<string, { errors: Array<{ details: string }> }> };
      assert.match(body.node_errors['1']!.errors[0]!.details, /^image - Invalid image file: alice-gone( \(\d+\))?\.png$/);
      assert.match(body.error.details, /Invalid image file: alice-gone( \(\d+\))?\.png$/);
    }
    const text = await refusalOf(admin, '/api/prompt', await uploadGone(admin, 'admin-gone.png'));
    assert.ok(text.includes(join(comfy.inputDir, 'admin-gone')), text);
  });

  test("a prompt ComfyUI accepts with one output's image gone: its answer's node errors name no server path for a user key, and the path for an admin", async () => {
    const acceptedWithErrors = async (key: string, filename: string): Promise<{ text: string; id: string }> => {
      // One output loads the image that is gone, the other does not: ComfyUI queues the prompt to run the other alone.
      const prompt = { ...(await uploadGone(key, filename)), ...SAVE_WORKFLOW };
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt } });
      assert.equal(res.status, 200, res.text);
      return { text: res.text, id: res.json<{ prompt_id: string }>().prompt_id };
    };
    const mine = await acceptedWithErrors(alice, 'alice-half.png');
    assert.ok(!mine.text.includes(root), mine.text);
    const body = JSON.parse(mine.text) as { node_errors: Record<string, { errors: Array<{ details: string }>; dependent_outputs: string[] }> };
    assert.match(body.node_errors['1']!.errors[0]!.details, /^image - Invalid image file: alice-half( \(\d+\))?\.png$/);
    assert.deepEqual(body.node_errors['1']!.dependent_outputs, ['2']);
    await waitForHistory(gateway.url, alice, mine.id);

    const admins = await acceptedWithErrors(admin, 'admin-half.png');
    assert.ok(admins.text.includes(join(comfy.inputDir, 'admin-half')), admins.text);
    await waitForHistory(gateway.url, admin, admins.id);
  });

  test("a held prompt ComfyUI refuses: its node errors name no server path in its user key's socket, history entry and job; an admin's name it", async () => {
    let release = (): void => undefined;
    runsHeld = new Promise((resolve) => (release = resolve));
    const socket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=alice-held`, { 'x-api-key': alice });
    const running = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt: SAVE_WORKFLOW } });
    assert.equal(running.status, 200, running.text);
    const res = await send(gateway.url, '/api/prompt', {
      method: 'POST',
      key: alice,
      body: { prompt: await uploadGone(alice, 'held-gone.png'), client_id: 'alice-held' },
    });
    assert.equal(res.status, 200, `held: the gateway answers for it: ${res.text}`);
    const id = res.json<{ prompt_id: string }>().prompt_id;
    runsHeld = null;
    release();
    const event = await waitFor(() => socket.texts.find((m) => m.type === 'execution_error' && m.data.prompt_id === id)?.data, 'the refusal', 10_000);
    await socket.close();
    /** The node errors `key` reads in the job's history entry and in the gateway's jobs API. */
    const nodeErrorsOf = async (key: string): Promise<string[]> => {
      const entry = (await send(gateway.url, `/api/history/${id}`, { key })).json<
        Record<string, { status: { messages: Array<[string, { node_errors: unknown }]> } }>
      >()[id]!;
      const job = (await send(gateway.url, `/api/gateway/jobs/${id}`, { key })).json<{ error: { node_errors: unknown } }>();
      return [JSON.stringify(entry.status.messages[0]![1].node_errors), JSON.stringify(job.error.node_errors)];
    };
    const seen = [JSON.stringify(event.node_errors), ...(await nodeErrorsOf(alice))];
    for (const text of seen) {
      assert.ok(!text.includes(root), text);
      assert.match(text, /Invalid image file: held-gone( \(\d+\))?\.png/);
    }
    for (const text of await nodeErrorsOf(admin)) assert.ok(text.includes(join(comfy.inputDir, 'held-gone')), text);
  });

  test("a custom node's output path (fullpath): a user key sees the file's name on its socket, in its history and jobs API, and /view serves the file; an admin the path", async () => {
    type Item = { filename: string; subfolder: string; type: string; fullpath: string };
    const itemsOf = async (key: string, clientId: string): Promise<Item[]> => {
      const { id, event } = await runWithSocket(key, clientId, SAVE_WORKFLOW, 'executed', '9');
      const entry = (await send(gateway.url, `/api/history/${id}`, { key })).json<Record<string, { outputs: Record<string, { images: Item[] }> }>>()[id]!;
      const window = (await send(gateway.url, '/api/history', { key })).json<Record<string, { outputs: Record<string, { images: Item[] }> }>>()[id];
      const job = (await send(gateway.url, `/api/jobs/${id}`, { key })).json<{ outputs: Record<string, { images: Item[] }>; preview_output: Item }>();
      const listed = (await send(gateway.url, '/api/jobs', { key }))
        .json<{ jobs: Array<{ id: string; preview_output: Item }> }>()
        .jobs.find((j) => j.id === id);
      return [
        (event.output as { images: Item[] }).images[0]!,
        entry.outputs['9']!.images[0]!,
        ...(key === alice ? [window!.outputs['9']!.images[0]!] : []),
        job.outputs['9']!.images[0]!,
        job.preview_output,
        listed!.preview_output,
      ];
    };
    const items = await itemsOf(alice, 'alice-outputs');
    for (const item of items) {
      assert.equal(item.fullpath, item.filename, JSON.stringify(item));
      assert.deepEqual([item.subfolder, item.type], ['', 'output']);
    }
    const { filename, subfolder, type } = items[0]!;
    const view = await send(gateway.url, `/api/view?${new URLSearchParams({ filename, subfolder, type })}`, { key: alice });
    assert.equal(view.status, 200, view.text);
    for (const item of await itemsOf(admin, 'admin-outputs')) assert.equal(item.fullpath, join(comfy.outputDir, item.filename), JSON.stringify(item));
  });
});
