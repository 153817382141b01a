// The gateway's own event socket once ComfyUI stops sending to it (a cut connection ComfyUI noticed late took its clientId back): found silent after the next accepted prompt, reopened, and the jobs end; a job deleted from the queue after it ran meanwhile is metered, not cancelled.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { openCollectingSocket, SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

/** How long the gateway's socket may stay silent after ComfyUI accepted a prompt (UpstreamEvents' default). */
const SILENCE_LIMIT_MS = 10_000;
/** The fake's delay between events: SAVE_WORKFLOW then runs in well under a second, far within the silence. */
const STEP_DELAY_MS = 15;
/** The wait before the first attempt to reopen a closed socket (UpstreamEvents' default). */
const RECONNECT_MIN_MS = 250;
/** Six samplers in a row, then a save; the last sampler, node 6, is the one a test may hold (see lastSamplerHeld). */
const LONG_WORKFLOW: Record<string, unknown> = {
  '1': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
  ...Object.fromEntries([2, 3, 4, 5, 6].map((n) => [String(n), { class_type: 'KSampler', inputs: { seed: n, steps: 2, latent_image: [String(n - 1), 0] } }])),
  '9': { class_type: 'SaveImage', inputs: { images: ['6', 0], filename_prefix: 'ComfyUI' } },
};

