// Several ComfyUI backends behind one gateway: jobs spread by load and weight, each job's requests and events bound to its backend, admin pins, failover of a dead backend, a key's spent budget acted on at each backend, and a client library across backends.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CallWrapper, ComfyApi, PromptBuilder } from '@saintno/comfyui-sdk';
import { openCollectingSocket, type CollectingSocket } from '../helpers/comfy-client.js';
import { PROMPT_ID_MODES, startFakeComfyUI, type FakeComfyUI, type FakeComfyUIOptions } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

/** Delay per execution step of the fakes: a prompt of `tagged` takes 23 steps, about 200 ms. */
const STEP_MS = 9;
const FINAL_STATUSES = ['success', 'error', 'interrupted', 'cancelled'];

interface Job {
  id: string;
  status: string;
  backend: string;
  upstream_id: string | null;
  error: { message: string } | null;
}

interface Readiness {
  backends: Array<{ name: string; url: string; weight: number; state: string; events: string }>;
}

interface Stage {
  gateway: GatewayProcess;
  fakes: FakeComfyUI[];
  /** The backends' names, in the order of `fakes`. */
  names: string[];
  admin: string;
}

/** A prompt whose sampler seed names it (so the backend it reached can be read back) and whose image is named after it. */
function tagged(tag: number): Record<string, unknown> {
  return {
    '3': { class_type: 'KSampler', inputs: { seed: tag, steps: 2 } },
    '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: `job${tag}` } },
  };
}

/** The tag of a prompt a fake received. */
function tagOf(prompt: FakeComfyUI['prompts'][number]): number {
  return (prompt.body.prompt as Record<string, { inputs: { seed: number } }>)['3']!.inputs.seed;
}

/** The tags a fake received since `mark` (its number of prompts before). */
function tagsSince(fake: FakeComfyUI, mark = 0): number[] {
  return fake.prompts.slice(mark).map(tagOf);
}

/** Each fake's number of requests so far. */
function requestMarks(stage: Stage): number[] {
  return stage.fakes.map((fake) => fake.requests.length);
}

/** Per fake, the requests of `method` whose target contains `part` that it received since `marks`. */
function askedSince(stage: Stage, marks: readonly number[], method: string, part: string): number[] {
  return stage.fakes.map((fake, i) => fake.requests.slice(marks[i]).filter((r) => r.method === method && r.url.includes(part)).length);
}

/** Starts a fake per entry of `fakes`, and one gateway in front of all of them (`upstream` spells each one's --upstream); an admin key. */
async function startStage(
  fakes: FakeComfyUIOptions[],
  args: string[],
  upstream: (fake: FakeComfyUI, index: number) => string = (fake) => fake.url,
): Promise<Stage> {
  const started = await Promise.all(fakes.map((options) => startFakeComfyUI(options)));
  const gateway = await startGateway({
    upstream: null,
    args: ['--require-api-auth', ...started.flatMap((fake, i) => ['--upstream', upstream(fake, i)]), ...args],
  });
  const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 100_000 })).api_key;
  const ready = await waitFor(async () => {
    const res = await send(gateway.url, '/readyz');
    const body = res.json<Readiness>();
    return res.status === 200 && body.backends.every((b) => b.state === 'up' && b.events === 'connected') && body;
  }, 'every backend up');
  const names = started.map((fake) => ready.backends.find((b) => b.url === fake.url)!.name);
  return { gateway, fakes: started, names, admin };
}

async function stopStage(stage: Stage | undefined): Promise<void> {
  if (!stage) return;
  await stage.gateway.stop();
  await Promise.all(stage.fakes.map((fake) => fake.close()));
}

async function userKey(stage: Stage, name: string): Promise<string> {
  return (await createKey(stage.gateway.url, { name, rate_limit: 100_000 }, stage.admin)).api_key;
}

