// The job registry through the gateway, on releases old and new: jobs ending as ComfyUI ends them, fair release order, held jobs in /queue, their cancellation, restart with held jobs, the jobs API, a job pending in ComfyUI cancelled through its jobs API, and jobs whose start the gateway missed metered from ComfyUI's history.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openCollectingSocket, SAVE_WORKFLOW, waitForHistory } from '../helpers/comfy-client.js';
import { PROMPT_ID_MODES, startFakeComfyUI, type FakeComfyUI, type FakeComfyUIOptions } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

interface Job {
  id: string;
  key_id: string;
  status: string;
  queue_position: number | null;
  execution_seconds: number | null;
  started_at: number | null;
  finished_at: number | null;
  outputs: Array<{ filename: string; type: string; url: string }>;
}

/** A prompt whose sampler seed names it, so the order prompts reach ComfyUI can be read back. */
function tagged(tag: number): Record<string, unknown> {
  return { ...SAVE_WORKFLOW, '3': { class_type: 'KSampler', inputs: { seed: tag, steps: 2 } } };
}

async function queueTagged(gatewayUrl: string, key: string, tag: number): Promise<string> {
  const res = await send(gatewayUrl, '/api/prompt', { method: 'POST', key, body: { prompt: tagged(tag) } });
  assert.equal(res.status, 200, res.text);
  return res.json<{ prompt_id: string }>().prompt_id;
}

/** The tags of the prompts ComfyUI received, in the order they arrived. */
function arrivalOrder(comfy: FakeComfyUI): number[] {
  return comfy.prompts.map((p) => (p.body.prompt as Record<string, { inputs: { seed: number } }>)['3']!.inputs.seed);
}

