// Two prompts of one key sent at once with one new client_id on PostgreSQL, one refused: the client_id stays the key's.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';
import { deleteRedisKeys, freshPostgresDatabase, redisUnavailable, testKeyPrefix, type FreshDatabase } from '../contract/backends.js';
import { sharedStoreArgs, startReplicas } from './replicas.js';

const fresh = await freshPostgresDatabase();
const noRedis = await redisUnavailable();
const skip = 'skip' in fresh ? fresh.skip : noRedis;

describe('a new client_id sent by two prompts of a key at once, on PostgreSQL', { skip: skip ?? false }, () => {
  const database = fresh as FreshDatabase;
  const prefix = testKeyPrefix();
  let fake: FakeComfyUI;
  let gateway: GatewayProcess;
  let stopReplicas: () => Promise<void>;
  let admin: string;
  let bob: string;

  const prompt = (key: string, body: Record<string, unknown>): Promise<TestResponse> => send(gateway.url, '/api/prompt', { method: 'POST', key, body });

  before(async () => {
    fake = await startFakeComfyUI({ stepDelayMs: 2 });
    let replicas: GatewayProcess[];
    ({ replicas, stop: stopReplicas } = await startReplicas(1, fake.url, () => [...sharedStoreArgs(database.url, prefix), '--upstream-queue-depth', '10000']));
    gateway = replicas[0]!;
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 })).api_key;
    bob = (await createKey(gateway.url, { name: 'bob', rate_limit: 1_000_000 }, admin)).api_key;
  });
  after(async () => {
    await stopReplicas?.();
    await fake?.close();
    await database.drop();
    await deleteRedisKeys(prefix);
  });

  /** Sends two prompts of `key` with one body (`body()`, made anew each round) and one new client_id at once; expects one admitted, the other refused with `refusedStatus`; then bob tries the id. */
  async function pairThenBob(key: string, body: () => Record<string, unknown>, refusedStatus: number): Promise<void> {
    for (let round = 0; round < 5; round += 1) {
      const clientId = `pair-${randomUUID()}`;
      const shared = { ...body(), client_id: clientId };
      const answers = await Promise.all([0, 1].map(() => prompt(key, shared)));
      assert.deepEqual(answers.map((res) => res.status).sort(), [200, refusedStatus], answers.map((res) => res.text).join(' | '));
      const taken = await prompt(bob, { prompt: SAVE_WORKFLOW, client_id: clientId });
      assert.equal(taken.status, 403, `round ${round}: another key cannot take it: ${taken.text}`);
      // The job ends before the next round, so that the key's max_queued counts only that round's prompts.
      const id = answers.find((res) => res.status === 200)!.json<{ prompt_id: string }>().prompt_id;
      await waitFor(
        async () => (await send(gateway.url, `/api/gateway/jobs/${id}`, { key })).json<{ status: string }>().status === 'success',
        `job ${id} to end`,
      );
    }
  }

  test('one refused by the key’s max_queued', async () => {
    const alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 1_000_000, max_queued: 1 }, admin)).api_key;
    await pairThenBob(alice, () => ({ prompt: SAVE_WORKFLOW }), 429);
  });

  test('one refused as its chosen prompt_id is the other’s', async () => {
    const carol = (await createKey(gateway.url, { name: 'carol', rate_limit: 1_000_000 }, admin)).api_key;
    await pairThenBob(carol, () => ({ prompt: SAVE_WORKFLOW, prompt_id: randomUUID() }), 403);
  });
});
