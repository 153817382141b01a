// Two user keys side by side cannot observe or disturb each other; an admin key sees everything.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket, queuePrompt, SAVE_WORKFLOW, waitForHistory } from '../helpers/comfy-client.js';
import { INTERRUPT_MODES, PROMPT_ID_MODES, startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

interface Keys {
  admin: string;
  alice: string;
  bob: string;
}

async function startWithKeys(comfy: FakeComfyUI, userDirectory?: string): Promise<{ gateway: GatewayProcess; keys: Keys }> {
  const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'], ...(userDirectory ? { userDirectory } : {}) });
  const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
  const alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 100000 }, admin)).api_key;
  const bob = (await createKey(gateway.url, { name: 'bob', rate_limit: 100000 }, admin)).api_key;
  return { gateway, keys: { admin, alice, bob } };
}

/** Waits (at most 15 s) until the gateway's one backend is up and its event socket open: it asks ComfyUI about `--multi-user` anew after each. */
async function backendSettled(gateway: GatewayProcess, adminKey: string): Promise<void> {
  for (const deadline = Date.now() + 15_000; ; await sleep(50)) {
    const { backends } = (await send(gateway.url, '/api/gateway/backends', { key: adminKey })).json<{ backends: Array<{ state: string; events: string }> }>();
    if (backends.every((backend) => backend.state === 'up' && backend.events === 'connected')) return;
    assert.ok(Date.now() < deadline, 'the backend is up and the event socket open');
  }
}

function firstImage(entry: Record<string, unknown>): { filename: string; subfolder: string; type: string } {
  const outputs = entry.outputs as Record<string, { images?: Array<{ filename: string; subfolder: string; type: string }> }>;
  return Object.values(outputs).find((o) => o.images?.length)!.images![0]!;
}

