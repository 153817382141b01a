// POST /api/gateway/run through a real gateway and a fake ComfyUI: finished, timed out, failed and refused runs, hang-ups, quotas and isolation.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { STALLED_ANSWER_MS } from '../../src/isolation/run.js';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { postToHangUp, send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { startTwoKeyStage, type TwoKeyStage } from '../helpers/two-keys.js';
import { waitFor } from '../helpers/wait-for.js';

interface RunOutput {
  filename: string;
  subfolder: string;
  type: string;
  url: string;
  content_type: string | null;
  size: number | null;
  data?: string;
}

interface RunJob {
  id: string;
  key_id: string;
  status: string;
  outputs: RunOutput[];
  error: { message: string; node_id?: string; node_type?: string; exception_type?: string } | null;
}

/** How long a fake node step takes: a two-node prompt runs for about half a second. */
const STEP_MS = 25;

describe('POST /api/gateway/run', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let userDirectory: { path: string; remove(): Promise<void> };
  let admin: string;
  let alice: CreatedKey;
  let bob: CreatedKey;

  const run = (key: string, body: unknown): Promise<TestResponse> => send(gateway.url, '/api/gateway/run', { method: 'POST', key, body: body as object });
  const jobOf = async (key: string, id: string): Promise<RunJob> => {
    const res = await send(gateway.url, `/api/gateway/jobs/${encodeURIComponent(id)}`, { key });
    assert.equal(res.status, 200, res.text);
    return res.json<RunJob>();
  };

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: STEP_MS, failingClassTypes: ['VAEDecode'] });
    userDirectory = await tempUserDirectory();
    gateway = await startGateway({ upstream: comfy.url, userDirectory: userDirectory.path, args: ['--require-api-auth'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    alice = await createKey(gateway.url, { name: 'alice', rate_limit: 10_000 }, admin);
    bob = await createKey(gateway.url, { name: 'bob', rate_limit: 10_000 }, admin);
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
    await userDirectory?.remove();
  });

  test('a finished run answers 200 with the job, its outputs described, their /view URLs working and inline data equal to the files', async () => {
    const res = await run(alice.api_key, { prompt: SAVE_WORKFLOW, wait: 30, inline: true });
    assert.equal(res.status, 200, res.text);
    const job = res.json<RunJob>();
    assert.equal(job.status, 'success');
    assert.equal(job.key_id, alice.key_id);
    assert.equal(job.error, null);
    assert.equal(job.outputs.length, 1);
    const [output] = job.outputs;
    const file = await readFile(join(comfy.outputDir, output!.filename));
    assert.equal(output!.content_type, 'image/png');
    assert.equal(output!.size, file.length);
    assert.equal(output!.data, file.toString('base64'), 'inline data is the file');
    const view = await send(gateway.url, output!.url, { key: alice.api_key });
    assert.equal(view.status, 200, 'the output URL opens for its key');
    assert.equal(Number(view.headers['content-length']), file.length);
    assert.deepEqual((await jobOf(alice.api_key, job.id)).status, 'success', 'the jobs API shows the same job');

    const plain = (await run(alice.api_key, { prompt: SAVE_WORKFLOW })).json<RunJob>();
    assert.equal(plain.status, 'success');
    assert.equal(plain.outputs[0]!.data, undefined, 'no data unless inline');
    assert.equal(plain.outputs[0]!.content_type, 'image/png');
  });

  test('a run not finished within wait answers 202 with Location; the job then succeeds', async () => {
    const res = await run(alice.api_key, { prompt: SAVE_WORKFLOW, wait: 0.05 });
    assert.equal(res.status, 202, res.text);
    const job = res.json<RunJob>();
    assert.ok(['held', 'queued', 'running'].includes(job.status), job.status);
    assert.equal(res.headers.location, `/api/gateway/jobs/${encodeURIComponent(job.id)}`);
    const later = await waitFor(
      async () => {
        const now = await jobOf(alice.api_key, job.id);
        return now.status === 'success' && now;
      },
      'the job to succeed',
      30_000,
    );
    assert.equal(later.outputs.length, 1);
  });

  test('a run whose node fails answers 200 with status error and the node, type and message', async () => {
    const prompt = { '1': { class_type: 'VAEDecode', inputs: {} }, '2': { class_type: 'SaveImage', inputs: { images: ['1', 0] } } };
    const res = await run(alice.api_key, { prompt, wait: 30 });
    assert.equal(res.status, 200, res.text);
    const job = res.json<RunJob>();
    assert.equal(job.status, 'error');
    assert.equal(job.error?.node_id, '1');
    assert.equal(job.error?.node_type, 'VAEDecode');
    assert.match(job.error?.message ?? '', /VAEDecode failed/);
    assert.deepEqual(job.outputs, []);
  });

  test("a prompt ComfyUI refuses gets ComfyUI's 400 answer, and leaves no job", async () => {
    const before = (await send(gateway.url, '/api/gateway/jobs?limit=500', { key: alice.api_key })).json<{ pagination: { total: number } }>();
    const res = await run(alice.api_key, { prompt: { '1': { class_type: 'NoSuchNode', inputs: {} } } });
    assert.equal(res.status, 400, res.text);
    const body = res.json<{ error: { type: string }; node_errors: unknown }>();
    assert.equal(body.error.type, 'invalid_prompt');
    assert.ok('node_errors' in body);
    const after = (await send(gateway.url, '/api/gateway/jobs?limit=500', { key: alice.api_key })).json<{ pagination: { total: number } }>();
    assert.equal(after.pagination.total, before.pagination.total);
  });

  test('strict bodies: unknown fields, wrong types and out-of-range waits are 400 INVALID_REQUEST with details; GET is 405', async () => {
    const cases: Array<[unknown, string]> = [
      [{ prompt: SAVE_WORKFLOW, callback_url: 'https://example.com' }, 'callback_url'],
      [{ prompt: SAVE_WORKFLOW, webhook_url: 'https://example.com', webhook_events: ['job.done'] }, 'webhook_events'],
      [{ prompt: SAVE_WORKFLOW, wait: '10' }, 'wait'],
      [{ prompt: SAVE_WORKFLOW, wait: 601 }, 'wait'],
      [{ prompt: SAVE_WORKFLOW, inline: 'yes' }, 'inline'],
      [{ prompt: SAVE_WORKFLOW, cancel_on_disconnect: 1 }, 'cancel_on_disconnect'],
      [{ prompt: SAVE_WORKFLOW, client_id: 5 }, 'client_id'],
      [{ prompt: [] }, 'prompt'],
      [{}, 'prompt'],
    ];
    for (const [body, field] of cases) {
      const res = await run(alice.api_key, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      const error = res.json<{ error_code: string; details: Array<{ field: string }> }>();
      assert.equal(error.error_code, 'INVALID_REQUEST');
      assert.ok(
        error.details.some((detail) => detail.field === field),
        `${field} named in ${res.text}`,
      );
    }
    assert.equal((await send(gateway.url, '/api/gateway/run', { method: 'POST', key: alice.api_key, body: '{not json' })).status, 400);
    assert.equal((await send(gateway.url, '/api/gateway/run', { key: alice.api_key })).status, 405);
    assert.equal((await send(gateway.url, '/api/gateway/run', { method: 'POST', body: { prompt: SAVE_WORKFLOW } })).status, 401);
  });

  /** Starts a run and hangs up once its job runs; resolves the job's id. */
  async function hangUpWhileRunning(key: string, body: Record<string, unknown>): Promise<string> {
    const req = postToHangUp(gateway.url, '/api/gateway/run', key, body);
    const running = await waitFor(
      async () => {
        const list = (await send(gateway.url, '/api/gateway/jobs?status=running', { key })).json<{ jobs: RunJob[] }>();
        return list.jobs[0];
      },
      'the run to be running',
      30_000,
    );
    req.destroy();
    return running.id;
  }

  test('a client that hangs up does not cancel its job', async () => {
    const key = (await createKey(gateway.url, { name: 'leaver', rate_limit: 10_000 }, admin)).api_key;
    const id = await hangUpWhileRunning(key, { prompt: SAVE_WORKFLOW, wait: 30 });
    const ended = await waitFor(
      async () => {
        const job = await jobOf(key, id);
        return job.status !== 'running' && job.status !== 'queued' && job;
      },
      'the job to end',
      30_000,
    );
    assert.equal(ended.status, 'success');
  });

  test('with cancel_on_disconnect, a client that hangs up has its running job interrupted', async () => {
    const key = (await createKey(gateway.url, { name: 'canceller', rate_limit: 10_000 }, admin)).api_key;
    const id = await hangUpWhileRunning(key, { prompt: SAVE_WORKFLOW, wait: 30, cancel_on_disconnect: true });
    const ended = await waitFor(
      async () => {
        const job = await jobOf(key, id);
        return job.status !== 'running' && job.status !== 'queued' && job;
      },
      'the job to end',
      30_000,
    );
    assert.ok(['interrupted', 'cancelled'].includes(ended.status), ended.status);
    assert.equal(ended.outputs.length, 0, 'it ended before saving');
  });

  test('with cancel_on_disconnect, a held job of a client that hangs up is cancelled before it reaches ComfyUI', async () => {
    const key = await createKey(gateway.url, { name: 'held', rate_limit: 10_000, max_running: 1 }, admin);
    const first = await run(key.api_key, { prompt: SAVE_WORKFLOW, wait: 0 });
    assert.equal(first.status, 202);
    const req = postToHangUp(gateway.url, '/api/gateway/run', key.api_key, { prompt: SAVE_WORKFLOW, wait: 30, cancel_on_disconnect: true });
    const held = await waitFor(
      async () =>
        (await send(gateway.url, '/api/gateway/jobs?status=held', { key: key.api_key }))
          .json<{ jobs: RunJob[] }>()
          .jobs.find((job) => job.id !== first.json<RunJob>().id),
      'the second run to be held',
      10_000,
    );
    req.destroy();
    await waitFor(async () => (await jobOf(key.api_key, held.id)).status === 'cancelled', 'the held job to be cancelled', 10_000);
    assert.ok(!comfy.prompts.some((prompt) => prompt.id === held.id), 'it never reached ComfyUI');
  });

  test('quotas apply as to POST /prompt: past max_queued, 429 QUEUE_LIMIT', async () => {
    const key = (await createKey(gateway.url, { name: 'quota', rate_limit: 10_000, max_queued: 1 }, admin)).api_key;
    const first = await run(key, { prompt: SAVE_WORKFLOW, wait: 0 });
    assert.equal(first.status, 202, first.text);
    const second = await run(key, { prompt: SAVE_WORKFLOW, wait: 5 });
    assert.equal(second.status, 429, second.text);
    assert.equal(second.json().error_code, 'QUEUE_LIMIT');
  });

  test("a user key cannot reach another key's work through a run", async () => {
    const res = await run(alice.api_key, { prompt: SAVE_WORKFLOW, client_id: 'alice-run-client', wait: 30 });
    assert.equal(res.status, 200, res.text);
    const job = res.json<RunJob>();
    assert.equal((await send(gateway.url, `/api/gateway/jobs/${job.id}`, { key: bob.api_key })).status, 404, "bob does not see alice's job");
    assert.equal((await send(gateway.url, job.outputs[0]!.url, { key: bob.api_key })).status, 404, "nor alice's file");
    const stolenClient = await run(bob.api_key, { prompt: SAVE_WORKFLOW, client_id: 'alice-run-client' });
    assert.equal(stolenClient.status, 403, "alice's client_id is hers");
    const loadsAlices = {
      '1': { class_type: 'LoadImageOutput', inputs: { image: job.outputs[0]!.filename } },
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0] } },
    };
    const stolenFile = await run(bob.api_key, { prompt: loadsAlices });
    assert.equal(stolenFile.status, 403, stolenFile.text);
    assert.match(stolenFile.json<{ error: string }>().error, /did not upload or produce/);
  });
});

