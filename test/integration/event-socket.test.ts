// The gateway's own event socket once ComfyUI stops sending to it (a cut connection ComfyUI noticed late took its clientId back): found silent after the next accepted prompt, reopened, and the jobs end; a job deleted from the queue after it ran meanwhile is metered, not cancelled.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket, SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

/** How long the gateway's socket may stay silent after ComfyUI accepted a prompt (UpstreamEvents' default). */
const SILENCE_LIMIT_MS = 10_000;
/** The fake's delay between events: SAVE_WORKFLOW then runs about 3.5 s, LONG_WORKFLOW about 11 s. */
const STEP_DELAY_MS = 150;
/** Six samplers in a row, then a save. */
const LONG_WORKFLOW: Record<string, unknown> = {
  '1': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
  ...Object.fromEntries([2, 3, 4, 5, 6].map((n) => [String(n), { class_type: 'KSampler', inputs: { seed: n, steps: 2, latent_image: [String(n - 1), 0] } }])),
  '9': { class_type: 'SaveImage', inputs: { images: ['6', 0], filename_prefix: 'ComfyUI' } },
};

describe("the gateway's event socket, once ComfyUI no longer sends to it", () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let alice = '';

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: STEP_DELAY_MS });
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
    alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 1000 }, admin)).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

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
    const [gatewayClientId] = await waitFor(() => comfy.openSockets().length === 1 && comfy.openSockets(), "the gateway's socket");
    const upgrades = (): number => comfy.requests.filter((request) => request.url.startsWith('/ws')).length;
    // The connection is cut; the gateway reconnects at once, and ComfyUI's handler of the old connection ends 1.5 s later.
    comfy.cutSocket(gatewayClientId!, 1500);
    await waitFor(() => upgrades() === 2, 'the gateway to reconnect');
    await waitFor(() => !comfy.openSockets().includes(gatewayClientId!), "the old connection's handler to take the clientId back");

    const socket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=alice-screen`, { 'x-api-key': alice });
    // The short job runs and ends while the socket is silent; the long one still runs when it is reopened.
    const short = await queue(SAVE_WORKFLOW);
    const accepted = Date.now();
    const long = await queue(LONG_WORKFLOW);
    await waitFor(() => comfy.openSockets().includes(gatewayClientId!), 'the silent socket to be reopened', SILENCE_LIMIT_MS + 5000);
    const reopenedAt = Date.now();
    assert.ok(reopenedAt - accepted < SILENCE_LIMIT_MS + 2000, `reopened ${reopenedAt - accepted} ms after the first prompt was accepted`);
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
    await waitFor(() => socket.texts.some((message) => message.data.prompt_id === long), "the running job's events on the client's socket", 2000);
    t.diagnostic(
      `reopened ${reopenedAt - accepted} ms after the first prompt was accepted; the ended job settled ${shortEndedAt - reopenedAt} ms and ` +
        `the running job's next event came ${Date.now() - reopenedAt} ms after the reopen`,
    );
    await waitFor(
      () => socket.texts.some((message) => message.type === 'execution_success' && message.data.prompt_id === long),
      "the running job's end on the client's socket",
      10_000,
    );
    assert.ok(socket.texts.some((message) => message.type === 'executed' && message.data.prompt_id === long));
    assert.equal(await statusOf(long), 'success');
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
    const upgrades = comfy.requests.filter((request) => request.url.startsWith('/ws')).length;
    comfy.cutSocket(gatewayClientId!, 1500);
    await waitFor(() => comfy.requests.filter((request) => request.url.startsWith('/ws')).length === upgrades + 1, 'the gateway to reconnect');
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
    // Well before the silent socket is reopened (10 s after the prompt was accepted), which would settle it too.
    const { status, execution_seconds } = await waitFor(
      async () => {
        const ended = (await send(gateway.url, `/api/gateway/jobs/${id}`, { key: alice })).json<{ status: string; execution_seconds: number | null }>();
        return !['queued', 'running'].includes(ended.status) && ended;
      },
      'the job to end',
      2000,
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
