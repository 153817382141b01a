// A failed job's exception message and traceback through the gateway: a user key sees no server path on its socket, in its history, in ComfyUI's jobs API, the gateway's jobs API or its run; an admin key sees them whole.

import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket, SAVE_WORKFLOW, waitForHistory, type CollectingSocket } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
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
    comfy = await startFakeComfyUI({ failingClassTypes: ['VAEDecode'], failuresNameFiles: true, beforeRun: () => runsHeld ?? undefined });
    root = dirname(comfy.inputDir);
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '1'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 10_000 }, admin)).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  /** Queues the failing prompt with `key`'s socket open; resolves its id and the socket's execution_error, once its history entry is written. */
  async function failWithSocket(key: string, clientId: string): Promise<{ id: string; event: Record<string, unknown> }> {
    const socket: CollectingSocket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=${clientId}`, { 'x-api-key': key });
    const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: FAILING, client_id: clientId } });
    assert.equal(res.status, 200, res.text);
    const id = res.json<{ prompt_id: string }>().prompt_id;
    const event = await waitFor(() => socket.texts.find((m) => m.type === 'execution_error' && m.data.prompt_id === id)?.data, 'the execution_error', 10_000);
    await socket.close();
    await waitForHistory(gateway.url, key, id);
    return { id, event };
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
});