describe("ComfyUI's output cache: a graph another key ran before", () => {
  let stage: TwoKeyStage;
  /** Bob's graph with a prefix of his own, so that its file is his alone. */
  const bobsGraph = {
    '3': { class_type: 'KSampler', inputs: { seed: 4242, steps: 2 } },
    '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'bob-secret' } },
  };

  before(async () => {
    stage = await startTwoKeyStage([], { cachedOutputs: true, stepDelayMs: STEP_MS });
  });
  after(() => stage.close());

  test("ComfyUI's cached answer (the other key's file) is not the run's output: no name, no size, no bytes", async () => {
    const bobs = await send(stage.gateway.url, '/api/gateway/run', { method: 'POST', key: stage.bob.api_key, body: { prompt: bobsGraph, wait: 30 } });
    assert.equal(bobs.status, 200, bobs.text);
    const bobFile = bobs.json<RunJob>().outputs[0]!;
    assert.match(bobFile.filename, /^bob-secret_/);

    const res = await send(stage.gateway.url, '/api/gateway/run', {
      method: 'POST',
      key: stage.alice.api_key,
      body: { prompt: bobsGraph, wait: 30, inline: true },
    });
    assert.equal(res.status, 200, res.text);
    const job = res.json<RunJob>();
    assert.equal(job.status, 'success');
    const history = await send(stage.comfy.url, `/api/history/${job.id}`);
    assert.match(history.text, /bob-secret_/, "ComfyUI's history names bob's file: it took the node's output from its cache");
    assert.deepEqual(job.outputs, [], `alice's run lists no file of bob's: ${res.text.slice(0, 300)}`);
    const listed = await send(stage.gateway.url, `/api/gateway/jobs/${job.id}`, { key: stage.alice.api_key });
    assert.deepEqual(listed.json<RunJob>().outputs, [], 'nor does her job');
    assert.equal((await send(stage.gateway.url, bobFile.url, { key: stage.alice.api_key })).status, 404, "and bob's file stays his");

    const again = await send(stage.gateway.url, '/api/gateway/run', {
      method: 'POST',
      key: stage.bob.api_key,
      body: { prompt: bobsGraph, wait: 30, inline: true },
    });
    const own = again.json<RunJob>().outputs;
    assert.deepEqual(
      own.map((file) => [file.filename, typeof file.data]),
      [[bobFile.filename, 'string']],
      "bob's own cached run lists his file, with its bytes",
    );
  });
});