function postPrompt(stage: Stage, key: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<TestResponse> {
  return send(stage.gateway.url, '/api/prompt', { method: 'POST', key, body, headers });
}

/** Queues the prompt tagged `tag`; resolves the prompt_id its key is told. */
async function submit(stage: Stage, key: string, tag: number, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await postPrompt(stage, key, { prompt: tagged(tag), ...extra });
  assert.equal(res.status, 200, res.text);
  return res.json<{ prompt_id: string }>().prompt_id;
}

async function jobOf(stage: Stage, id: string): Promise<Job> {
  const res = await send(stage.gateway.url, `/api/gateway/jobs/${encodeURIComponent(id)}`, { key: stage.admin });
  assert.equal(res.status, 200, res.text);
  return res.json<Job>();
}

/** Waits until every job has ended; resolves them in the order of `ids`. */
async function settled(stage: Stage, ids: readonly string[], timeoutMs = 20_000): Promise<Job[]> {
  return waitFor(
    async () => {
      const jobs = await Promise.all(ids.map((id) => jobOf(stage, id)));
      return jobs.every((job) => FINAL_STATUSES.includes(job.status)) && jobs;
    },
    `jobs ${ids.join(', ')} to end`,
    timeoutMs,
  );
}

async function readiness(stage: Stage): Promise<{ status: number; body: Readiness }> {
  const res = await send(stage.gateway.url, '/readyz');
  return { status: res.status, body: res.json<Readiness>() };
}

function socketUrl(stage: Stage, clientId: string): string {
  return `${stage.gateway.url.replace('http', 'ws')}/ws?clientId=${clientId}`;
}

/** Whether the socket got a message of `type` about the prompt its key knows as `promptId`. */
function got(socket: CollectingSocket, type: string, promptId: string): boolean {
  return socket.texts.some((m) => m.type === type && m.data.prompt_id === promptId);
}

/** A user key's socket is the gateway's own: no backend ever sees a socket of its `clientId`. */
function assertServedByGateway(stage: Stage, clientId: string): void {
  const reached = stage.fakes.flatMap((fake, i) => (fake.requests.some((r) => r.url.startsWith(`/ws?clientId=${clientId}`)) ? [i] : []));
  assert.deepEqual(reached, [], `no backend got a socket of ${clientId}`);
}

for (const promptIds of PROMPT_ID_MODES) {
  describe(`three backends, --upstream-queue-depth 1 (ComfyUI that ${promptIds} client prompt ids)`, () => {
    let stage: Stage;

    before(async () => {
      stage = await startStage(
        [0, 1, 2].map(() => ({ promptIds, stepDelayMs: STEP_MS })),
        ['--upstream-queue-depth', '1'],
      );
    });
    after(() => stopStage(stage));

    test('backends are named host:port, and /readyz lists them all up', async () => {
      assert.deepEqual(
        stage.names,
        stage.fakes.map((fake) => `127.0.0.1:${fake.port}`),
      );
      const { status, body } = await readiness(stage);
      assert.equal(status, 200);
      assert.deepEqual(
        body.backends.map(({ name, weight, state }) => ({ name, weight, state })),
        stage.names.map((name) => ({ name, weight: 1, state: 'up' })),
      );
    });

    test("a key's prompts spread over every backend, none ever holding more than the depth of the gateway's jobs", async () => {
      const key = await userKey(stage, 'spread');
      const marks = stage.fakes.map((fake) => fake.prompts.length);
      const most = stage.fakes.map(() => 0);
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const remaining = await Promise.all(
            stage.fakes.map(async (fake) => (await send(fake.url, '/api/prompt')).json<{ exec_info: { queue_remaining: number } }>().exec_info.queue_remaining),
          );
          remaining.forEach((count, i) => (most[i] = Math.max(most[i]!, count)));
          await sleep(5);
        }
      })();
      const ids: string[] = [];
      let jobs: Job[];
      try {
        for (let tag = 1; tag <= 9; tag += 1) ids.push(await submit(stage, key, tag));
        jobs = await settled(stage, ids);
      } finally {
        watching = false;
        await watcher;
      }
      assert.deepEqual(
        jobs.map((job) => job.status),
        ids.map(() => 'success'),
      );
      assert.deepEqual(most, [1, 1, 1], "each backend ran the gateway's jobs one at a time, never one more queued behind");
      const tags = stage.fakes.map((fake, i) => tagsSince(fake, marks[i]));
      assert.deepEqual(
        tags.map((list) => list.length),
        [3, 3, 3],
        `the nine prompts went three to each backend: ${JSON.stringify(tags)}`,
      );
      jobs.forEach((job, k) => {
        const at = tags.findIndex((list) => list.includes(k + 1));
        assert.equal(job.backend, stage.names[at], `job ${k + 1} shows the backend it ran on`);
        const sent = stage.fakes[at]!.prompts.find((p) => tagOf(p) === k + 1)!;
        assert.equal(job.upstream_id, sent.id, 'and the id that backend knows it by');
      });
    });

    test("a job's history, files, jobs API, queue and events go to and come from its own backend", async () => {
      const key = await userKey(stage, 'affinity');
      const clientId = `affinity-${promptIds}`;
      const socket = await openCollectingSocket(socketUrl(stage, clientId), { 'x-api-key': key });
      try {
        const ids: string[] = [];
        for (let tag = 101; tag <= 106; tag += 1) ids.push(await submit(stage, key, tag, { client_id: clientId }));
        const jobs = await settled(stage, ids);
        assert.ok(
          jobs.every((job) => job.status === 'success'),
          JSON.stringify(jobs),
        );
        assert.equal(new Set(jobs.map((job) => job.backend)).size, 3, 'the jobs ran on all three backends');
        // A job that was held first and then ran on the second backend: with a ComfyUI that ignores ids, ComfyUI knows it by another id.
        const index = jobs.findIndex((job, i) => i >= 3 && job.backend === stage.names[1]);
        assert.ok(index >= 0, `a held job ran on the second backend: ${JSON.stringify(jobs.map((job) => job.backend))}`);
        const job = jobs[index]!;
        const upstreamId = job.upstream_id!;
        assert.equal(job.id === upstreamId, promptIds === 'honoured', 'ComfyUI knows the job by the id its key knows only when it honours ids');
        const onlyTheSecond = [0, 1, 0];

        let marks = requestMarks(stage);
        const entry = (await send(stage.gateway.url, `/api/history/${job.id}`, { key })).json<
          Record<string, { prompt: unknown[]; outputs: Record<string, { images: Array<{ filename: string }> }> }>
        >()[job.id];
        assert.ok(entry, 'the history entry comes back under the id the key knows');
        assert.equal(entry.prompt[1], job.id);
        assert.equal((entry.prompt[3] as { client_id: string }).client_id, clientId);
        assert.deepEqual(askedSince(stage, marks, 'GET', '/history'), onlyTheSecond, 'asked of its backend only');
        assert.deepEqual(askedSince(stage, marks, 'GET', `/history/${upstreamId}`), onlyTheSecond, 'by the id it knows');

        const window = (await send(stage.gateway.url, '/api/history', { key })).json<Record<string, unknown>>();
        assert.deepEqual(Object.keys(window).sort(), [...ids].sort(), "the key's history window has its jobs of every backend");
        const newest = (await send(stage.gateway.url, '/api/history?max_items=2', { key })).json<Record<string, unknown>>();
        assert.deepEqual(Object.keys(newest).sort(), ids.slice(4).sort());
        const merged = (await send(stage.gateway.url, '/api/history?max_items=1000', { key: stage.admin })).json<Record<string, unknown>>();
        for (const id of ids) assert.ok(id in merged, `an admin's history, merged across backends, has ${id}`);

        const filename = entry.outputs['9']!.images[0]!.filename;
        assert.equal(filename, `job${101 + index}_00001_.png`);
        const viewPath = `/api/view?${new URLSearchParams({ filename, subfolder: '', type: 'output' })}`;
        marks = requestMarks(stage);
        const view = await send(stage.gateway.url, viewPath, { key });
        assert.equal(view.status, 200, 'the key opens its output');
        assert.equal(view.headers['content-type'], 'image/png');
        assert.deepEqual(askedSince(stage, marks, 'GET', `/view?filename=${filename}`), onlyTheSecond, 'served by the backend that made it');
        assert.deepEqual(askedSince(stage, marks, 'HEAD', '/view'), [0, 0, 0], 'no backend is asked whether it has it');
        assert.deepEqual(
          await Promise.all(stage.fakes.map(async (fake) => (await send(fake.url, viewPath)).status)),
          [404, 200, 404],
          'the other backends do not have it',
        );

        const list = (await send(stage.gateway.url, '/api/jobs', { key })).json<{ jobs: Array<{ id: string }> }>();
        assert.deepEqual(list.jobs.map((j) => j.id).sort(), [...ids].sort(), "the key's job list has its jobs of every backend");
        marks = requestMarks(stage);
        const single = await send(stage.gateway.url, `/api/jobs/${job.id}`, { key });
        assert.equal(single.status, 200, single.text);
        assert.deepEqual([single.json<{ id: string }>().id, single.json<{ status: string }>().status], [job.id, 'completed']);
        assert.deepEqual(askedSince(stage, marks, 'GET', '/jobs/'), onlyTheSecond);
        assert.deepEqual(askedSince(stage, marks, 'GET', `/jobs/${upstreamId}`), onlyTheSecond);

        marks = requestMarks(stage);
        assert.equal((await send(stage.gateway.url, '/api/queue', { method: 'POST', key, body: { delete: [job.id] } })).status, 200);
        assert.deepEqual(askedSince(stage, marks, 'POST', '/queue'), onlyTheSecond, 'a delete goes to its backend');
        assert.equal((await jobOf(stage, job.id)).status, 'success', 'deleting a finished job from the queue changes nothing');

        // The socket, opened to no backend, got the events of the key's jobs on every backend, by the ids the key knows.
        assertServedByGateway(stage, clientId);
        await waitFor(() => ids.every((id) => got(socket, 'execution_success', id)), 'execution_success of every job');
        for (const id of ids) for (const type of ['execution_start', 'executed']) assert.ok(got(socket, type, id), `${type} of ${id}`);
        const seen = new Set(socket.texts.map((m) => m.data?.prompt_id).filter((id) => id !== undefined));
        assert.deepEqual([...seen].sort(), [...ids].sort(), 'no event carries an id the key does not know');
      } finally {
        await socket.close();
      }
    });

    test('an interrupt with a prompt_id stops that job on its backend only', async () => {
      const key = await userKey(stage, 'interrupt');
      const ids = [await submit(stage, key, 201), await submit(stage, key, 202), await submit(stage, key, 203)];
      const placed = await Promise.all(ids.map((id) => jobOf(stage, id)));
      assert.equal(new Set(placed.map((job) => job.backend)).size, 3, 'one job per backend');
      const target = placed.find((job) => job.backend !== stage.names[0])!;
      const at = stage.names.indexOf(target.backend);
      await waitFor(async () => (await jobOf(stage, target.id)).status === 'running', 'the job to run');
      const marks = requestMarks(stage);
      const res = await send(stage.gateway.url, '/api/interrupt', { method: 'POST', key, body: { prompt_id: target.id } });
      assert.equal(res.status, 200);
      assert.deepEqual(
        askedSince(stage, marks, 'POST', '/interrupt'),
        stage.names.map((_, i) => (i === at ? 1 : 0)),
      );
      const jobs = await settled(stage, ids);
      assert.deepEqual(
        jobs.map((job) => job.status),
        ids.map((id) => (id === target.id ? 'interrupted' : 'success')),
      );
    });

    test('a file no known job made is found by asking each backend with HEAD', async () => {
      const filename = `stray-${promptIds}.png`;
      await writeFile(join(stage.fakes[2]!.outputDir, filename), 'not really a png');
      const marks = requestMarks(stage);
      const res = await send(stage.gateway.url, `/api/view?filename=${filename}&type=output`, { key: stage.admin });
      assert.equal(res.status, 200);
      assert.equal(res.text, 'not really a png');
      assert.deepEqual(askedSince(stage, marks, 'HEAD', filename), [1, 1, 1], 'each backend was asked in turn');
      assert.deepEqual(askedSince(stage, marks, 'GET', filename), [0, 0, 1], 'the one that has it serves it');
      assert.equal((await send(stage.gateway.url, '/api/view?filename=nowhere.png&type=output', { key: stage.admin })).status, 404);
    });

    test('an admin key pins a prompt to a backend by name; a user key may not, and an unknown name is refused', async () => {
      const pinned = stage.names[2]!;
      const marks = stage.fakes.map((fake) => fake.prompts.length);
      const answers = await Promise.all([301, 302].map((tag) => postPrompt(stage, stage.admin, { prompt: tagged(tag) }, { 'X-Comfy-Gate-Backend': pinned })));
      for (const res of answers) assert.equal(res.status, 200, res.text);
      const jobs = await settled(
        stage,
        answers.map((res) => res.json<{ prompt_id: string }>().prompt_id),
      );
      assert.deepEqual(
        jobs.map((job) => [job.status, job.backend]),
        [
          ['success', pinned],
          ['success', pinned],
        ],
        'both ran on the pinned backend, though the others were idle',
      );
      assert.deepEqual(
        stage.fakes.map((fake, i) => tagsSince(fake, marks[i]).sort()),
        [[], [], [301, 302]],
      );

      const user = await userKey(stage, 'pinner');
      const refused = await postPrompt(stage, user, { prompt: tagged(303) }, { 'X-Comfy-Gate-Backend': pinned });
      assert.equal(refused.status, 403);
      assert.equal(refused.json<{ error_code: string }>().error_code, 'FORBIDDEN');
      const unknown = await postPrompt(stage, stage.admin, { prompt: tagged(304) }, { 'X-Comfy-Gate-Backend': 'gpu9' });
      assert.equal(unknown.status, 400);
      assert.deepEqual(unknown.json<{ error_code: string; backends: string[] }>().error_code, 'UNKNOWN_BACKEND');
      assert.deepEqual(unknown.json<{ backends: string[] }>().backends, stage.names);
      assert.deepEqual(
        stage.fakes.map((fake, i) => fake.prompts.length - marks[i]!),
        [0, 0, 2],
        'refused prompts reached no backend',
      );
    });

    test('@saintno/comfyui-sdk runs a workflow and gets its image', async () => {
      const key = await userKey(stage, 'sdk');
      const clientId = `sdk-${promptIds}`;
      const api = new ComfyApi(stage.gateway.url, clientId, { credentials: { type: 'custom', headers: { 'X-API-Key': key } } });
      try {
        await api.init(3, 200).waitForReady();
        const workflow = {
          '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'model.safetensors' }, _meta: { title: 'Load Checkpoint' } },
          '3': { class_type: 'KSampler', inputs: { seed: 5, steps: 3, model: ['4', 0] }, _meta: { title: 'KSampler' } },
          '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: `sdk-${promptIds}` }, _meta: { title: 'Save Image' } },
        };
        const prompt = new PromptBuilder(workflow, [], ['images']).setOutputNode('images', '9');
        const output = await new Promise<Record<string, unknown>>((resolve, reject) => {
          new CallWrapper(api, prompt)
            .onFinished((result) => resolve(result))
            .onFailed((error) => reject(error))
            .run()
            .catch(reject);
        });
        const images = (output.images as { images: Array<{ filename: string; type: string }> }).images;
        assert.equal(images.length, 1);
        assert.equal(images[0]!.filename, `sdk-${promptIds}_00001_.png`);
        const blob = await api.getImage(images[0]! as never);
        assert.equal(blob.type, 'image/png');
        assert.ok(blob.size > 0);
        assertServedByGateway(stage, clientId);
      } finally {
        api.destroy();
      }
    });
  });
}