async function waitUntil(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function jobOf(gatewayUrl: string, key: string, id: string): Promise<Job> {
  const res = await send(gatewayUrl, `/api/gateway/jobs/${encodeURIComponent(id)}`, { key });
  assert.equal(res.status, 200, res.text);
  return res.json<Job>();
}

/** A hold on a fake ComfyUI's runs (its beforeRun): while held, a prompt that starts waits before its first event (ComfyUI lists it as running), and those queued after it stay pending. */
interface RunHold {
  beforeRun(): Promise<void> | undefined;
  /** Holds runs until the returned function (also called after the test) lets them go. */
  hold(t: TestContext): () => void;
}

function runHold(): RunHold {
  let held: Promise<void> | null = null;
  return {
    beforeRun: () => held ?? undefined,
    hold(t) {
      let release!: () => void;
      held = new Promise<void>((resolve) => (release = resolve));
      const letGo = (): void => {
        held = null;
        release();
      };
      t.after(letGo);
      return letGo;
    },
  };
}

/** The releases the suite runs against: client prompt ids honoured or ignored, and one of 2024, which also sends no `execution_success`. */
const RELEASES: Array<{ name: string; options: FakeComfyUIOptions }> = [
  ...PROMPT_ID_MODES.map((promptIds) => ({ name: `ComfyUI that ${promptIds} client prompt ids`, options: { promptIds } })),
  { name: 'ComfyUI of 2024, without execution_success', options: { promptIds: 'ignored', executionSuccess: false } },
];

for (const release of RELEASES) {
  describe(`jobs (${release.name})`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let userDirectory: { path: string; remove(): Promise<void> };
    const keys = { admin: '', alice: '', bob: '', aliceId: '', bobId: '' };
    /** Holds the prompt sent first in ComfyUI while the next are queued, so that they are held by the gateway whatever the machine's speed. */
    const runs = runHold();

    before(async () => {
      comfy = await startFakeComfyUI({ ...release.options, stepDelayMs: 15, beforeRun: runs.beforeRun });
      userDirectory = await tempUserDirectory();
      gateway = await startGateway({ upstream: comfy.url, userDirectory: userDirectory.path, args: ['--require-api-auth', '--upstream-queue-depth', '1'] });
      keys.admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
      const alice = await createKey(gateway.url, { name: 'alice', rate_limit: 10_000 }, keys.admin);
      const bob = await createKey(gateway.url, { name: 'bob', rate_limit: 10_000 }, keys.admin);
      Object.assign(keys, { alice: alice.api_key, aliceId: alice.key_id, bob: bob.api_key, bobId: bob.key_id });
    });
    after(async () => {
      await gateway?.stop();
      await comfy?.close();
      await userDirectory?.remove();
    });

    test('a job ends once ComfyUI ends its prompt, whatever the release says of how: its end is recorded, and the held job goes next', async (t) => {
      comfy.prompts.length = 0;
      const letRunsGo = runs.hold(t);
      const first = await queueTagged(gateway.url, keys.alice, 700);
      const held = await queueTagged(gateway.url, keys.alice, 701);
      assert.equal((await jobOf(gateway.url, keys.alice, held)).status, 'held');
      letRunsGo();
      await waitUntil(() => comfy.prompts.length >= 1 && comfy.history.has(comfy.prompts[0]!.id), 'ComfyUI to run the first prompt');
      // Well within the 30 s between the gateway's comparisons of its jobs with ComfyUI, which would settle it too.
      await waitUntil(async () => (await jobOf(gateway.url, keys.alice, first)).status === 'success', 'the first job to be recorded as success', 10_000);
      const job = await jobOf(gateway.url, keys.alice, first);
      assert.ok(job.execution_seconds !== null && job.execution_seconds > 0, `execution seconds recorded: ${job.execution_seconds}`);
      assert.ok(job.outputs.length >= 1, 'its outputs recorded');
      await waitForHistory(gateway.url, keys.alice, held, 60_000);
      assert.deepEqual(arrivalOrder(comfy), [700, 701]);
    });

    test("one key's many prompts delay another key's single prompt by at most the jobs already sent", async (t) => {
      comfy.prompts.length = 0;
      // Alice's first prompt runs only once every prompt is queued: on a slow machine it could otherwise end before her second came.
      const letRunsGo = runs.hold(t);
      const aliceIds: string[] = [];
      for (let tag = 1; tag <= 6; tag += 1) aliceIds.push(await queueTagged(gateway.url, keys.alice, tag));
      const bobId = await queueTagged(gateway.url, keys.bob, 100);
      letRunsGo();
      for (const id of [...aliceIds, bobId]) await waitForHistory(gateway.url, id === bobId ? keys.bob : keys.alice, id, 60_000);
      const order = arrivalOrder(comfy);
      assert.equal(order.length, 7);
      // Depth 1: alice's first went at once; bob's is released next, before alice's five held ones.
      assert.deepEqual(order, [1, 100, 2, 3, 4, 5, 6]);
    });

    test("a held job is listed as pending in its key's /queue and can be cancelled three ways", async (t) => {
      const letRunsGo = runs.hold(t);
      const running = await queueTagged(gateway.url, keys.alice, 10);
      const held = [
        await queueTagged(gateway.url, keys.alice, 11),
        await queueTagged(gateway.url, keys.alice, 12),
        await queueTagged(gateway.url, keys.alice, 13),
      ];
      for (const id of held) assert.equal((await jobOf(gateway.url, keys.alice, id)).status, 'held');
      const queue = (await send(gateway.url, '/api/queue', { key: keys.alice })).json<{ queue_pending: unknown[][] }>();
      const pendingIds = queue.queue_pending.map((item) => item[1]);
      for (const id of held) assert.ok(pendingIds.includes(id), `${id} is pending in /queue`);
      // Its prompt, kept as text while held, is listed as the graph that was sent.
      assert.deepEqual(queue.queue_pending.find((item) => item[1] === held[0])![2], tagged(11));
      // Bob does not see alice's held jobs.
      const bobQueue = (await send(gateway.url, '/api/queue', { key: keys.bob })).json<{ queue_pending: unknown[][] }>();
      for (const id of held) assert.ok(!bobQueue.queue_pending.some((item) => item[1] === id));
      // Bob cannot cancel them.
      await send(gateway.url, '/api/queue', { method: 'POST', key: keys.bob, body: { delete: [held[0]] } });
      assert.equal((await jobOf(gateway.url, keys.alice, held[0]!)).status, 'held');

      assert.equal((await send(gateway.url, '/api/queue', { method: 'POST', key: keys.alice, body: { delete: [held[0]] } })).status, 200);
      assert.equal((await send(gateway.url, '/api/interrupt', { method: 'POST', key: keys.alice, body: { prompt_id: held[1] } })).status, 200);
      const cancel = await send(gateway.url, `/api/jobs/${held[2]}/cancel`, { method: 'POST', key: keys.alice });
      assert.deepEqual(cancel.json(), { cancelled: true });
      for (const id of held) assert.equal((await jobOf(gateway.url, keys.alice, id)).status, 'cancelled');
      // A job of the same key held after them goes once the running one ends, after any of them that was still held.
      const after = await queueTagged(gateway.url, keys.alice, 14);
      letRunsGo();
      await waitForHistory(gateway.url, keys.alice, running, 60_000);
      await waitForHistory(gateway.url, keys.alice, after, 60_000);
      const sentTags = arrivalOrder(comfy);
      for (const tag of [11, 12, 13]) assert.ok(!sentTags.includes(tag), `cancelled job ${tag} never reached ComfyUI`);
    });

    test('the jobs API: own jobs newest first, status filter, pages, outputs with /view URLs, execution seconds; another key sees none of them', async () => {
      const id = await queueTagged(gateway.url, keys.bob, 200);
      await waitForHistory(gateway.url, keys.bob, id, 60_000);
      await waitUntil(async () => (await jobOf(gateway.url, keys.bob, id)).status === 'success', 'the job to be recorded as success');
      const job = await jobOf(gateway.url, keys.bob, id);
      assert.equal(job.key_id, keys.bobId);
      assert.ok(job.execution_seconds !== null && job.execution_seconds > 0, `execution seconds recorded: ${job.execution_seconds}`);
      assert.ok(job.outputs.length >= 1);
      const view = await send(gateway.url, job.outputs[0]!.url, { key: keys.bob });
      assert.equal(view.status, 200, 'the output URL opens for its key');
      assert.equal((await send(gateway.url, job.outputs[0]!.url, { key: keys.alice })).status, 404, 'and not for another key');

      const list = (await send(gateway.url, '/api/gateway/jobs?limit=1', { key: keys.bob })).json<{
        jobs: Job[];
        pagination: { total: number; has_more: boolean };
      }>();
      assert.equal(list.jobs[0]!.id, id, 'newest first');
      assert.ok(list.pagination.total >= 2 && list.pagination.has_more);
      const succeeded = (await send(gateway.url, '/api/gateway/jobs?status=success&limit=500', { key: keys.bob })).json<{ jobs: Job[] }>();
      assert.ok(succeeded.jobs.every((j) => j.status === 'success' && j.key_id === keys.bobId));
      assert.equal((await send(gateway.url, `/api/gateway/jobs/${id}`, { key: keys.alice })).json<{ error_code: string }>().error_code, 'JOB_NOT_FOUND');
      const aliceList = (await send(gateway.url, '/api/gateway/jobs?limit=500', { key: keys.alice })).json<{ jobs: Job[] }>();
      assert.ok(aliceList.jobs.every((j) => j.key_id === keys.aliceId));
      const all = (await send(gateway.url, '/api/gateway/jobs?limit=500', { key: keys.admin })).json<{ jobs: Job[] }>();
      assert.ok(all.jobs.some((j) => j.key_id === keys.aliceId) && all.jobs.some((j) => j.key_id === keys.bobId), 'an admin sees every key');
      // Metering: the key's usage counts its prompts, its runs, their execution seconds and outputs.
      const bobJobs = (await send(gateway.url, '/api/gateway/jobs?limit=500', { key: keys.bob })).json<{ jobs: Job[] }>().jobs;
      const ran = bobJobs.filter((j) => j.started_at !== null && j.finished_at !== null);
      const usageStats = async (): Promise<Record<string, number>> =>
        (await send(gateway.url, '/api/usage', { key: keys.bob })).json<{ usage_stats: Record<string, number> }>().usage_stats;
      // A run is counted as its end is written, a moment after the job shows as finished.
      await waitUntil(async () => (await usageStats()).prompts_run === ran.length, 'the runs to be counted');
      const usage = await usageStats();
      assert.equal(usage.prompts, bobJobs.length, 'prompts admitted');
      assert.equal(usage.prompts_run, ran.length, 'jobs run');
      const seconds = ran.reduce((sum, j) => sum + j.execution_seconds!, 0);
      assert.ok(Math.abs(usage.execution_seconds! - seconds) < 0.01, `execution seconds ${usage.execution_seconds} = ${seconds}`);
      assert.equal(
        usage.outputs,
        ran.reduce((sum, j) => sum + j.outputs.length, 0),
        'outputs',
      );
      const bad = await send(gateway.url, '/api/gateway/jobs?status=done', { key: keys.bob });
      assert.equal(bad.status, 400);
      assert.equal(bad.json<{ error_code: string }>().error_code, 'INVALID_REQUEST');
    });

    test('held jobs survive a restart of the gateway and run afterwards', async (t) => {
      const letRunsGo = runs.hold(t);
      const first = await queueTagged(gateway.url, keys.alice, 300);
      const held = [await queueTagged(gateway.url, keys.alice, 301), await queueTagged(gateway.url, keys.bob, 302)];
      assert.equal((await jobOf(gateway.url, keys.alice, held[0]!)).status, 'held');
      letRunsGo();
      await gateway.stop();
      gateway = await startGateway({ upstream: comfy.url, userDirectory: userDirectory.path, args: ['--require-api-auth', '--upstream-queue-depth', '1'] });
      await waitForHistory(gateway.url, keys.alice, first, 60_000);
      await waitForHistory(gateway.url, keys.alice, held[0]!, 60_000);
      await waitForHistory(gateway.url, keys.bob, held[1]!, 60_000);
      const tags = arrivalOrder(comfy);
      assert.ok(tags.includes(301) && tags.includes(302), 'both held jobs reached ComfyUI after the restart');
      await waitUntil(async () => (await jobOf(gateway.url, keys.bob, held[1]!)).status === 'success', 'the released job to succeed');
    });

    test('a held prompt is written to the registry once: sending it records the send alone', async (t) => {
      const letRunsGo = runs.hold(t);
      const first = await queueTagged(gateway.url, keys.alice, 610);
      const marker = 60_606_060;
      const held = await queueTagged(gateway.url, keys.alice, marker);
      assert.equal((await jobOf(gateway.url, keys.alice, held)).status, 'held');
      letRunsGo();
      await waitForHistory(gateway.url, keys.alice, first, 60_000);
      await waitForHistory(gateway.url, keys.alice, held, 60_000);
      const files = await Promise.all(
        ['jobs.json', 'jobs.journal', 'jobs.journal.next'].map((name) => readFile(join(userDirectory.path, name), 'utf8').catch(() => '')),
      );
      assert.equal(files.join('').split(String(marker)).length - 1, 1, 'the prompt is in the files once: in the job as admitted');
    });

    test('a held prompt that ComfyUI refuses when it is sent ends as error: in the jobs API, its history entry and its socket', async (t) => {
      const socket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=alice-refused`, { 'x-api-key': keys.alice });
      const letRunsGo = runs.hold(t);
      await queueTagged(gateway.url, keys.alice, 500);
      const res = await send(gateway.url, '/api/prompt', {
        method: 'POST',
        key: keys.alice,
        body: { prompt: { '1': { class_type: 'NoSuchNode', inputs: {} } }, client_id: 'alice-refused' },
      });
      assert.equal(res.status, 200, 'held: the gateway answers for it');
      const id = res.json<{ prompt_id: string }>().prompt_id;
      letRunsGo();
      await waitUntil(async () => (await jobOf(gateway.url, keys.alice, id)).status === 'error', 'the refusal to be recorded');
      const entry = (await send(gateway.url, `/api/history/${id}`, { key: keys.alice })).json<
        Record<string, { status: { status_str: string; messages: unknown[][] } }>
      >()[id];
      assert.equal(entry?.status.status_str, 'error');
      assert.equal(entry.status.messages[0]![0], 'execution_error');
      await waitUntil(() => socket.texts.some((m) => m.type === 'execution_error' && m.data.prompt_id === id), 'the execution_error on the socket');
      await socket.close();
    });

    test("no key can use the gateway's own clientId, which would take its socket's place in ComfyUI", async () => {
      const gatewayClientId = comfy.prompts.at(-1)!.body.client_id as string;
      assert.ok(gatewayClientId, 'prompts reach ComfyUI with the gateway clientId');
      for (const key of [keys.alice, keys.admin]) {
        await assert.rejects(openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=${gatewayClientId}`, { 'x-api-key': key }), {
          status: 403,
        });
        const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: tagged(600), client_id: gatewayClientId } });
        assert.equal(res.status, 403);
      }
      assert.ok(!arrivalOrder(comfy).includes(600), 'ComfyUI never saw the prompt');
    });

    test('a user key cannot jump the queue with front or number', async () => {
      await queueTagged(gateway.url, keys.alice, 400);
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', key: keys.bob, body: { prompt: tagged(401), front: true, number: -5 } });
      assert.equal(res.status, 200);
      await waitUntil(() => arrivalOrder(comfy).includes(401), 'the prompt to reach ComfyUI');
      const sent = comfy.prompts.find((p) => (p.body.prompt as Record<string, { inputs: { seed: number } }>)['3']!.inputs.seed === 401)!;
      assert.equal(sent.body.front, undefined);
      assert.equal(sent.body.number, undefined);
    });
  });
}