describe("the gateway's event socket, once ComfyUI no longer sends to it", () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let alice = '';
  /** While set, LONG_WORKFLOW waits before its last sampler, still running in ComfyUI. */
  let lastSamplerHeld: Promise<void> | null = null;

  // A gateway for each test: its own comparison of jobs with ComfyUI, every 30 s from its start, cannot come while the test's socket is silent.
  beforeEach(async () => {
    comfy = await startFakeComfyUI({
      stepDelayMs: STEP_DELAY_MS,
      beforeNode: (_promptId, node) => (node === '6' ? (lastSamplerHeld ?? undefined) : undefined),
    });
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
    alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 1000 }, admin)).api_key;
  });
  afterEach(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  /** The gateway's log lines so far, parsed. */
  function logLines(): Array<Record<string, unknown> & { msg: string }> {
    return gateway
      .output()
      .stdout.split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown> & { msg: string });
  }

  async function queue(prompt: Record<string, unknown>): Promise<string> {
    const res = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt, client_id: 'alice-screen' } });
    assert.equal(res.status, 200, res.text);
    return res.json<{ prompt_id: string }>().prompt_id;
  }

  async function statusOf(id: string): Promise<string> {
    const res = await send(gateway.url, `/api/gateway/jobs/${id}`, { key: alice });
    assert.equal(res.status, 200, res.text);
    return res.json<{ status: string }>().status;
  }

  async function metered(): Promise<{ prompts_run: number; execution_seconds: number }> {
    const res = await send(gateway.url, '/api/usage?days=1', { key: alice });
    assert.equal(res.status, 200, res.text);
    return res.json<{ usage_stats: { prompts_run: number; execution_seconds: number } }>().usage_stats;
  }

  test('is reopened with the same clientId within the bound after a prompt is accepted; a job that ended meanwhile ends, a running one gets its events', async (t) => {
    let letLongRunOn!: () => void;
    lastSamplerHeld = new Promise<void>((resolve) => (letLongRunOn = resolve));
    t.after(() => {
      lastSamplerHeld = null;
      letLongRunOn();
    });
    const [gatewayClientId] = await waitFor(() => comfy.openSockets().length === 1 && comfy.openSockets(), "the gateway's socket");
    const upgrades = (): number => comfy.requests.filter((request) => request.url.startsWith('/ws')).length;
    // The connection is cut; the gateway reconnects at once, and ComfyUI's handler of the old connection ends 1.5 s later.
    comfy.cutSocket(gatewayClientId!, 1500);
    await waitFor(() => upgrades() === 2, 'the gateway to reconnect');
    await waitFor(() => !comfy.openSockets().includes(gatewayClientId!), "the old connection's handler to take the clientId back");

    const socket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=alice-screen`, { 'x-api-key': alice });
    // The short job runs and ends while the socket is silent; the long one is held before its last sampler until the socket is reopened.
    const short = await queue(SAVE_WORKFLOW);
    const accepted = Date.now();
    const long = await queue(LONG_WORKFLOW);
    await waitFor(() => comfy.openSockets().includes(gatewayClientId!), 'the silent socket to be reopened', SILENCE_LIMIT_MS + 20_000);
    const reopenedAt = Date.now();
    // The bound, as the gateway kept it: it closed the socket once it had been silent for the limit, and reopened it after the first wait.
    const lines = await waitFor(() => {
      const all = logLines();
      const silence = all.findIndex((line) => line.msg.includes('got nothing after ComfyUI accepted a prompt'));
      return silence >= 0 && all.slice(silence).some((line) => line.msg === 'ComfyUI event socket open') && all.slice(silence);
    }, 'the silence and the reopen to be logged');
    const silentMs = lines[0]!.silent_ms as number;
    assert.ok(silentMs >= SILENCE_LIMIT_MS && silentMs < SILENCE_LIMIT_MS + 2000, `closed after ${silentMs} ms of silence`);
    const reconnect = lines.find((line) => line.msg === 'ComfyUI event socket closed; reconnecting');
    assert.equal(reconnect?.retry_in_ms, RECONNECT_MIN_MS, 'reopened after the first wait');
    assert.equal(upgrades(), 3);
    assert.ok(
      comfy.requests.filter((request) => request.url.startsWith('/ws')).every((request) => request.url === `/ws?clientId=${gatewayClientId}`),
      'every connection uses the same clientId',
    );
    assert.ok(
      !socket.texts.some((message) => message.data.prompt_id === short),
      "the short job's events were lost with the silent socket (the reproduction holds)",
    );

    await waitFor(async () => (await statusOf(short)) === 'success', 'the job that ended while the socket was silent to end', 3000);
    const shortEndedAt = Date.now();
    letLongRunOn();
    await waitFor(() => socket.texts.some((message) => message.data.prompt_id === long), "the running job's events on the client's socket");
    t.diagnostic(
      `reopened ${reopenedAt - accepted} ms after the first prompt was accepted (${silentMs} ms of silence as the gateway measured it); ` +
        `the ended job settled ${shortEndedAt - reopenedAt} ms after the reopen`,
    );
    await waitFor(
      () => socket.texts.some((message) => message.type === 'execution_success' && message.data.prompt_id === long),
      "the running job's end on the client's socket",
    );
    assert.ok(socket.texts.some((message) => message.type === 'executed' && message.data.prompt_id === long));
    // The gateway records the end once it has read the job's history entry (its start was missed): a moment after it passed the event on.
    await waitFor(async () => (await statusOf(long)) === 'success', 'the running job to be recorded as ended');
    await socket.close();

    const warning = gateway
      .output()
      .stdout.split('\n')
      .find((line) => line.includes('got nothing after ComfyUI accepted a prompt'));
    assert.ok(warning, 'the silence is logged');
    const fields = JSON.parse(warning) as { level: number; url: string };
    assert.equal(fields.level, 40);
    assert.equal(fields.url, comfy.url);
    assert.ok(!warning.includes(alice), 'no key in the line');
  });

  test('a job deleted from the queue after it ran while the socket was silent is not cancelled: it ends as ComfyUI ran it, and its execution seconds are metered to its key', async () => {
    const [gatewayClientId] = await waitFor(() => comfy.openSockets().length === 1 && comfy.openSockets(), "the gateway's socket");
    const upgrades = (): number => comfy.requests.filter((request) => request.url.startsWith('/ws')).length;
    comfy.cutSocket(gatewayClientId!, 1500);
    await waitFor(() => upgrades() === 2, 'the gateway to reconnect');
    await waitFor(() => !comfy.openSockets().includes(gatewayClientId!), "the old connection's handler to take the clientId back");

    const queued = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt: SAVE_WORKFLOW } });
    assert.equal(queued.status, 200, queued.text);
    const id = queued.json<{ prompt_id: string }>().prompt_id;
    await waitFor(() => comfy.history.has(id) && comfy.inFlight().length === 0, 'ComfyUI to run the prompt');
    const job = await send(gateway.url, `/api/gateway/jobs/${id}`, { key: alice });
    assert.equal(job.json<{ status: string }>().status, 'queued', 'the gateway saw none of its events (the reproduction holds)');

    const before = await metered();
    const deleted = await send(gateway.url, '/api/queue', { method: 'POST', key: alice, body: { delete: [id] } });
    assert.equal(deleted.status, 200, deleted.text);
    // Ended by the delete, before the silent socket is reopened (10 s after the prompt was accepted), which would settle it too.
    const { status, execution_seconds } = await waitFor(
      async () => {
        const ended = (await send(gateway.url, `/api/gateway/jobs/${id}`, { key: alice })).json<{ status: string; execution_seconds: number | null }>();
        assert.equal(upgrades(), 2, 'the silent socket was reopened before the job ended');
        return !['queued', 'running'].includes(ended.status) && ended;
      },
      'the job to end',
      SILENCE_LIMIT_MS + 20_000,
    );
    assert.equal(status, 'success');
    assert.ok(execution_seconds !== null && execution_seconds > 0, `execution_seconds ${execution_seconds}`);
    const now = await metered();
    assert.equal(now.prompts_run, before.prompts_run + 1);
    assert.ok(
      Math.abs(now.execution_seconds - before.execution_seconds - execution_seconds) < 0.01,
      `metered ${now.execution_seconds - before.execution_seconds} s`,
    );
  });
});