for (const promptIds of PROMPT_ID_MODES) {
  describe(`isolation of history, outputs, uploads and admin routes (ComfyUI that ${promptIds} client prompt ids)`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let keys: Keys;
    let alicePrompt: string;
    let bobPrompt: string;

    before(async () => {
      comfy = await startFakeComfyUI({ promptIds });
      ({ gateway, keys } = await startWithKeys(comfy));
      alicePrompt = await queuePrompt(gateway.url, keys.alice);
      bobPrompt = await queuePrompt(gateway.url, keys.bob, { extra_data: { auth_token_comfy_org: 'bob-secret-token', api_key_comfy_org: 'bob-secret-key' } });
      await waitForHistory(gateway.url, keys.alice, alicePrompt);
      await waitForHistory(gateway.url, keys.bob, bobPrompt);
    });
    after(async () => {
      await gateway.stop();
      await comfy.close();
    });

    test('GET /history shows each key only its own prompts; the admin sees both', async () => {
      const alice = (await send(gateway.url, '/api/history', { key: keys.alice })).json();
      assert.deepEqual(Object.keys(alice), [alicePrompt]);
      const bob = (await send(gateway.url, '/history', { key: keys.bob })).json();
      assert.deepEqual(Object.keys(bob), [bobPrompt]);
      const admin = (await send(gateway.url, '/api/history', { key: keys.admin })).json();
      assert.deepEqual(Object.keys(admin).sort(), [alicePrompt, bobPrompt].sort());
    });

    test('GET /history/{id} of another key answers {} as for an unknown id', async () => {
      const res = await send(gateway.url, `/api/history/${bobPrompt}`, { key: keys.alice });
      assert.equal(res.status, 200);
      assert.deepEqual(res.json(), {});
      assert.ok((await send(gateway.url, `/api/history/${bobPrompt}`, { key: keys.bob })).json()[bobPrompt]);
    });

    test('max_items and offset apply to the key’s own entries', async () => {
      const second = await queuePrompt(gateway.url, keys.alice);
      await waitForHistory(gateway.url, keys.alice, second);
      const newest = (await send(gateway.url, '/api/history?max_items=1', { key: keys.alice })).json();
      assert.deepEqual(Object.keys(newest), [second]);
      const fromSecond = (await send(gateway.url, '/api/history?offset=1', { key: keys.alice })).json();
      assert.deepEqual(Object.keys(fromSecond), [second]);
      const window = (await send(gateway.url, '/api/history?offset=0&max_items=1', { key: keys.alice })).json();
      assert.deepEqual(Object.keys(window), [alicePrompt]);
    });

    test('secrets in extra_data never leave the gateway, not even to their owner or an admin', async () => {
      for (const key of [keys.bob, keys.admin]) {
        const res = await send(gateway.url, `/api/history/${bobPrompt}`, { key });
        assert.equal(res.text.includes('bob-secret'), false);
        assert.equal(res.text.includes(bobPrompt), true);
      }
    });

    test('/view: only the key’s own outputs; another key’s file is an empty 404', async () => {
      const image = firstImage(await waitForHistory(gateway.url, keys.alice, alicePrompt));
      const target = `/api/view?filename=${encodeURIComponent(image.filename)}&type=output&subfolder=`;
      assert.equal((await send(gateway.url, target, { key: keys.alice })).status, 200);
      const denied = await send(gateway.url, target, { key: keys.bob });
      assert.equal(denied.status, 404);
      assert.equal(denied.text, '');
      assert.equal((await send(gateway.url, target, { key: keys.admin })).status, 200);
      const annotated = `/view?filename=${encodeURIComponent(`${image.filename} [output]`)}&type=input`;
      assert.equal((await send(gateway.url, annotated, { key: keys.bob })).status, 404);
      assert.equal((await send(gateway.url, annotated, { key: keys.alice })).status, 200);
    });

    test('/view of an output never seen through the gateway is found from the key’s own history', async () => {
      const promptId = await queuePrompt(gateway.url, keys.bob);
      await sleep(300);
      const entry = comfy.history.get(promptId) as Record<string, unknown>;
      const image = firstImage(entry);
      const target = `/view?filename=${encodeURIComponent(image.filename)}&type=output`;
      assert.equal((await send(gateway.url, target, { key: keys.alice })).status, 404);
      assert.equal((await send(gateway.url, target, { key: keys.bob })).status, 200);
    });

    test('uploads belong to the uploader', async () => {
      const boundary = 'iso-boundary';
      const body = `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="alice-upload.png"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--${boundary}--\r\n`;
      const res = await send(gateway.url, '/api/upload/image', {
        method: 'POST',
        key: keys.alice,
        body,
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      });
      assert.equal(res.status, 200, res.text);
      const name = res.json<{ name: string }>().name;
      const target = `/api/view?filename=${encodeURIComponent(name)}&type=input`;
      assert.equal((await send(gateway.url, target, { key: keys.alice })).text, 'PNGDATA');
      assert.equal((await send(gateway.url, target, { key: keys.bob })).status, 404);
      const loadForeign = await send(gateway.url, '/api/prompt', {
        method: 'POST',
        key: keys.bob,
        body: { prompt: { ...SAVE_WORKFLOW, '1': { class_type: 'LoadImage', inputs: { image: name } } } },
      });
      assert.equal(loadForeign.status, 403, 'a prompt may not load another key’s upload');
      assert.equal(loadForeign.json().error_code, 'FORBIDDEN');
      const loadOwn = await send(gateway.url, '/api/prompt', {
        method: 'POST',
        key: keys.alice,
        body: { prompt: { ...SAVE_WORKFLOW, '1': { class_type: 'LoadImage', inputs: { image: name } } } },
      });
      assert.equal(loadOwn.status, 200, loadOwn.text);
    });

    test('admin-only routes: /internal/*, /free; argv stripped from /system_stats', async () => {
      for (const target of ['/internal/logs', '/api/internal/logs', '/internal/folder_paths', '/free', '/api/free']) {
        const method = target.endsWith('free') ? 'POST' : 'GET';
        const res = await send(gateway.url, target, { method, key: keys.alice, ...(method === 'POST' ? { body: {} } : {}) });
        assert.equal(res.status, 403, target);
        assert.equal(res.json().error_code, 'ROUTE_NOT_ALLOWED');
        const asAdmin = await send(gateway.url, target, { method, key: keys.admin, ...(method === 'POST' ? { body: {} } : {}) });
        // ComfyUI serves /internal only without the /api prefix; the admin gets whatever ComfyUI answers.
        assert.equal(asAdmin.status, target === '/api/internal/logs' ? 404 : 200, target);
      }
      const stats = (await send(gateway.url, '/api/system_stats', { key: keys.alice })).json<{ system: Record<string, unknown> }>();
      assert.equal('argv' in stats.system, false);
      assert.ok('comfyui_version' in stats.system || 'os' in stats.system);
      const adminStats = (await send(gateway.url, '/api/system_stats', { key: keys.admin })).json<{ system: Record<string, unknown> }>();
      assert.ok(Array.isArray(adminStats.system.argv));
    });

    test('without --multi-user upstream, user keys read the operator’s user as empty and cannot write it', async () => {
      assert.equal((await send(gateway.url, '/api/settings', { method: 'POST', key: keys.admin, body: { 'Operator.Secret': 'op-value' } })).status, 200);
      assert.equal((await send(gateway.url, '/api/userdata/operator.txt', { method: 'POST', key: keys.admin, body: 'op-secret' })).status, 200);
      assert.deepEqual((await send(gateway.url, '/api/settings', { key: keys.alice })).json(), {});
      assert.equal((await send(gateway.url, '/api/settings/Operator.Secret', { key: keys.alice })).json(), null);
      for (const target of [
        '/api/userdata/operator.txt',
        '/userdata/operator.txt',
        '/api/userdata?dir=.',
        '/api/v2/userdata',
        '/api/userdata/ComfyUI-Manager%2Fmatrix_auth',
      ]) {
        const read = await send(gateway.url, target, { key: keys.alice });
        assert.equal(read.status, 404, target);
        assert.equal(read.text, '', target);
      }
      assert.equal((await send(gateway.url, '/api/userdata/operator.txt', { key: keys.admin })).text, 'op-secret', 'the admin key reads it');
      const write = await send(gateway.url, '/api/settings', { method: 'POST', key: keys.alice, body: { 'Comfy.Theme': 'dark' } });
      assert.equal(write.status, 403);
      assert.equal((await send(gateway.url, '/api/userdata/workflows%2Fx.json', { method: 'POST', key: keys.alice, body: '{}' })).status, 403);
      assert.equal((await send(gateway.url, '/api/users', { method: 'POST', key: keys.alice, body: { username: 'x' } })).status, 403);
      assert.equal((await send(gateway.url, '/api/settings', { method: 'POST', key: keys.admin, body: { 'Comfy.Theme': 'dark' } })).status, 200);
    });

    test('ownership survives a restart', async () => {
      await gateway.stop();
      gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'], userDirectory: gateway.userDirectory });
      assert.deepEqual((await send(gateway.url, `/api/history/${alicePrompt}`, { key: keys.bob })).json(), {});
      assert.ok((await send(gateway.url, `/api/history/${alicePrompt}`, { key: keys.alice })).json()[alicePrompt]);
    });
  });
}