describe('two backends weighted 3 and 1, --upstream-queue-depth 10', () => {
  let stage: Stage;

  before(async () => {
    const settings = ['weight=3&name=big', 'weight=1&name=small'];
    stage = await startStage([{ stepDelayMs: STEP_MS }, { stepDelayMs: STEP_MS }], ['--upstream-queue-depth', '10'], (fake, i) => `${fake.url}#${settings[i]}`);
  });
  after(() => stopStage(stage));

  test('eight prompts at once while both are idle are placed 6:2, by load per weight', async () => {
    const { body } = await readiness(stage);
    assert.deepEqual(
      body.backends.map(({ name, weight }) => ({ name, weight })),
      [
        { name: 'big', weight: 3 },
        { name: 'small', weight: 1 },
      ],
    );
    const key = await userKey(stage, 'weights');
    const ids = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((tag) => submit(stage, key, tag)));
    const jobs = await settled(stage, ids);
    assert.ok(
      jobs.every((job) => job.status === 'success'),
      JSON.stringify(jobs),
    );
    assert.deepEqual(
      stage.fakes.map((fake) => fake.prompts.length),
      [6, 2],
    );
    assert.deepEqual(
      stage.names.map((name) => jobs.filter((job) => job.backend === name).length),
      [6, 2],
    );
  });
});