/** The two cancel routes of ComfyUI's jobs API (December 2025 on), each asked to cancel one job. */
const JOB_CANCEL_ROUTES: ReadonlyArray<[string, (gatewayUrl: string, key: string, id: string) => Promise<TestResponse>]> = [
  ['POST /api/jobs/{id}/cancel', (gatewayUrl, key, id) => send(gatewayUrl, `/api/jobs/${id}/cancel`, { method: 'POST', key })],
  ['POST /api/jobs/cancel', (gatewayUrl, key, id) => send(gatewayUrl, '/api/jobs/cancel', { method: 'POST', key, body: { job_ids: [id] } })],
];

/** A gateway with `--upstream-queue-depth depth` in front of a fake ComfyUI whose runs can be held (see holdRuns), for the tests of one describe. */
interface HeldRunsSetup {
  comfy: FakeComfyUI;
  gateway: GatewayProcess;
  admin: string;
  /** Holds the fake's runs (see RunHold) until the returned function (also called after the test) lets them go. */
  holdRuns(t: TestContext): () => void;
}

function withHeldRuns(depth: number): HeldRunsSetup {
  const runs = runHold();
  const setup: HeldRunsSetup = {
    comfy: undefined as unknown as FakeComfyUI,
    gateway: undefined as unknown as GatewayProcess,
    admin: '',
    holdRuns: (t) => runs.hold(t),
  };
  before(async () => {
    setup.comfy = await startFakeComfyUI({ stepDelayMs: 15, beforeRun: runs.beforeRun });
    setup.gateway = await startGateway({ upstream: setup.comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', String(depth)] });
    setup.admin = (await createKey(setup.gateway.url, { name: 'admin', role: 'admin' })).api_key;
  });
  after(async () => {
    await setup.gateway?.stop();
    await setup.comfy?.close();
  });
  return setup;
}

describe("a job pending in ComfyUI cancelled through ComfyUI's jobs API (--upstream-queue-depth 3)", () => {
  const setup = withHeldRuns(3);

  for (const [index, [route, cancel]] of JOB_CANCEL_ROUTES.entries()) {
    test(`${route}: the registry has it cancelled by the answer, it is never sent again nor metered, its max_queued place is free; another key's job is left`, async (t) => {
      const { comfy, gateway, admin } = setup;
      const alice = await createKey(gateway.url, { name: `alice-${index}`, rate_limit: 10_000, max_queued: 2 }, admin);
      const bob = await createKey(gateway.url, { name: `bob-${index}`, rate_limit: 10_000 }, admin);
      const letRunsGo = setup.holdRuns(t);
      const running = await queueTagged(gateway.url, alice.api_key, 1);
      const pending = await queueTagged(gateway.url, alice.api_key, 2);
      const bobs = await queueTagged(gateway.url, bob.api_key, 3);
      await waitUntil(
        () => comfy.started.includes(running) && [pending, bobs].every((id) => comfy.inFlight().some((item) => item.id === id)),
        'the first prompt running in ComfyUI, the two others pending there',
      );
      const refused = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice.api_key, body: { prompt: tagged(4) } });
      assert.equal(refused.json<{ error_code: string }>().error_code, 'QUEUE_LIMIT', 'the key has its max_queued jobs');

      assert.deepEqual((await cancel(gateway.url, alice.api_key, bobs)).json(), { cancelled: false });
      assert.equal((await jobOf(gateway.url, bob.api_key, bobs)).status, 'queued', "another key's job stays queued");
      assert.ok(
        comfy.inFlight().some((item) => item.id === bobs),
        'and pending in ComfyUI',
      );

      const answer = await cancel(gateway.url, alice.api_key, pending);
      assert.equal(answer.status, 200, answer.text);
      assert.deepEqual(answer.json(), { cancelled: true }, "ComfyUI's answer");
      const cancelled = await jobOf(gateway.url, alice.api_key, pending);
      assert.equal(cancelled.status, 'cancelled');
      assert.equal(cancelled.started_at, null);
      assert.ok(!comfy.inFlight().some((item) => item.id === pending), 'ComfyUI took it out of its queue');
      const next = await queueTagged(gateway.url, alice.api_key, 5);

      // The gateway's socket to ComfyUI opens again: its comparison with ComfyUI (which has the first prompt running) finds nothing to send again.
      const gatewayClientId = comfy.prompts.find((prompt) => prompt.id === running)!.body.client_id as string;
      comfy.cutSocket(gatewayClientId, 0);
      await waitUntil(async () => (await jobOf(gateway.url, alice.api_key, running)).status === 'running', 'the comparison to find the first prompt running');
      letRunsGo();
      for (const [key, id] of [
        [alice.api_key, running],
        [bob.api_key, bobs],
        [alice.api_key, next],
      ] as const) {
        await waitUntil(async () => (await jobOf(gateway.url, key, id)).status === 'success', `job ${id} to succeed`);
      }
      assert.equal(comfy.prompts.filter((prompt) => prompt.id === pending).length, 1, 'the cancelled job was sent once');
      assert.ok(!comfy.started.includes(pending), 'and never ran');
      assert.equal((await jobOf(gateway.url, alice.api_key, pending)).status, 'cancelled');
      // A run is metered once its end is written to the registry, a moment after the end shows there.
      const metered = async (): Promise<{ prompts: number; prompts_run: number }> =>
        (await send(gateway.url, '/api/usage?days=1', { key: alice.api_key })).json<{ usage_stats: { prompts: number; prompts_run: number } }>().usage_stats;
      await waitUntil(async () => (await metered()).prompts_run >= 2, 'the two runs to be metered');
      const { prompts, prompts_run } = await metered();
      assert.deepEqual([prompts, prompts_run], [3, 2], 'three prompts admitted, two run');
    });
  }
});