for (const promptIds of PROMPT_ID_MODES) {
  describe(`isolation of the queue, interrupts and deletions (ComfyUI that ${promptIds} client prompt ids)`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let keys: Keys;

    before(async () => {
      comfy = await startFakeComfyUI({ promptIds, stepDelayMs: 60 });
      ({ gateway, keys } = await startWithKeys(comfy));
    });
    after(async () => {
      await gateway.stop();
      await comfy.close();
    });

    type Queue = { queue_running: unknown[][]; queue_pending: unknown[][] };
    const queueOf = async (key: string): Promise<Queue> => (await send(gateway.url, '/api/queue', { key })).json<Queue>();

    test('GET /queue: own items in full, others reduced to their place in line, secrets gone for all', async () => {
      const running = await queuePrompt(gateway.url, keys.alice, { extra_data: { auth_token_comfy_org: 'alice-secret' } });
      const bobPending = await queuePrompt(gateway.url, keys.bob, { extra_data: { extra_pnginfo: { workflow: { private: true } } } });
      const asAlice = await queueOf(keys.alice);
      const all = [...asAlice.queue_running, ...asAlice.queue_pending];
      const own = all.find((item) => item[1] === running)!;
      assert.ok(Object.keys(own[2] as object).length > 0, 'own prompt in full');
      assert.equal(JSON.stringify(own).includes('alice-secret'), false);
      assert.equal(JSON.stringify(asAlice).includes(bobPending), false, 'another key’s prompt id is never shown');
      const others = all.filter((item) => item[1] !== running);
      assert.equal(others.length, 1);
      const other = others[0]!;
      assert.deepEqual(other.slice(2), [{}, {}, []]);
      assert.equal(typeof other[0], 'number');
      assert.match(String(other[1]), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      const again = await queueOf(keys.alice);
      if (comfy.inFlight().some((item) => item.id === bobPending)) {
        assert.ok(
          [...again.queue_running, ...again.queue_pending].some((item) => item[1] === other[1]),
          'the same stand-in on the next poll',
        );
      }
      const asAdmin = await queueOf(keys.admin);
      assert.equal(JSON.stringify(asAdmin).includes('alice-secret'), false);
      assert.ok(JSON.stringify(asAdmin).includes('"private":true'));
      await waitForHistory(gateway.url, keys.bob, bobPending);
    });

    test('POST /interrupt: another key cannot stop a running prompt, by id or globally; the owner can', async () => {
      const promptId = await queuePrompt(gateway.url, keys.alice);
      await sleep(100);
      assert.equal((await send(gateway.url, '/api/interrupt', { method: 'POST', key: keys.bob, body: { prompt_id: promptId } })).status, 200);
      assert.equal((await send(gateway.url, '/api/interrupt', { method: 'POST', key: keys.bob })).status, 200);
      const survived = await waitForHistory(gateway.url, keys.alice, promptId);
      assert.equal((survived.status as { status_str: string }).status_str, 'success');

      const second = await queuePrompt(gateway.url, keys.alice);
      await sleep(100);
      assert.equal((await send(gateway.url, '/api/interrupt', { method: 'POST', key: keys.alice })).status, 200);
      const stopped = await waitForHistory(gateway.url, keys.alice, second);
      assert.equal((stopped.status as { status_str: string }).status_str, 'error');
    });

    test('POST /queue delete and clear touch only the caller’s pending prompts', async () => {
      const blocker = await queuePrompt(gateway.url, keys.admin);
      const alicePending = await queuePrompt(gateway.url, keys.alice);
      const bobPending = await queuePrompt(gateway.url, keys.bob);
      await send(gateway.url, '/api/queue', { method: 'POST', key: keys.bob, body: { delete: [alicePending] } });
      await send(gateway.url, '/api/queue', { method: 'POST', key: keys.bob, body: { clear: true } });
      const pending = (await queueOf(keys.admin)).queue_pending.map((item) => item[1]);
      assert.ok(pending.includes(alicePending), 'alice’s prompt is still queued');
      assert.equal(pending.includes(bobPending), false, 'bob cleared his own');
      await waitForHistory(gateway.url, keys.admin, blocker);
      await waitForHistory(gateway.url, keys.alice, alicePending);
    });

    test('POST /history delete and clear touch only the caller’s entries', async () => {
      const alicePrompt = await queuePrompt(gateway.url, keys.alice);
      const bobPrompt = await queuePrompt(gateway.url, keys.bob);
      await waitForHistory(gateway.url, keys.alice, alicePrompt);
      await waitForHistory(gateway.url, keys.bob, bobPrompt);
      await send(gateway.url, '/api/history', { method: 'POST', key: keys.bob, body: { delete: [alicePrompt] } });
      await send(gateway.url, '/api/history', { method: 'POST', key: keys.bob, body: { clear: true } });
      assert.ok((await send(gateway.url, `/api/history/${alicePrompt}`, { key: keys.alice })).json()[alicePrompt]);
      assert.deepEqual(Object.keys((await send(gateway.url, '/api/history', { key: keys.bob })).json()), []);
      assert.ok(Object.keys((await send(gateway.url, '/api/history', { key: keys.admin })).json()).includes(alicePrompt));
    });
  });
}

