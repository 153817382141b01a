// A client-chosen prompt_id sent to two replicas at once: ComfyUI gets it once, and the job is one key's.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';
import { deleteRedisKeys, freshPostgresDatabase, redisUnavailable, testKeyPrefix, type FreshDatabase } from '../contract/backends.js';
import { sharedStoreArgs, startReplicas, untilEveryReplicaKnows } from './replicas.js';

const fresh = await freshPostgresDatabase();
const noRedis = await redisUnavailable();
const skip = 'skip' in fresh ? fresh.skip : noRedis;

describe('one prompt_id chosen on two replicas at once', { skip: skip ?? false }, () => {
  const database = fresh as FreshDatabase;
  const prefix = testKeyPrefix();
  let fake: FakeComfyUI;
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;
  let admin: CreatedKey;

  before(async () => {
    fake = await startFakeComfyUI({ stepDelayMs: 2 });
    ({ replicas, stop: stopReplicas } = await startReplicas(2, fake.url, () => sharedStoreArgs(database.url, prefix)));
    admin = await createKey(replicas[0]!.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 });
    await untilEveryReplicaKnows(replicas, admin.key_id, admin.api_key);
  });
  after(async () => {
    await stopReplicas?.();
    await fake?.close();
    await database.drop();
    await deleteRedisKeys(prefix);
  });

  async function userKey(name: string): Promise<CreatedKey> {
    const key = await createKey(replicas[0]!.url, { name, rate_limit: 1_000_000 }, admin.api_key);
    await untilEveryReplicaKnows(replicas, key.key_id, admin.api_key);
    return key;
  }

  for (const keys of ['two keys', 'one key'] as const) {
    test(`${keys}: exactly one is sent to ComfyUI, the other gets 403`, async () => {
      const first = await userKey(`${keys} a`);
      const second = keys === 'one key' ? first : await userKey(`${keys} b`);
      for (let round = 0; round < 10; round += 1) {
        const promptId = randomUUID();
        const answers = await Promise.all(
          [first, second].map((key, i) =>
            send(replicas[i]!.url, '/api/prompt', { method: 'POST', key: key.api_key, body: { prompt: SAVE_WORKFLOW, prompt_id: promptId } }),
          ),
        );
        const sent = (): number => fake.prompts.filter((prompt) => prompt.id === promptId).length;
        assert.deepEqual(
          answers.map((res) => res.status).sort(),
          [200, 403],
          `round ${round}: ${answers.map((res) => `${res.status} ${res.text.slice(0, 100)}`).join(' | ')}`,
        );
        // The one admitted may be held a moment before it is sent.
        await waitFor(() => sent() > 0, `round ${round}: the prompt at ComfyUI`);
        await sleep(100);
        assert.equal(sent(), 1, `round ${round}: ComfyUI got the prompt_id ${sent()} times`);
      }
    });
  }
});
