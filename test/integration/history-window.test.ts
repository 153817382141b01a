// A user key's GET /history costs its own window: only its own prompts' /history/{id}, never ComfyUI's whole history.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { queuePrompt, waitForHistory } from '../helpers/comfy-client.js';
import { PROMPT_ID_MODES, startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

/** Entries of prompts no test key owns, standing for a big history of other keys. */
const FOREIGN_ENTRIES = 300;
/** More than the default window of a GET /history without max_items. */
const MANY_PROMPTS = 205;
const DEFAULT_WINDOW = 200;

/** Queues `count` prompts one after another (so their order is known) and waits for the last; resolves their ids, oldest first. */
async function queueFinished(gatewayUrl: string, key: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i += 1) ids.push(await queuePrompt(gatewayUrl, key));
  for (const id of ids) await waitForHistory(gatewayUrl, key, id, 60_000);
  return ids;
}

function foreignEntry(id: string): unknown {
  return {
    prompt: [0, id, { '1': { class_type: 'KSampler', inputs: { seed: 1 } } }, {}, []],
    outputs: {},
    status: { status_str: 'success', completed: true, messages: [] },
    meta: {},
  };
}

for (const promptIds of PROMPT_ID_MODES) {
  describe(`a user key's GET /history looks up only its own window (ComfyUI that ${promptIds} client prompt ids)`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    const keys = { admin: '', alice: '', bob: '', carol: '' };
    let alicePrompts: string[];
    let alicePending: string;
    let bobPrompts: string[];
    let carolPrompts: string[];

    /** The key's GET, with the upstream requests it caused. */
    async function getHistory(key: string, target: string): Promise<{ status: number; ids: string[]; body: Record<string, unknown>; upstream: string[] }> {
      comfy.requests.length = 0;
      const res = await send(gateway.url, target, { key });
      const body = res.status === 200 ? res.json() : {};
      return { status: res.status, ids: Object.keys(body), body, upstream: comfy.requests.map((r) => `${r.method} ${r.url}`) };
    }

    function assertOnlyOwnLookups(upstream: string[], owned: readonly string[]): void {
      for (const request of upstream) {
        const match = /^GET \/(?:api\/)?history\/([^/?]+)$/.exec(request);
        assert.ok(match, `only /history/{id} is asked for, not ${request}`);
        assert.ok(owned.includes(decodeURIComponent(match[1]!)), `${request} is one of the key's own prompts`);
      }
      assert.ok(upstream.length <= owned.length, `${upstream.length} lookups for ${owned.length} prompts`);
    }

    before(async () => {
      comfy = await startFakeComfyUI({ promptIds, stepDelayMs: 1 });
      // Every prompt goes to ComfyUI at once (none is held), so each job's id is the one ComfyUI knows it by.
      gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '10000'] });
      keys.admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
      for (const name of ['alice', 'bob', 'carol'] as const) keys[name] = (await createKey(gateway.url, { name, rate_limit: 100000 }, keys.admin)).api_key;
      alicePrompts = await queueFinished(gateway.url, keys.alice, 4);
      bobPrompts = await queueFinished(gateway.url, keys.bob, 3);
      alicePending = (await queueFinished(gateway.url, keys.alice, 1))[0]!;
      carolPrompts = await queueFinished(gateway.url, keys.carol, MANY_PROMPTS);
      // Alice's newest prompt has no entry yet, as while it is pending or running.
      comfy.history.delete(alicePending);
      // Other keys' entries before and after the test keys' own.
      const own = [...comfy.history];
      comfy.history.clear();
      for (let i = 0; i < FOREIGN_ENTRIES; i += 1) {
        const id = `foreign-${i}`;
        if (i === FOREIGN_ENTRIES / 2) for (const [ownId, entry] of own) comfy.history.set(ownId, entry);
        comfy.history.set(id, foreignEntry(id));
      }
    });
    after(async () => {
      await gateway.stop();
      await comfy.close();
    });

    test('max_items=N is the newest N completed entries of the key, oldest first, from its own /history/{id} only', async () => {
      for (const target of ['/api/history?max_items=2', '/history?max_items=2']) {
        const { status, ids, body, upstream } = await getHistory(keys.alice, target);
        assert.equal(status, 200);
        assert.deepEqual(ids, alicePrompts.slice(2), 'the two newest completed, the pending one skipped');
        assert.ok(upstream.length > 0);
        assertOnlyOwnLookups(upstream, [...alicePrompts, alicePending]);
        assert.deepEqual((body[alicePrompts[3]!] as { outputs?: unknown }).outputs, (comfy.history.get(alicePrompts[3]!) as { outputs?: unknown }).outputs);
      }
    });

    test('offset counts from the key’s oldest entry; with max_items it is the window [offset, offset + max_items)', async () => {
      const window = await getHistory(keys.alice, '/api/history?offset=1&max_items=1');
      assert.deepEqual(window.ids, [alicePrompts[1]]);
      assertOnlyOwnLookups(window.upstream, [...alicePrompts, alicePending]);
      assert.ok(window.upstream.length <= 2, 'only up to the window is looked up');
      const fromSecond = await getHistory(keys.alice, '/api/history?offset=1');
      assert.deepEqual(fromSecond.ids, alicePrompts.slice(1));
      const pastTheEnd = await getHistory(keys.alice, '/api/history?offset=10&max_items=3');
      assert.deepEqual(pastTheEnd.ids, []);
    });

    test('without max_items the answer is the key’s own entries, at most the default window, and never another key’s', async () => {
      const alice = await getHistory(keys.alice, '/api/history');
      assert.deepEqual(alice.ids, alicePrompts);
      assertOnlyOwnLookups(alice.upstream, [...alicePrompts, alicePending]);
      const bob = await getHistory(keys.bob, '/history');
      assert.deepEqual(bob.ids, bobPrompts);
      assertOnlyOwnLookups(bob.upstream, bobPrompts);

      const carol = await getHistory(keys.carol, '/api/history');
      assert.equal(carol.ids.length, DEFAULT_WINDOW);
      assert.deepEqual(carol.ids, carolPrompts.slice(-DEFAULT_WINDOW), 'the newest of the default window, oldest first');
      assertOnlyOwnLookups(carol.upstream, carolPrompts.slice(-DEFAULT_WINDOW));
      const rest = await getHistory(keys.carol, `/api/history?offset=${DEFAULT_WINDOW}`);
      assert.deepEqual(rest.ids, carolPrompts.slice(DEFAULT_WINDOW));
    });

    test('a key with no prompts gets {} without asking ComfyUI; bad max_items or offset is refused as before', async () => {
      const nobody = (await createKey(gateway.url, { name: 'nobody' }, keys.admin)).api_key;
      const empty = await getHistory(nobody, '/api/history?max_items=5');
      assert.deepEqual(empty.body, {});
      assert.deepEqual(empty.upstream, []);
      for (const query of ['max_items=two', 'offset=1.5']) {
        const bad = await getHistory(keys.alice, `/api/history?${query}`);
        assert.equal(bad.status, 400, query);
        assert.deepEqual(bad.upstream, []);
      }
    });

    test('an admin key still gets ComfyUI’s own window over the whole history, asked of ComfyUI as it is', async () => {
      const admin = await getHistory(keys.admin, '/api/history?max_items=2');
      assert.deepEqual(admin.ids, ['foreign-298', 'foreign-299']);
      assert.deepEqual(admin.upstream, ['GET /api/history?max_items=2']);
    });

    test("each entry shows the client's own client_id, never the gateway's, and no secret ComfyUI kept", async () => {
      const withClient = await queuePrompt(gateway.url, keys.bob, { client_id: 'bob-tab' });
      const withoutClient = await queuePrompt(gateway.url, keys.bob);
      const withSecret = await queuePrompt(gateway.url, keys.bob, { client_id: 'bob-tab' });
      for (const id of [withClient, withoutClient, withSecret]) await waitForHistory(gateway.url, keys.bob, id);
      // An older ComfyUI kept the secrets of Comfy's API nodes in the entry.
      const stored = comfy.history.get(withSecret) as { prompt: [number, string, unknown, Record<string, unknown>, unknown] };
      stored.prompt[3] = { ...stored.prompt[3], auth_token_comfy_org: 'secret-token' };
      const { body } = await getHistory(keys.bob, '/api/history?max_items=3');
      const extraData = (id: string): Record<string, unknown> => (body[id] as { prompt: unknown[] }).prompt[3] as Record<string, unknown>;
      assert.equal(extraData(withClient).client_id, 'bob-tab');
      assert.equal(extraData(withoutClient).client_id, undefined);
      assert.equal(extraData(withSecret).client_id, 'bob-tab');
      assert.equal(extraData(withSecret).auth_token_comfy_org, undefined);
      assert.ok(!JSON.stringify(body).includes('secret-token'));
      assert.equal((await send(gateway.url, `/api/history/${withSecret}`, { key: keys.bob })).text.includes('secret-token'), false);
    });
  });
}