describe('POST /api/jobs/cancel with a job held by the gateway and one ComfyUI no longer has (--upstream-queue-depth 1)', () => {
  const setup = withHeldRuns(1);

  test('answers cancelled: true when the held job was cancelled, whatever ComfyUI says of the other', async (t) => {
    const { comfy, gateway, admin } = setup;
    const alice = await createKey(gateway.url, { name: 'alice', rate_limit: 10_000 }, admin);
    const finished = await queueTagged(gateway.url, alice.api_key, 1);
    await waitUntil(async () => (await jobOf(gateway.url, alice.api_key, finished)).status === 'success', 'the first job to succeed');
    setup.holdRuns(t);
    const running = await queueTagged(gateway.url, alice.api_key, 2);
    const held = await queueTagged(gateway.url, alice.api_key, 3);
    await waitUntil(() => comfy.started.includes(running), 'the second job to run in ComfyUI');
    assert.equal((await jobOf(gateway.url, alice.api_key, held)).status, 'held');

    const answer = await send(gateway.url, '/api/jobs/cancel', { method: 'POST', key: alice.api_key, body: { job_ids: [finished, held] } });
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(answer.json(), { cancelled: true });
    assert.equal((await jobOf(gateway.url, alice.api_key, held)).status, 'cancelled');
    assert.equal((await jobOf(gateway.url, alice.api_key, finished)).status, 'success');
  });
});