describe('a backend that dies mid-run, --upstream-queue-depth 3', () => {
  // A ComfyUI that ignores ids: a job sent again gets another id from its new backend, under the same id for its key.
  // Jobs twice as long, so that one seen running is still running when its backend is killed.
  const options: FakeComfyUIOptions = { promptIds: 'ignored', stepDelayMs: 2 * STEP_MS };
  let stage: Stage;

  before(async () => {
    stage = await startStage(
      [0, 1, 2].map(() => options),
      ['--upstream-queue-depth', '3'],
    );
  });
  after(() => stopStage(stage));

  test('its running job ends as error, its queued ones run elsewhere, requests bound to it fail fast, and it gets work again once back', async () => {
    const key = await userKey(stage, 'failover');
    const clientId = 'failover';
    const socket = await openCollectingSocket(socketUrl(stage, clientId), { 'x-api-key': key });
    try {
      const ids: string[] = [];
      for (let tag = 1; tag <= 9; tag += 1) ids.push(await submit(stage, key, tag, { client_id: clientId }));
      const placed = await Promise.all(ids.map((id) => jobOf(stage, id)));
      assert.deepEqual(
        stage.names.map((name) => placed.filter((job) => job.backend === name).length),
        [3, 3, 3],
        'three jobs on each backend: one running, two queued in its ComfyUI',
      );
      // The socket is opened to no backend, so it lives on whichever backend dies.
      assertServedByGateway(stage, clientId);
      const victim = 1;
      const name = stage.names[victim]!;
      const port = stage.fakes[victim]!.port;
      const [done, running, queued] = placed.filter((job) => job.backend === name).map((job) => job.id) as [string, string, string];
      await waitFor(
        async () => (await jobOf(stage, done)).status === 'success' && (await jobOf(stage, running)).status === 'running',
        'its first job to end and its second to run',
      );
      const killedAt = Date.now();
      await stage.fakes[victim]!.close();
      await waitFor(async () => (await readiness(stage)).body.backends[victim]!.events === 'disconnected', 'the gateway to see its socket drop');
      const failing = await readiness(stage);
      assert.equal(failing.status, 200);
      assert.equal(failing.body.backends[victim]!.state, 'unreachable', 'not confirmed down at its first failed checks');

      const later = [await submit(stage, key, 10, { client_id: clientId }), await submit(stage, key, 11, { client_id: clientId })];
      const lost = await settled(stage, [running], 15_000);
      assert.equal(lost[0]!.status, 'error');
      assert.match(lost[0]!.error!.message, new RegExp(`The ComfyUI backend ${name.replaceAll('.', '\\.')} stopped answering while the job ran`));
      assert.ok(Date.now() - killedAt >= 3500, 'it was confirmed down only after several failed checks');
      await waitFor(() => got(socket, 'execution_error', running), 'the execution_error on the socket');

      const rest = await settled(stage, [...ids.filter((id) => id !== running), ...later]);
      assert.ok(
        rest.every((job) => job.status === 'success'),
        JSON.stringify(rest),
      );
      const moved = rest.find((job) => job.id === queued)!;
      assert.notEqual(moved.backend, name, 'its queued job ran on another backend');
      assert.notEqual(moved.upstream_id, queued, 'which knows it by another id');
      assert.ok(got(socket, 'execution_success', queued), 'its events reach the socket under the id its key knows');
      assert.ok(
        rest.filter((job) => later.includes(job.id)).every((job) => job.backend !== name),
        'new jobs went to the others',
      );
      const tags = stage.fakes.map((fake) => tagsSince(fake));
      const queuedTag = ids.indexOf(queued) + 1;
      assert.deepEqual(
        tags.map((list) => list.filter((tag) => tag === queuedTag).length),
        stage.names.map((backend, i) => (i === victim || backend === moved.backend ? 1 : 0)),
        'the queued job was sent once more, to one other backend',
      );

      const { status, body } = await readiness(stage);
      assert.equal(status, 200, 'ready while the others are up');
      assert.deepEqual(
        body.backends.map((b) => b.state),
        [0, 1, 2].map((i) => (i === victim ? 'down' : 'up')),
      );
      for (const id of [done, running]) {
        const started = Date.now();
        const res = await send(stage.gateway.url, `/api/history/${id}`, { key });
        assert.equal(res.status, 502, res.text);
        assert.equal(res.json<{ error_code: string }>().error_code, 'BACKEND_DOWN');
        assert.ok(Date.now() - started < 1000, 'answered at once');
      }

      stage.fakes[victim] = await startFakeComfyUI({ ...options, port });
      await waitFor(
        async () => {
          const back = (await readiness(stage)).body.backends[victim]!;
          return back.state === 'up' && back.events === 'connected';
        },
        'the backend to be up again',
        10_000,
      );
      const again = await Promise.all([12, 13, 14].map((tag) => submit(stage, key, tag)));
      const jobs = await settled(stage, again);
      assert.ok(
        jobs.every((job) => job.status === 'success'),
        JSON.stringify(jobs),
      );
      assert.ok(stage.fakes[victim]!.prompts.length >= 1, 'the backend gets work again');
      assert.ok(jobs.some((job) => job.backend === name));
    } finally {
      await socket.close();
    }
  });
});

