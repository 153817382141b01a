// Two gateway replicas on shared PostgreSQL and Redis in front of three ComfyUIs: shared placement counts, each prompt sent once, quotas and job events across the replicas.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openCollectingSocket, SAVE_WORKFLOW, type CollectingSocket } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';
import { deleteRedisKeys, freshPostgresDatabase, redisUnavailable, testKeyPrefix, type FreshDatabase } from '../contract/backends.js';
import { msUntil, sharedStoreArgs, startReplicas, untilEveryReplicaKnows } from './replicas.js';

const fresh = await freshPostgresDatabase();
const noRedis = await redisUnavailable();
const skip = 'skip' in fresh ? fresh.skip : noRedis;

/** A prompt arriving at fake ComfyUI `on`, and what each of the three held then (prompts queued or running, each with the client_id of the replica that sent it). */
interface QueueMoment {
  on: number;
  inFlight: Array<ReturnType<FakeComfyUI['inFlight']>>;
}

interface Job {
  id: string;
  status: string;
  backend: string;
}

/** SAVE_WORKFLOW with `saves` more SaveImage nodes: each adds about ten steps to the run. */
function longWorkflow(saves: number): Record<string, unknown> {
  const nodes: Record<string, unknown> = { ...SAVE_WORKFLOW };
  for (let i = 0; i < saves; i += 1) nodes[`${100 + i}`] = { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'long' } };
  return nodes;
}

/** The most prompts of `ids` any one sender (a replica's client_id) had in ComfyUI at once, and the most all senders had. */
function peaks(moments: QueueMoment[], ids: ReadonlySet<string>, scope: 'backend' | 'all'): { perReplica: number; total: number } {
  let perReplica = 0;
  let total = 0;
  for (const moment of moments) {
    for (const held of scope === 'all' ? [moment.inFlight.flat()] : moment.inFlight) {
      const mine = held.filter((prompt) => ids.has(prompt.id));
      total = Math.max(total, mine.length);
      const bySender = new Map<string | null, number>();
      for (const prompt of mine) bySender.set(prompt.clientId, (bySender.get(prompt.clientId) ?? 0) + 1);
      perReplica = Math.max(perReplica, ...bySender.values());
    }
  }
  return { perReplica, total };
}