for (const interrupts of INTERRUPT_MODES) {
  test(`an interrupt whose prompt_id is empty, no string, not JSON or another key's in other case never reaches ComfyUI while another key's prompt runs (${interrupts} interrupts)`, async () => {
    const comfy = await startFakeComfyUI({ interrupts, stepDelayMs: 60 });
    const { gateway, keys } = await startWithKeys(comfy);
    try {
      const bobPrompt = await queuePrompt(gateway.url, keys.bob);
      await waitFor(() => comfy.started.includes(bobPrompt), 'bob’s prompt runs');
      // ComfyUI reads an empty or missing prompt_id as "stop whatever runs"; a release with global interrupts reads any so.
      for (const body of [
        { prompt_id: '' },
        { prompt_id: null },
        { prompt_id: 0 },
        { prompt_id: [bobPrompt] },
        { prompt_id: bobPrompt.toUpperCase() },
        'not json',
        {},
      ]) {
        const res = await send(gateway.url, '/api/interrupt', { method: 'POST', key: keys.alice, body });
        assert.equal(res.status, 200, JSON.stringify(body));
      }
      assert.equal(comfy.requests.filter((r) => r.url.endsWith('/interrupt')).length, 0, 'no interrupt reached ComfyUI');
      const entry = await waitForHistory(gateway.url, keys.bob, bobPrompt);
      assert.equal((entry.status as { status_str: string }).status_str, 'success', 'bob’s prompt ran to its end');
    } finally {
      await gateway.stop();
      await comfy.close();
    }
  });
}

