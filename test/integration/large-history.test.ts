// An admin's GET /history and /api/jobs over a ComfyUI history of several MB (rewritten off the request thread): every entry, as its key knows it, no secrets.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { queuePrompt, waitForHistory } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

/** Other keys' entries: with their long ids, ComfyUI's history and job list are each above 1 MiB. */
const FOREIGN_ENTRIES = 5000;
const SECRET = 'sk-comfy-org-do-not-leak';
const ALICE_CLIENT = 'alice-own-client';

function foreignId(i: number): string {
  return `foreign-${String(i).padStart(5, '0')}-${'x'.repeat(180)}`;
}

function foreignEntry(id: string): unknown {
  return {
    prompt: [0, id, { '1': { class_type: 'KSampler', inputs: { seed: 1 } } }, { client_id: 'someone', api_key_comfy_org: SECRET }, []],
    outputs: {},
    status: { status_str: 'success', completed: true, messages: [] },
    meta: {},
  };
}

type Entry = { prompt: [number, string, unknown, Record<string, unknown>, unknown] };

describe("an admin's large /history and /api/jobs", () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;
  let alicePrompts: string[];

  before(async () => {
    // ComfyUI mints its own ids and takes one prompt at a time: alice's held jobs keep ids ComfyUI does not know them by.
    comfy = await startFakeComfyUI({ promptIds: 'ignored', stepDelayMs: 15 });
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '1'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    const alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 10_000 }, admin)).api_key;
    alicePrompts = [];
    for (let i = 0; i < 3; i += 1) alicePrompts.push(await queuePrompt(gateway.url, alice, { client_id: ALICE_CLIENT }));
    for (const id of alicePrompts) await waitForHistory(gateway.url, alice, id, 60_000);
    // ComfyUI's history: the foreign entries, then alice's (each with a secret ComfyUI would keep from an older client).
    const own = [...comfy.history];
    comfy.history.clear();
    for (let i = 0; i < FOREIGN_ENTRIES; i += 1) comfy.history.set(foreignId(i), foreignEntry(foreignId(i)));
    for (const [id, entry] of own) {
      ((entry as Entry).prompt[3] as Record<string, unknown>).auth_token_comfy_org = SECRET;
      comfy.history.set(id, entry);
    }
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  test('every entry is there, alice’s under her ids with her client_id, and no secret', async () => {
    assert.ok(
      alicePrompts.some((id) => !comfy.history.has(id)),
      'a job ComfyUI knows by another id',
    );
    comfy.requests.length = 0;
    const res = await send(gateway.url, '/api/history', { key: admin });
    assert.equal(res.status, 200);
    assert.ok(res.text.length > 1024 * 1024, `an answer above the threshold (${res.text.length} bytes)`);
    assert.deepEqual(
      comfy.requests.map((r) => `${r.method} ${r.url}`),
      ['GET /api/history'],
    );
    assert.ok(!res.text.includes(SECRET), 'no secret is left');
    const body = res.json<Record<string, Entry>>();
    const ids = Object.keys(body);
    assert.equal(ids.length, FOREIGN_ENTRIES + alicePrompts.length);
    assert.deepEqual(ids.slice(0, 2), [foreignId(0), foreignId(1)]);
    assert.deepEqual(ids.slice(FOREIGN_ENTRIES), alicePrompts, "alice's entries under the ids she knows, in ComfyUI's order");
    for (const id of alicePrompts) {
      assert.equal(body[id]!.prompt[1], id);
      assert.equal(body[id]!.prompt[3].client_id, ALICE_CLIENT);
    }
    assert.equal(body[foreignId(7)]!.prompt[3].client_id, 'someone');

    // A small window of the same history is rewritten on the request thread: alice's entries are the same.
    const small = await send(gateway.url, `/api/history?max_items=${alicePrompts.length}`, { key: admin });
    assert.ok(small.text.length < 1024 * 1024);
    assert.deepEqual(small.json(), Object.fromEntries(alicePrompts.map((id) => [id, body[id]])));
  });

  test("/api/jobs lists every job, alice's under her ids", async () => {
    const res = await send(gateway.url, '/api/jobs', { key: admin });
    assert.equal(res.status, 200);
    assert.ok(res.text.length > 1024 * 1024, `an answer above the threshold (${res.text.length} bytes)`);
    const ids = res.json<{ jobs: Array<{ id: string }> }>().jobs.map((job) => job.id);
    assert.equal(ids.length, FOREIGN_ENTRIES + alicePrompts.length);
    assert.deepEqual(ids.slice(FOREIGN_ENTRIES), alicePrompts);
  });
});