/** A point a fake ComfyUI waits at: `reached` once something waits there, until `open` (also called after the test) lets it and any later wait through. */
interface Gate {
  wait(): Promise<void>;
  reached: Promise<void>;
  open(): void;
}

function closedGate(t: TestContext): Gate {
  let opened!: () => void;
  let arrived!: () => void;
  const openPromise = new Promise<void>((resolve) => (opened = resolve));
  const gate: Gate = {
    reached: new Promise<void>((resolve) => (arrived = resolve)),
    wait: () => {
      arrived();
      return openPromise;
    },
    open: () => opened(),
  };
  t.after(gate.open);
  return gate;
}

describe("metering a job whose start the gateway's socket to ComfyUI missed", () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin = '';
  /** The gates of the test under way: before a prompt runs, before each of its nodes, before POST /prompt is answered. */
  const gates: { run?: Gate; node?: Gate; answer?: Gate } = {};

  before(async () => {
    comfy = await startFakeComfyUI({
      stepDelayMs: 15,
      // As ComfyUI, the history entry is written a moment after the end is sent: the gateway's read at the end finds none at first.
      historyWriteDelayMs: 250,
      beforeRun: () => gates.run?.wait(),
      beforeNode: () => gates.node?.wait(),
      beforePromptAnswer: () => gates.answer?.wait(),
    });
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  /** Cuts the gateway's socket to ComfyUI and keeps it out (see refuseSockets) until ComfyUI has no socket under its clientId. */
  async function keepSocketOut(clientId: string): Promise<void> {
    comfy.refuseSockets(true);
    comfy.cutSocket(clientId, 0);
    await waitUntil(() => !comfy.openSockets().includes(clientId), "ComfyUI to drop the gateway's socket");
  }

  async function letSocketBack(): Promise<void> {
    comfy.refuseSockets(false);
    await waitUntil(
      async () =>
        (await send(gateway.url, '/readyz')).json<{ backends: Array<{ events: string }> }>().backends.every((backend) => backend.events === 'connected'),
      "the gateway's socket to ComfyUI to be open again",
    );
  }

  /** Runs the job to its end and checks it is metered from ComfyUI's own execution_start to its execution_success, as its history entry has them. */
  async function assertMeteredFromComfyStart(key: string, jobId: string, upstreamId: string): Promise<void> {
    gates.node!.open();
    await waitUntil(async () => (await jobOf(gateway.url, key, jobId)).status === 'success', 'the job to succeed');
    const messages = (comfy.history.get(upstreamId) as { status: { messages: Array<[string, { timestamp: number }]> } }).status.messages;
    const stamp = (type: string): number => messages.find(([name]) => name === type)![1].timestamp / 1000;
    const ran = stamp('execution_success') - stamp('execution_start');
    const job = await jobOf(gateway.url, key, jobId);
    assert.ok(
      Math.abs(job.started_at! - stamp('execution_start')) < 0.001,
      `started at ComfyUI's execution_start (${stamp('execution_start')}), not ${job.started_at}`,
    );
    assert.ok(Math.abs(job.execution_seconds! - ran) < 0.001, `metered ${ran} s, from ComfyUI's start, not ${job.execution_seconds}`);
    const usage = async (): Promise<{ prompts_run: number; execution_seconds: number }> =>
      (await send(gateway.url, '/api/usage?days=1', { key })).json<{ usage_stats: { prompts_run: number; execution_seconds: number } }>().usage_stats;
    await waitUntil(async () => (await usage()).prompts_run === 1, 'the run to be metered');
    assert.ok(Math.abs((await usage()).execution_seconds - ran) < 0.001, "the key's usage has the seconds ComfyUI ran it");
  }

  test('the start was sent while the socket was cut, a comparison found the job running, its end was seen: metered from its history entry', async (t) => {
    const key = (await createKey(gateway.url, { name: 'start-missed', rate_limit: 10_000 }, admin)).api_key;
    Object.assign(gates, { run: closedGate(t), node: closedGate(t), answer: undefined });
    const jobId = await queueTagged(gateway.url, key, 1);
    await gates.run!.reached;
    const sent = comfy.prompts.at(-1)!;
    await keepSocketOut(sent.body.client_id as string);
    gates.run!.open();
    await gates.node!.reached;
    await letSocketBack();
    await waitUntil(async () => (await jobOf(gateway.url, key, jobId)).status === 'running', 'the comparison with ComfyUI to find the job running');
    await assertMeteredFromComfyStart(key, jobId, sent.id);
  });

  test('the start and the run were both missed (the job was recorded once they were over), its end was seen: metered from its history entry, not 0', async (t) => {
    const key = (await createKey(gateway.url, { name: 'run-missed', rate_limit: 10_000 }, admin)).api_key;
    Object.assign(gates, { run: closedGate(t), node: closedGate(t), answer: closedGate(t) });
    const answered = queueTagged(gateway.url, key, 2);
    await Promise.all([gates.run!.reached, gates.answer!.reached]);
    const sent = comfy.prompts.at(-1)!;
    await keepSocketOut(sent.body.client_id as string);
    gates.run!.open();
    await gates.node!.reached;
    // The comparison made as the socket opens again is over before ComfyUI answers: the registry has no job to find running yet.
    await letSocketBack();
    gates.answer!.open();
    const jobId = await answered;
    assert.equal((await jobOf(gateway.url, key, jobId)).status, 'queued', 'the job is recorded as queued, its start unseen');
    await assertMeteredFromComfyStart(key, jobId, sent.id);
  });
});