describe('isolation of the jobs API of newer ComfyUI servers', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let keys: Keys;

  before(async () => {
    comfy = await startFakeComfyUI();
    ({ gateway, keys } = await startWithKeys(comfy));
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('a user key lists, reads and cancels only its own jobs', async () => {
    const alicePrompts = [await queuePrompt(gateway.url, keys.alice), await queuePrompt(gateway.url, keys.alice)];
    const bobPrompt = await queuePrompt(gateway.url, keys.bob);
    for (const id of alicePrompts) await waitForHistory(gateway.url, keys.alice, id);
    await waitForHistory(gateway.url, keys.bob, bobPrompt);

    const before = comfy.requests.length;
    const list = (await send(gateway.url, '/api/jobs', { key: keys.alice })).json<{ jobs: Array<{ id: string }>; pagination: { total: number } }>();
    assert.deepEqual(list.jobs.map((j) => j.id).sort(), [...alicePrompts].sort());
    // The list costs the key's own jobs: a one-job list (ComfyUI checks the parameters) and a lookup of each of its jobs.
    const asked = comfy.requests.slice(before).map((r) => r.url);
    assert.deepEqual(
      asked.filter((url) => !alicePrompts.some((id) => url === `/api/jobs/${id}`)),
      ['/api/jobs?limit=1&offset=0'],
    );
    assert.equal(asked.length, 3);
    assert.equal(list.pagination.total, 2);
    const page = (await send(gateway.url, '/api/jobs?offset=1&limit=1', { key: keys.alice })).json<{
      jobs: Array<{ id: string }>;
      pagination: { has_more: boolean };
    }>();
    assert.equal(page.jobs.length, 1);
    assert.equal(page.pagination.has_more, false);
    assert.equal((await send(gateway.url, `/api/jobs/${bobPrompt}`, { key: keys.alice })).status, 404);
    assert.equal((await send(gateway.url, `/api/jobs/${bobPrompt}`, { key: keys.bob })).status, 200);
    assert.deepEqual((await send(gateway.url, `/api/jobs/${bobPrompt}/cancel`, { method: 'POST', key: keys.alice })).json(), { cancelled: false });
    assert.deepEqual((await send(gateway.url, '/api/jobs/cancel', { method: 'POST', key: keys.alice, body: { job_ids: [bobPrompt] } })).json(), {
      cancelled: false,
    });
    const adminList = (await send(gateway.url, '/api/jobs', { key: keys.admin })).json<{ jobs: unknown[] }>();
    assert.equal(adminList.jobs.length, 3);
  });

  test('status, sort_by and sort_order are read as ComfyUI reads them: in any case, each status trimmed, empty ones skipped', async () => {
    const own = await queuePrompt(gateway.url, keys.alice);
    await waitForHistory(gateway.url, keys.alice, own);
    const ids = async (query: string): Promise<string[]> =>
      (await send(gateway.url, `/api/jobs${query}`, { key: keys.alice })).json<{ jobs: Array<{ id: string }> }>().jobs.map((j) => j.id);
    const all = await ids('');
    assert.ok(all.includes(own));
    // Every job of hers has completed.
    for (const query of ['?status=Completed,FAILED', '?status=', '?status=completed,,', '?sort_by=CREATED_AT&sort_order=Desc'])
      assert.deepEqual(await ids(query), all, query);
    assert.deepEqual(await ids('?sort_order=ASC'), [...all].reverse());
  });

  test('offset and limit are read as ComfyUI reads them (int() of the text, a negative offset as 0), for a user key as for an admin', async () => {
    const own = await queuePrompt(gateway.url, keys.alice);
    await waitForHistory(gateway.url, keys.alice, own);
    type Page = { pagination: { offset: number; limit: number | null } };
    const read = async (key: string, query: string): Promise<[number, Page['pagination'] | undefined]> => {
      const answer = await send(gateway.url, `/api/jobs?${query}`, { key });
      return [answer.status, answer.status === 200 ? answer.json<Page>().pagination : undefined];
    };
    const cases: Array<[string, number, Page['pagination'] | undefined]> = [
      ['offset=-3&limit=1', 200, { offset: 0, limit: 1 }],
      ['offset=%201%20&limit=%2B2', 200, { offset: 1, limit: 2 }],
      ['limit=1_0', 200, { offset: 0, limit: 10 }],
      ['limit=0', 400, undefined],
      ['limit=-1', 400, undefined],
      ['limit=2.0', 400, undefined],
      ['limit=1e1', 400, undefined],
      ['limit=0x10', 400, undefined],
      ['limit=', 400, undefined],
      ['offset=1.5', 400, undefined],
      ['offset=', 400, undefined],
    ];
    for (const [query, status, pagination] of cases) {
      const [aliceStatus, alicePage] = await read(keys.alice, query);
      assert.equal(aliceStatus, status, `${query} for a user key`);
      if (pagination) assert.deepEqual({ offset: alicePage!.offset, limit: alicePage!.limit }, pagination, query);
      // An admin's list is ComfyUI's own answer: the user key's reading agrees with it.
      assert.equal((await read(keys.admin, query))[0], status, `${query} for an admin`);
    }
  });

  test("a list filtered and ordered (workflow_id, status, sort_by, sort_order) neither lists nor counts another key's jobs of that workflow", async () => {
    const fromTemplate = { extra_data: { extra_pnginfo: { workflow: { id: 'shared-template' } } } };
    const bobPrompt = await queuePrompt(gateway.url, keys.bob, fromTemplate);
    const alicePrompt = await queuePrompt(gateway.url, keys.alice, fromTemplate);
    await waitForHistory(gateway.url, keys.bob, bobPrompt);
    await waitForHistory(gateway.url, keys.alice, alicePrompt);
    type JobList = { jobs: Array<{ id: string; workflow_id?: string }>; pagination: { total: number; has_more: boolean } };
    const everyone = (await send(gateway.url, '/api/jobs?workflow_id=shared-template', { key: keys.admin })).json<JobList>();
    assert.deepEqual(everyone.jobs.map((j) => j.id).sort(), [alicePrompt, bobPrompt].sort(), 'ComfyUI lists both keys’ jobs of the workflow');
    for (const query of [
      'workflow_id=shared-template',
      'workflow_id=shared-template&status=completed&sort_by=execution_duration&sort_order=asc',
      'workflow_id=shared-template&offset=0&limit=1&sort_by=created_at&sort_order=desc',
    ]) {
      const list = (await send(gateway.url, `/api/jobs?${query}`, { key: keys.alice })).json<JobList>();
      assert.deepEqual(
        list.jobs.map((j) => [j.id, j.workflow_id]),
        [[alicePrompt, 'shared-template']],
        query,
      );
      assert.equal(list.pagination.total, 1, `${query}: only her own job counts`);
      assert.equal(list.pagination.has_more, false, query);
    }
  });
});

describe('the jobs API on a ComfyUI release without it', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let keys: Keys;

  before(async () => {
    comfy = await startFakeComfyUI({ jobsApi: false, stepDelayMs: 30 });
    ({ gateway, keys } = await startWithKeys(comfy));
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test("every key gets ComfyUI's 404, and no key cancels another's job", async () => {
    const alicePrompt = await queuePrompt(gateway.url, keys.alice);
    const bobPrompt = await queuePrompt(gateway.url, keys.bob);
    for (const [key, target] of [
      [keys.alice, '/api/jobs'],
      [keys.admin, '/api/jobs'],
      [keys.alice, `/api/jobs/${alicePrompt}`],
      [keys.alice, `/api/jobs/${bobPrompt}`],
    ] as const) {
      const res = await send(gateway.url, target, { key });
      assert.equal(res.status, 404, `${target}: ${res.text}`);
      assert.equal(res.text.includes(bobPrompt), false);
    }
    await send(gateway.url, `/api/jobs/${bobPrompt}/cancel`, { method: 'POST', key: keys.alice });
    await send(gateway.url, '/api/jobs/cancel', { method: 'POST', key: keys.alice, body: { job_ids: [bobPrompt] } });
    await waitForHistory(gateway.url, keys.alice, alicePrompt);
    const bobs = await waitForHistory(gateway.url, keys.bob, bobPrompt);
    assert.equal((bobs.status as { status_str: string }).status_str, 'success', "bob's prompt ran to its end");
  });
});

for (const promptIds of PROMPT_ID_MODES) {
  describe(`isolation on the WebSocket (ComfyUI that ${promptIds} client prompt ids)`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let keys: Keys;
    let wsBase: string;

    before(async () => {
      comfy = await startFakeComfyUI({ promptIds, previewFrames: true });
      ({ gateway, keys } = await startWithKeys(comfy));
      wsBase = `ws://127.0.0.1:${gateway.port}`;
    });
    after(async () => {
      await gateway.stop();
      await comfy.close();
    });

    test('a clientId belongs to the first key that uses it', async () => {
      const alice = await openCollectingSocket(`${wsBase}/ws?clientId=alice-tab`, { 'x-api-key': keys.alice });
      await assert.rejects(openCollectingSocket(`${wsBase}/ws?clientId=alice-tab`, { 'x-api-key': keys.bob }), { status: 403 });
      await assert.rejects(openCollectingSocket(`${wsBase}/api/ws?clientId=alice-tab`, { 'x-api-key': keys.bob }), { status: 403 });
      const hijack = await send(gateway.url, '/api/prompt', { method: 'POST', key: keys.bob, body: { prompt: SAVE_WORKFLOW, client_id: 'alice-tab' } });
      assert.equal(hijack.status, 403);
      assert.equal(hijack.json().error_code, 'FORBIDDEN');
      await alice.close();
    });

    test('events and previews of other keys’ prompts never reach a socket, broadcasts included', async () => {
      const alice = await openCollectingSocket(`${wsBase}/ws?clientId=alice-2`, { 'x-api-key': keys.alice });
      const bob = await openCollectingSocket(`${wsBase}/ws?clientId=bob-2`, { 'x-api-key': keys.bob });
      bob.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
      const bobTargeted = await queuePrompt(gateway.url, keys.bob, { client_id: 'bob-2' });
      const bobBroadcast = await queuePrompt(gateway.url, keys.bob);
      const alicePrompt = await queuePrompt(gateway.url, keys.alice, { client_id: 'alice-2' });
      await waitForHistory(gateway.url, keys.alice, alicePrompt);
      await waitForHistory(gateway.url, keys.bob, bobBroadcast);
      await sleep(100);

      const promptIdsSeen = (socket: typeof alice) => new Set(socket.texts.map((m) => m.data?.prompt_id).filter(Boolean));
      assert.deepEqual([...promptIdsSeen(alice)], [alicePrompt]);
      // ComfyUI's opening message, from the gateway itself: a user key's socket has none to ComfyUI.
      const [opening] = alice.texts;
      assert.equal(opening?.type, 'status');
      assert.equal(opening?.data?.sid, 'alice-2');
      assert.equal(typeof (opening?.data?.status as { exec_info?: { queue_remaining?: unknown } } | undefined)?.exec_info?.queue_remaining, 'number');
      assert.ok(!comfy.requests.some((r) => r.url.includes('clientId=alice-2')), 'no ComfyUI socket was opened for it');
      assert.ok(alice.texts.some((m) => m.type === 'executed'));
      assert.ok(
        alice.texts.some((m) => m.type === 'status'),
        'status broadcasts pass',
      );
      assert.equal(promptIdsSeen(bob).has(alicePrompt), false);
      assert.ok(promptIdsSeen(bob).has(bobTargeted));

      assert.ok(alice.binaries.length >= 1, 'alice gets the preview of her own prompt');
      for (const frame of alice.binaries) assert.equal(frame.readUInt32BE(0), 1, 'as a plain preview, since she did not ask for metadata');
      assert.ok(bob.binaries.length >= 1);
      for (const frame of bob.binaries) {
        assert.equal(frame.readUInt32BE(0), 4);
        const metadata = JSON.parse(frame.subarray(8, 8 + frame.readUInt32BE(4)).toString()) as { prompt_id: string };
        assert.notEqual(metadata.prompt_id, alicePrompt);
      }
      assert.ok(
        bob.texts.some((m) => m.type === 'feature_flags'),
        'bob’s feature_flags got an answer',
      );
      await alice.close();
      await bob.close();
    });

    test('an admin socket sees every event', async () => {
      const admin = await openCollectingSocket(`${wsBase}/ws?clientId=admin-tab`, { 'x-api-key': keys.admin });
      const broadcast = await queuePrompt(gateway.url, keys.bob);
      await waitForHistory(gateway.url, keys.bob, broadcast);
      await sleep(100);
      assert.ok(
        admin.texts.some((m) => m.data?.prompt_id === broadcast),
        'the admin sees a broadcast of bob’s prompt',
      );
      await admin.close();
    });
  });
}

describe('each key its own ComfyUI user (--multi-user upstream)', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let keys: Keys;

  before(async () => {
    comfy = await startFakeComfyUI({ multiUser: true });
    ({ gateway, keys } = await startWithKeys(comfy));
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('requests that arrive together ask ComfyUI whether it runs with --multi-user once', async () => {
    await backendSettled(gateway, keys.admin);
    const askedBefore = comfy.requests.filter((r) => r.method === 'GET' && r.url === '/api/users').length;
    const answers = await Promise.all(Array.from({ length: 20 }, () => send(gateway.url, '/api/settings', { key: keys.alice })));
    assert.deepEqual(
      answers.map((answer) => answer.status),
      Array.from({ length: 20 }, () => 200),
    );
    const asked = comfy.requests.filter((r) => r.method === 'GET' && r.url === '/api/users').length - askedBefore;
    assert.equal(asked, 1, 'one GET /api/users for all twenty requests');
    assert.ok(
      comfy.requests.filter((r) => r.url === '/api/settings').every((r) => typeof r.headers['comfy-user'] === 'string'),
      'every request went on as the key’s ComfyUI user',
    );
  });

  test('settings and saved workflows are per key; a client’s Comfy-User is ignored', async () => {
    const saved = await send(gateway.url, '/api/userdata/workflows%2Fsecret.json', { method: 'POST', key: keys.alice, body: '{"mine":true}' });
    assert.equal(saved.status, 200, saved.text);
    assert.equal((await send(gateway.url, '/api/userdata/workflows%2Fsecret.json', { key: keys.alice })).text, '{"mine":true}');
    assert.equal((await send(gateway.url, '/api/userdata/workflows%2Fsecret.json', { key: keys.bob })).status, 404);
    const aliceUser = comfy.requests.filter((r) => r.url.startsWith('/api/userdata/')).at(0)!.headers['comfy-user'];
    const spoofed = await send(gateway.url, '/api/userdata/workflows%2Fsecret.json', { key: keys.bob, headers: { 'comfy-user': String(aliceUser) } });
    assert.equal(spoofed.status, 404, 'bob cannot claim to be alice’s ComfyUI user');
    assert.equal((await send(gateway.url, '/api/settings', { method: 'POST', key: keys.bob, body: { 'Comfy.Theme': 'light' } })).status, 200);
    assert.deepEqual((await send(gateway.url, '/api/settings', { key: keys.alice })).json(), {});
  });

  test('a key moves its own saved files, and neither out of its user nor from another key’s', async () => {
    const save = (key: string, file: string, body: string) => send(gateway.url, `/api/userdata/${file}`, { method: 'POST', key, body });
    assert.equal((await save(keys.alice, 'workflows%2Fdraft.json', '{"draft":1}')).status, 200);
    assert.equal((await save(keys.bob, 'workflows%2Fbobs.json', '{"bob":1}')).status, 200);
    const moved = await send(gateway.url, '/api/userdata/workflows%2Fdraft.json/move/workflows%2Ffinal.json', { method: 'POST', key: keys.alice });
    assert.equal(moved.status, 200, moved.text);
    assert.equal((await send(gateway.url, '/api/userdata/workflows%2Ffinal.json', { key: keys.alice })).text, '{"draft":1}');
    const bobUser = [...comfy.users.entries()].find(([, name]) => name.startsWith('bob ('))![0];
    for (const [source, dest] of [
      ['workflows%2Ffinal.json', `..%2F${bobUser}%2Fworkflows%2Fstolen.json`],
      ['workflows%2Ffinal.json', '..%2F..%2Foutside.json'],
      [`..%2F${bobUser}%2Fworkflows%2Fbobs.json`, 'workflows%2Fbobs.json'],
      [`%2E%2E%2F${bobUser}%2Fworkflows%2Fbobs.json`, 'workflows%2Fbobs.json'],
    ]) {
      const answer = await send(gateway.url, `/api/userdata/${source}/move/${dest}`, { method: 'POST', key: keys.alice });
      assert.notEqual(answer.status, 200, `${source} -> ${dest}: ${answer.text}`);
    }
    assert.equal((await send(gateway.url, '/api/userdata/workflows%2Fbobs.json', { key: keys.bob })).text, '{"bob":1}', 'bob’s file stays his');
    assert.equal((await send(gateway.url, '/api/userdata/workflows%2Fstolen.json', { key: keys.bob })).status, 404, 'nothing was moved into bob’s user');
    assert.equal((await send(gateway.url, '/api/userdata/workflows%2Ffinal.json', { key: keys.alice })).status, 200, 'alice’s file stayed where it was');
  });

  test('/users shows a user key only its own ComfyUI user', async () => {
    const users = (await send(gateway.url, '/api/users', { key: keys.alice })).json<{ storage: string; users: Record<string, string> }>();
    assert.equal(users.storage, 'server');
    assert.equal(Object.keys(users.users).length, 1);
    assert.match(Object.values(users.users)[0]!, /^alice \(/);
    assert.equal(comfy.users.size, 2, 'one ComfyUI user per key that used it');
  });

  test('a key whose name starts with __ (the prefix of ComfyUI’s system users) gets a ComfyUI user all the same', async () => {
    const bot = (await createKey(gateway.url, { name: '__bot', rate_limit: 1000 }, keys.admin)).api_key;
    const saved = await send(gateway.url, '/api/settings', { method: 'POST', key: bot, body: { 'Comfy.Theme': 'dark' } });
    assert.equal(saved.status, 200, saved.text);
    assert.deepEqual((await send(gateway.url, '/api/settings', { key: bot })).json(), { 'Comfy.Theme': 'dark' });
    assert.ok(
      [...comfy.users.values()].some((name) => /^_bot \(/.test(name)),
      [...comfy.users.values()].join(', '),
    );
  });
});

describe('whether ComfyUI runs with --multi-user, asked on a key’s request', () => {
  test('is asked without the key’s own headers: a header ComfyUI refuses does not make every key read-only', async () => {
    const comfy = await startFakeComfyUI({ multiUser: true });
    const { gateway, keys } = await startWithKeys(comfy);
    try {
      await backendSettled(gateway, keys.admin);
      // aiohttp refuses a header value over 8190 bytes with 400; the gateway passes it on.
      await send(gateway.url, '/api/settings', { key: keys.alice, headers: { 'x-padding': 'a'.repeat(9000) } });
      const saved = await send(gateway.url, '/api/settings', { method: 'POST', key: keys.bob, body: { 'Comfy.Theme': 'light' } });
      assert.equal(saved.status, 200, saved.text);
      assert.deepEqual((await send(gateway.url, '/api/settings', { key: keys.bob })).json(), { 'Comfy.Theme': 'light' });
    } finally {
      await gateway.stop();
      await comfy.close();
    }
  });
});

for (const userdataV2 of [true, false]) {
  describe(`saved workflows listed by /v2/userdata under --multi-user (a ComfyUI ${userdataV2 ? 'with' : 'without'} it)`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let keys: Keys;

    before(async () => {
      comfy = await startFakeComfyUI({ multiUser: true, userdataV2 });
      ({ gateway, keys } = await startWithKeys(comfy));
    });
    after(async () => {
      await gateway.stop();
      await comfy.close();
    });

    test("a key lists only its own ComfyUI user's files, whatever path or Comfy-User it sends", async () => {
      const saved = await send(gateway.url, '/api/userdata/workflows%2Fsecret.json', { method: 'POST', key: keys.alice, body: '{"mine":true}' });
      assert.equal(saved.status, 200, saved.text);
      const aliceUser = String(comfy.requests.find((r) => r.url.startsWith('/api/userdata/'))!.headers['comfy-user']);
      const own = await send(gateway.url, '/api/v2/userdata?path=workflows', { key: keys.alice });
      if (!userdataV2) {
        assert.equal(own.status, 404, "ComfyUI's answer to a route it does not have");
      } else {
        assert.deepEqual(
          own.json<Array<{ path: string }>>().map((item) => item.path),
          ['workflows/secret.json'],
        );
      }
      // Bob has saved nothing: his root is empty, a folder of alice's is not found in it, and climbing out of it is refused.
      const expected: Array<[string, number]> = [
        ['/api/v2/userdata', 200],
        ['/api/v2/userdata?path=workflows', 404],
        [`/api/v2/userdata?path=..%2F${aliceUser}%2Fworkflows`, 400],
      ];
      for (const [target, status] of expected) {
        const res = await send(gateway.url, target, { key: keys.bob, headers: { 'comfy-user': aliceUser } });
        assert.equal(res.status, userdataV2 ? status : 404, `${target}: ${res.text}`);
        assert.equal(res.text.includes('secret'), false, `${target}: ${res.text}`);
      }
    });
  });
}

/** Waits until the gateway has opened its event socket to a restarted ComfyUI. */
async function eventSocketOpenedTo(comfy: FakeComfyUI): Promise<void> {
  for (const deadline = Date.now() + 15_000; !comfy.requests.some((r) => r.url.startsWith('/ws')); await sleep(50)) {
    assert.ok(Date.now() < deadline, 'the gateway reconnects its event socket to the restarted ComfyUI');
  }
}

describe('a ComfyUI restarted without --multi-user', () => {
  test('before the gateway reconnects, user keys neither read nor write the operator’s user', async () => {
    const before = await startFakeComfyUI({ multiUser: true });
    const { gateway, keys } = await startWithKeys(before);
    let after: FakeComfyUI | null = null;
    try {
      await backendSettled(gateway, keys.admin);
      assert.equal((await send(gateway.url, '/api/settings', { key: keys.alice })).status, 200, 'the gateway knows ComfyUI runs with --multi-user');

      await before.close();
      // The event socket's next tries fail, so it stays closed a while after ComfyUI is back (a real ComfyUI takes seconds to start).
      await sleep(1000);
      after = await startFakeComfyUI({ port: before.port });
      assert.equal((await send(after.url, '/api/settings', { method: 'POST', body: { 'Operator.Secret': 'op-value' } })).status, 200);
      const asked = (): number => after!.requests.filter((r) => r.url === '/api/users').length;
      assert.deepEqual((await send(gateway.url, '/api/settings', { key: keys.alice })).json(), {}, 'the operator’s settings are not read for a user key');
      assert.equal(asked(), 1, 'one answer decides both the user the request goes as and what it may do');
      const write = await send(gateway.url, '/api/settings/Comfy.Theme', { method: 'POST', key: keys.alice, body: 'dark' });
      assert.equal(write.status, 403, write.text);
      assert.equal((await send(after.url, '/api/settings/Comfy.Theme')).json(), null, 'the operator’s settings are unchanged');
    } finally {
      await gateway.stop();
      await after?.close();
    }
  });
});

describe('a ComfyUI restarted with --multi-user', () => {
  test('is asked again once the gateway reconnects: keys do not share its default user meanwhile', async () => {
    const before = await startFakeComfyUI();
    const { gateway, keys } = await startWithKeys(before);
    let after: FakeComfyUI | null = null;
    try {
      assert.deepEqual((await send(gateway.url, '/api/settings', { key: keys.alice })).json(), {});
      assert.equal(
        before.requests.some((r) => r.url === '/api/settings'),
        false,
        'single-user: the operator’s settings are not read for a user key',
      );

      await before.close();
      after = await startFakeComfyUI({ multiUser: true, port: before.port });
      await eventSocketOpenedTo(after);
      await backendSettled(gateway, keys.admin);
      assert.equal((await send(gateway.url, '/api/settings', { key: keys.alice })).status, 200);
      const sentAs = after.requests.filter((r) => r.url === '/api/settings').at(-1)!.headers['comfy-user'];
      assert.equal(typeof sentAs, 'string', 'the request goes as the key’s own ComfyUI user, not as default');
      assert.match(after.users.get(String(sentAs)) ?? '', /^alice \(/, 'a user of its own, created on the restarted ComfyUI');
    } finally {
      await gateway.stop();
      await after?.close();
    }
  });
});

describe('a ComfyUI restarted with --multi-user and a users.json of its own', () => {
  test('a key whose remembered user ComfyUI no longer lists gets a new one, not an error', async () => {
    const before = await startFakeComfyUI({ multiUser: true });
    const { gateway, keys } = await startWithKeys(before);
    let after: FakeComfyUI | null = null;
    try {
      await backendSettled(gateway, keys.admin);
      assert.equal((await send(gateway.url, '/api/settings', { key: keys.alice })).status, 200);
      const firstUser = before.requests.filter((r) => r.url === '/api/settings').at(-1)!.headers['comfy-user'];

      await before.close();
      after = await startFakeComfyUI({ multiUser: true, port: before.port });
      await eventSocketOpenedTo(after);
      await backendSettled(gateway, keys.admin);
      const read = await send(gateway.url, '/api/settings', { key: keys.alice });
      assert.equal(read.status, 200, read.text);
      assert.deepEqual(read.json(), {}, 'the new user has saved nothing');
      const sentAs = after.requests.filter((r) => r.url === '/api/settings').at(-1)!.headers['comfy-user'];
      assert.notEqual(sentAs, firstUser);
      assert.match(after.users.get(String(sentAs)) ?? '', /^alice \(/, 'a user of its own, created on the restarted ComfyUI');
      assert.equal((await send(gateway.url, '/api/settings', { key: keys.alice })).status, 200, 'and kept');
      assert.equal(after.users.size, 1, 'created once');
    } finally {
      await gateway.stop();
      await after?.close();
    }
  });
});