describe("two backends, a key's daily_execution_seconds, --upstream-queue-depth 2", () => {
  let stage: Stage;

  before(async () => {
    // About 200 ms per step: a prompt runs for more than four seconds.
    stage = await startStage([{ stepDelayMs: 200 }, { stepDelayMs: 200 }], ['--upstream-queue-depth', '2']);
  });
  after(() => stopStage(stage));

  test("once the budget is spent, each backend's queued job of the key is deleted from that backend's queue before its running one is interrupted", async () => {
    const key = (await createKey(stage.gateway.url, { name: 'budget', rate_limit: 1000, daily_execution_seconds: 2 }, stage.admin)).api_key;
    const ids: string[] = [];
    for (let tag = 1; tag <= 4; tag += 1) ids.push(await submit(stage, key, tag));
    const placed = await Promise.all(ids.map((id) => jobOf(stage, id)));
    const onEach = stage.names.map((name) => placed.filter((job) => job.backend === name).map((job) => job.id));
    assert.deepEqual(
      onEach.map((jobs) => jobs.length),
      [2, 2],
      'two on each backend: one runs, one waits in its queue',
    );
    const ended = await settled(stage, ids, 15_000);
    for (const job of ended) {
      assert.equal(job.status, 'error', JSON.stringify(job));
      assert.match(job.error!.message, /daily_execution_seconds \(2 seconds per UTC day\)/);
    }
    stage.fakes.forEach((fake, i) => {
      const [running, queued] = onEach[i]!;
      assert.deepEqual(
        fake.started.filter((id) => ids.includes(id)),
        [running],
        `backend ${i} ran its first job only`,
      );
      assert.deepEqual(fake.deletedFromQueue, [queued], `backend ${i} was asked to delete its own queued job`);
    });
  });
});