describe('POST /api/gateway/run to a client that stops reading', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let userDirectory: { path: string; remove(): Promise<void> };

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 2, outputPadding: 4 * 1024 * 1024 - 1024 });
    userDirectory = await tempUserDirectory();
    gateway = await startGateway({ upstream: comfy.url, userDirectory: userDirectory.path, args: ['--require-api-auth'] });
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
    await userDirectory?.remove();
  });

  test('a large inline answer that the client stops reading is cut once 30 s pass without progress, not held for ever', async () => {
    const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    const key = (await createKey(gateway.url, { name: 'stalled', rate_limit: 10_000 }, admin)).api_key;
    const prompt: Record<string, unknown> = { '1': { class_type: 'KSampler', inputs: { seed: 1, steps: 1 } } };
    for (const n of [2, 3, 4, 5]) prompt[String(n)] = { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: `big${n}` } };
    const body = JSON.stringify({ prompt, wait: 30, inline: true });
    const socket = connect(Number(new URL(gateway.url).port), '127.0.0.1');
    const chunks: Buffer[] = [];
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
    let reading = false;
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (!reading) socket.pause();
    });
    socket.write(
      `POST /api/gateway/run HTTP/1.1\r\nHost: ${new URL(gateway.url).host}\r\nX-API-Key: ${key}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    await waitFor(() => chunks.length > 0, 'the answer to start', 30_000);
    // Node checks a stalled write at each period and closes it at the first with no progress at all: within two periods.
    await sleep(2 * STALLED_ANSWER_MS + 5_000);
    reading = true;
    socket.resume();
    await closed;
    const received = Buffer.concat(chunks);
    const head = received.subarray(0, received.indexOf('\r\n\r\n')).toString('latin1');
    const length = Number(/content-length: (\d+)/i.exec(head)?.[1]);
    assert.ok(length > 16 * 1024 * 1024, `a large answer (${length} bytes)`);
    assert.ok(received.length - head.length - 4 < length, 'the gateway closed the connection before the whole answer was sent');
  });
});