describe('two replicas sharing three ComfyUI backends', { skip: skip ?? false }, () => {
  const database = fresh as FreshDatabase;
  const prefix = testKeyPrefix();
  const fakes: FakeComfyUI[] = [];
  const moments: QueueMoment[] = [];
  const sockets: CollectingSocket[] = [];
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;
  let admin: CreatedKey;

  before(async () => {
    for (let i = 0; i < 3; i += 1) {
      // SAVE_WORKFLOW runs in 23 steps: about 150 ms.
      fakes.push(await startFakeComfyUI({ stepDelayMs: 6, onQueued: () => moments.push({ on: i, inFlight: fakes.map((fake) => fake.inFlight()) }) }));
    }
    ({ replicas, stop: stopReplicas } = await startReplicas(2, fakes[0]!.url, () => [
      '--upstream',
      fakes[1]!.url,
      '--upstream',
      fakes[2]!.url,
      '--upstream-queue-depth',
      '1',
      ...sharedStoreArgs(database.url, prefix),
    ]));
    admin = await createKey(replicas[0]!.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 });
    await untilEveryReplicaKnows(replicas, admin.key_id, admin.api_key);
  });
  after(async () => {
    await Promise.all(sockets.map((socket) => socket.close()));
    await stopReplicas?.();
    await Promise.all(fakes.map((fake) => fake.close()));
    await database.drop();
    await deleteRedisKeys(prefix);
  });

  /** A user key every replica knows. */
  async function userKey(name: string, quotas: Record<string, number> = {}): Promise<CreatedKey> {
    const key = await createKey(replicas[0]!.url, { name, rate_limit: 1_000_000, ...quotas }, admin.api_key);
    await untilEveryReplicaKnows(replicas, key.key_id, admin.api_key);
    return key;
  }

  /** Opens a ComfyUI socket on a replica; resolves once its feature_flags were answered (it is registered by then). */
  async function open(gateway: GatewayProcess, key: CreatedKey, clientId: string): Promise<CollectingSocket> {
    const socket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=${clientId}`, { 'x-api-key': key.api_key });
    sockets.push(socket);
    socket.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: false } }));
    await waitFor(() => socket.texts.some((m) => m.type === 'feature_flags'), 'the feature_flags answer');
    return socket;
  }

  /** Queues a prompt under a chosen prompt_id through a replica. */
  function submit(gateway: GatewayProcess, key: CreatedKey, promptId: string, extra: Record<string, unknown> = {}): Promise<TestResponse> {
    return send(gateway.url, '/api/prompt', { method: 'POST', key: key.api_key, body: { prompt: SAVE_WORKFLOW, prompt_id: promptId, ...extra } });
  }

  /** A job as a replica's registry has it. */
  async function jobOn(gateway: GatewayProcess, id: string): Promise<Job> {
    const res = await send(gateway.url, `/api/gateway/jobs/${id}`, { key: admin.api_key });
    assert.equal(res.status, 200, res.text);
    return res.json<Job>();
  }

  /** Resolves once a replica has the job (it may not have heard of it yet) in a status `wanted` accepts. */
  async function untilStatus(gateway: GatewayProcess, id: string, wanted: (status: string) => boolean, what: string): Promise<void> {
    await msUntil(
      performance.now(),
      () => send(gateway.url, `/api/gateway/jobs/${id}`, { key: admin.api_key }),
      (res) => res.status === 200 && wanted(res.json<Job>().status),
      30_000,
      `${what} on ${gateway.url}`,
    );
  }

  /** Resolves, once none of these jobs is held, queued or running on replica 0, their records there. */
  async function untilEnded(ids: string[]): Promise<Job[]> {
    const wanted = new Set(ids);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const res = await send(replicas[0]!.url, '/api/gateway/jobs?limit=500', { key: admin.api_key });
      const jobs = res.json<{ jobs: Job[] }>().jobs.filter((job) => wanted.has(job.id));
      if (jobs.length === ids.length && jobs.every((job) => !['held', 'queued', 'running'].includes(job.status))) return jobs;
      if (Date.now() > deadline) assert.fail(`jobs still in progress: ${jobs.map((job) => job.status).join(',')}`);
      await sleep(50);
    }
  }

  test('30 prompts of two keys alternating between the replicas: each runs once, on all three backends, and no replica over-fills a backend', async (t) => {
    const keys = [await userKey('alice'), await userKey('bob')];
    const clientIds = ['alice-client', 'bob-client'];
    // Each key's socket on each replica.
    const socketsOf = await Promise.all(keys.map((key, k) => Promise.all(replicas.map((gateway) => open(gateway, key, clientIds[k]!)))));
    moments.length = 0;
    const sentBefore = fakes.map((fake) => fake.prompts.length);
    const submitted = Array.from({ length: 30 }, (_, i) => ({ id: randomUUID() as string, key: i % 2, replica: Math.floor(i / 2) % 2 }));
    const answers = await Promise.all(submitted.map(({ id, key, replica }) => submit(replicas[replica]!, keys[key]!, id, { client_id: clientIds[key] })));
    for (const [i, res] of answers.entries()) {
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json<{ prompt_id: string }>().prompt_id, submitted[i]!.id);
    }
    const jobs = await untilEnded(submitted.map(({ id }) => id));
    assert.deepEqual(new Set(jobs.map((job) => job.status)), new Set(['success']));

    const sent = fakes.map((fake, i) => fake.prompts.slice(sentBefore[i]));
    const sentIds = sent.flat().map((prompt) => prompt.id);
    assert.equal(sentIds.length, 30, 'no prompt was sent twice');
    assert.deepEqual(new Set(sentIds), new Set(submitted.map(({ id }) => id)));
    for (const job of jobs) assert.equal(job.backend, new URL(fakes[sent.findIndex((prompts) => prompts.some((p) => p.id === job.id))]!.url).host);
    const perBackend = sent.map((prompts) => prompts.length);
    assert.ok(
      perBackend.every((count) => count >= 3),
      `the work spread over the three backends: ${perBackend.join('/')}`,
    );
    const senders = new Set(sent.flat().map((prompt) => prompt.body.client_id));
    assert.equal(senders.size, 2, 'both replicas sent prompts');

    // Each replica counts the other's jobs from the registry: it never puts a second prompt on a backend
    // itself. A backend may get one from each when both choose it before either's choice is in the
    // registry (a replica cannot see another's send under way), so two at most.
    const all = new Set(sentIds);
    const { perReplica, total } = peaks(moments, all, 'backend');
    const twice = moments.filter((moment) => moment.inFlight[moment.on]!.length > 1).length;
    t.diagnostic(`per backend ${perBackend.join('/')}; of ${moments.length} prompts, ${twice} arrived at a backend holding another replica's`);
    assert.equal(perReplica, 1, 'no replica had two prompts in one backend at once');
    assert.ok(total <= 2, `at most one prompt of each replica in a backend (${total})`);
    // Both replicas' counts come from the one registry: both see every backend empty again.
    await Promise.all(
      replicas.map((gateway) =>
        msUntil(
          performance.now(),
          async () => (await send(gateway.url, '/readyz')).json<{ backends: Array<{ jobs_in_flight: number }> }>().backends.map((b) => b.jobs_in_flight),
          (inFlight) => inFlight.join() === '0,0,0',
          10_000,
          `no job in flight on ${gateway.url}`,
        ),
      ),
    );

    // Every job's events reach its key's sockets on both replicas (the one that sent it and, relayed, the other), once.
    const ends = (socket: CollectingSocket, id: string): number => socket.texts.filter((m) => m.type === 'execution_success' && m.data.prompt_id === id).length;
    await waitFor(
      () => socketsOf.every((pair, k) => pair.every((socket) => submitted.every(({ id, key }) => key !== k || ends(socket, id) > 0))),
      "every end on both of its key's sockets",
      20_000,
    );
    for (const [k, pair] of socketsOf.entries()) {
      for (const socket of pair) for (const { id, key } of submitted) assert.equal(ends(socket, id), key === k ? 1 : 0);
    }
  });

  test("max_running across the replicas: one holds a key's prompt while its job runs on the other and sends it soon after, and neither starts two at once", async (t) => {
    const key = await userKey('runner', { max_running: 1 });
    moments.length = 0;
    const first = randomUUID() as string;
    assert.equal((await submit(replicas[0]!, key, first, { prompt: longWorkflow(30) })).status, 200);
    await untilStatus(replicas[1]!, first, (status) => status === 'running', 'the first job running');
    const second = randomUUID() as string;
    assert.equal((await submit(replicas[1]!, key, second)).status, 200);
    assert.equal((await jobOn(replicas[1]!, second)).status, 'held', 'held while the first job runs on the other replica');
    assert.equal((await jobOn(replicas[1]!, first)).status, 'running', 'the first job still ran meanwhile');
    // Replica 1 hears of the end only through the registry, and sends its held job then (not at its next periodic look, up to 30 s later).
    await untilStatus(replicas[1]!, first, (status) => status === 'success', 'the first job ended');
    const ended = performance.now();
    const waited = await msUntil(
      ended,
      () => send(replicas[1]!.url, `/api/gateway/jobs/${second}`, { key: admin.api_key }),
      (res) => res.json<Job>().status !== 'held',
      10_000,
      'the held job sent',
    );
    t.diagnostic(`the held job left the other replica's queue ${waited.toFixed(0)} ms after the first ended`);
    assert.ok(waited < 3000, `sent ${waited.toFixed(0)} ms after the end`);
    const ids = [first, second];
    await untilEnded(ids);
    // A burst on both replicas at once, nothing held: prompts still being sent count too.
    const burst = Array.from({ length: 8 }, () => randomUUID() as string);
    const answers = await Promise.all(burst.map((id, i) => submit(replicas[i % 2]!, key, id)));
    assert.ok(answers.every((res) => res.status === 200));
    ids.push(...burst);
    const jobs = await untilEnded(ids);
    assert.deepEqual(new Set(jobs.map((job) => job.status)), new Set(['success']));
    const { perReplica, total } = peaks(moments, new Set(ids), 'all');
    t.diagnostic(`the key's jobs in ComfyUI at once: at most ${total}`);
    assert.equal(perReplica, 1, 'no replica had two of its jobs in ComfyUI at once');
    assert.ok(total <= 2, 'one from each replica at most, when both released one before either saw the other do it');
  });

  test('max_queued across the replicas: a key at its limit on one replica is refused on the other; a burst on one replica admits exactly the limit', async () => {
    const key = await userKey('queuer', { max_queued: 2, max_running: 1 });
    const first = randomUUID() as string;
    assert.equal((await submit(replicas[0]!, key, first, { prompt: longWorkflow(30) })).status, 200);
    await untilStatus(replicas[1]!, first, (status) => status === 'running', 'the first job');
    const second = randomUUID() as string;
    assert.equal((await submit(replicas[1]!, key, second)).status, 200);
    await untilStatus(replicas[0]!, second, (status) => status === 'held', 'the second job');
    for (const gateway of replicas) {
      const refused = await submit(gateway, key, randomUUID());
      assert.equal(refused.status, 429, refused.text);
      assert.equal(refused.json().error_code, 'QUEUE_LIMIT');
    }
    assert.equal((await jobOn(replicas[1]!, first)).status, 'running', 'the first job still ran meanwhile');
    await untilEnded([first, second]);

    // Long jobs, one at a time: the key's first three stay active while the burst is admitted.
    const burstKey = await userKey('burst', { max_queued: 3, max_running: 1 });
    const burst = await Promise.all(Array.from({ length: 8 }, () => submit(replicas[1]!, burstKey, randomUUID(), { prompt: longWorkflow(30) })));
    assert.deepEqual(burst.map((res) => res.status).sort(), [200, 200, 200, 429, 429, 429, 429, 429], 'prompts still being sent count against the limit');
  });
});