describe('two backends that run different custom nodes', () => {
  /** A custom pack's replacement: its retired loader runs as LoadImage, `file` becoming `image`. */
  const pack = { LegacyImageLoader: [{ new_node_id: 'LoadImage', old_node_id: 'LegacyImageLoader', input_mapping: [{ new_id: 'image', old_id: 'file' }] }] };

  for (const [where, fakes] of [
    ['the first', [{ nodeReplacements: pack }, {}]],
    ['the second', [{}, { nodeReplacements: pack }]],
  ] as const) {
    test(`a node only ${where} backend replaces with a loader is checked as that loader`, async () => {
      const stage = await startStage([...fakes], []);
      try {
        const alice = await userKey(stage, 'alice');
        const res = await postPrompt(stage, alice, {
          prompt: { ...tagged(1), '1': { class_type: 'LegacyImageLoader', inputs: { file: 'someone-elses.png' } } },
        });
        assert.equal(res.status, 403, res.text);
        assert.match(res.json<{ error: string }>().error, /node 1 as LoadImage \(someone-elses\.png\)/);
        assert.deepEqual(
          stage.fakes.map((fake) => fake.prompts.length),
          [0, 0],
          'nothing reached either backend',
        );
      } finally {
        await stopStage(stage);
      }
    });
  }
});
