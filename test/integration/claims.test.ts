// Bounded ids and claims: oversized or unprintable ids are refused and stored nowhere, refused prompts leave no claim (but one another prompt of the key uses), /view misses cost a fixed amount, uploads stay in input and off others' files.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket, queuePrompt, SAVE_WORKFLOW, waitForHistory, type CollectingSocket } from '../helpers/comfy-client.js';
import { PROMPT_ID_FORMATS, startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { multipart, type FormPart } from '../helpers/multipart.js';
import { waitFor } from '../helpers/wait-for.js';

/** A prompt the fake ComfyUI refuses with 400 (a node class it does not know). */
const REFUSED_WORKFLOW = { '1': { class_type: 'NoSuchNode', inputs: {} } };

describe('bounded ids and claims', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;
  let alice: string;
  let bob: string;

  const prompt = (key: string, body: Record<string, unknown>): Promise<TestResponse> => send(gateway.url, '/api/prompt', { method: 'POST', key, body });
  const upload = (key: string, parts: FormPart[], route = '/api/upload/image'): Promise<TestResponse> =>
    send(gateway.url, route, { method: 'POST', key, ...multipart(parts) });
  /** The ownership and job files as they are on disk: their sizes say whether anything was written. */
  const ownershipBytes = async (): Promise<number> => {
    const sizes = await Promise.all(
      ['ownership.json', 'ownership.journal', 'ownership.journal.next', 'jobs.json', 'jobs.journal', 'jobs.journal.next'].map((name) =>
        stat(join(gateway.userDirectory, name)).then(
          (s) => s.size,
          () => 0,
        ),
      ),
    );
    return sizes.reduce((sum, size) => sum + size, 0);
  };
  const upstreamPrompts = (): number => comfy.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/prompt')).length;

  before(async () => {
    comfy = await startFakeComfyUI();
    // Every prompt goes to ComfyUI at once (none is held), so ComfyUI's refusals come back as the answer.
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '10000'] });
    admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
    alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 100000 }, admin)).api_key;
    bob = (await createKey(gateway.url, { name: 'bob', rate_limit: 100000 }, admin)).api_key;
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('ids over 200 bytes or with control characters are refused with 400, naming the field, and stored nowhere', async () => {
    // A finished prompt: its job and the files it made are written before the count starts.
    await waitForHistory(gateway.url, alice, await queuePrompt(gateway.url, alice));
    await sleep(100);
    const [bytesBefore, promptsBefore] = [await ownershipBytes(), upstreamPrompts()];
    const refused: Array<[string, Record<string, unknown>]> = [
      ['prompt_id', { prompt: SAVE_WORKFLOW, prompt_id: 'p'.repeat(3 * 1024 * 1024) }],
      ['prompt_id', { prompt: SAVE_WORKFLOW, prompt_id: 'p'.repeat(201) }],
      ['prompt_id', { prompt: SAVE_WORKFLOW, prompt_id: 'é'.repeat(101) }],
      ['prompt_id', { prompt: SAVE_WORKFLOW, prompt_id: 'abc\u0000def' }],
      ['prompt_id', { prompt: SAVE_WORKFLOW, prompt_id: 'abc\ndef' }],
      ['prompt_id', { prompt: SAVE_WORKFLOW, prompt_id: 12345 }],
      ['client_id', { prompt: SAVE_WORKFLOW, client_id: 'c'.repeat(201) }],
      ['client_id', { prompt: SAVE_WORKFLOW, client_id: 'c\u0007' }],
      ['input image', { prompt: { ...SAVE_WORKFLOW, '1': { class_type: 'LoadImage', inputs: { image: `${'i'.repeat(201)}.png` } } } }],
    ];
    for (const [field, body] of refused) {
      const res = await prompt(alice, body);
      assert.equal(res.status, 400, `${field}: ${res.text.slice(0, 200)}`);
      assert.equal(res.json().error_code, 'INVALID_REQUEST');
      assert.ok((res.json().error as string).includes(field.split(' ')[0]!), `the message names ${field}`);
    }
    assert.equal(upstreamPrompts(), promptsBefore, 'ComfyUI received none of them');
    for (const target of [
      `/api/view?filename=${'f'.repeat(201)}.png`,
      `/api/view?filename=a.png&subfolder=${'s'.repeat(201)}`,
      '/api/view?filename=a%00.png',
    ]) {
      const res = await send(gateway.url, target, { key: alice });
      assert.equal(res.status, 400, target.slice(0, 60));
      assert.equal(res.json().error_code, 'INVALID_REQUEST');
    }
    assert.equal((await send(gateway.url, '/api/queue', { key: alice, headers: { 'comfy-user': 'u'.repeat(201) } })).status, 400, 'Comfy-User');
    await sleep(100);
    assert.equal(await ownershipBytes(), bytesBefore, 'the ownership and job files did not grow');
    await prompt(alice, { prompt: SAVE_WORKFLOW, prompt_id: 'p'.repeat(200) });
    assert.equal(upstreamPrompts(), promptsBefore + 1, '200 bytes are passed on to ComfyUI');
  });

  test('a clientId over 200 bytes or with a control character on /ws is refused with 400', async () => {
    for (const clientId of ['c'.repeat(201), 'abc%07def']) {
      await assert.rejects(openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=${clientId}`, { 'x-api-key': alice }), { status: 400 });
    }
    const socket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=${'c'.repeat(200)}`, { 'x-api-key': alice });
    await socket.close();
  });

  test('prompts ComfyUI refuses leave no claim: their prompt_id and client_id are free for any key', async () => {
    const ids = Array.from({ length: 20 }, () => randomUUID());
    for (let i = 0; i < 20; i += 1) {
      const res = await prompt(alice, { prompt: REFUSED_WORKFLOW, prompt_id: ids[i], client_id: `refused-client-${i}` });
      assert.equal(res.status, 400, 'ComfyUI refuses it');
      assert.equal(res.json().error_code, undefined, "ComfyUI's own answer is relayed");
    }
    for (let i = 0; i < 20; i += 1) {
      const res = await prompt(bob, { prompt: SAVE_WORKFLOW, prompt_id: ids[i], client_id: `refused-client-${i}` });
      assert.equal(res.status, 200, `id ${i} is free: ${res.text}`);
    }
  });

  test("a flood of refused prompts neither grows the claims nor takes another key's prompt or clientId", async () => {
    const clientId = 'bob-socket';
    const socket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=${clientId}`, { 'x-api-key': bob });
    const bobPrompt = await queuePrompt(gateway.url, bob, { client_id: clientId });
    const ids = Array.from({ length: 300 }, () => randomUUID());
    for (let i = 0; i < 300; i += 1) {
      const res = await prompt(alice, { prompt: REFUSED_WORKFLOW, prompt_id: ids[i], client_id: `flood-client-${i}` });
      assert.equal(res.status, 400);
    }
    // Another key's refused prompt reaches ComfyUI (400) only if the ids are free; a claim held by alice would be 403.
    for (let i = 0; i < 300; i += 1) {
      const res = await prompt(bob, { prompt: REFUSED_WORKFLOW, prompt_id: ids[i], client_id: `flood-client-${i}` });
      assert.equal(res.status, 400, `flood ${i} left no claim`);
    }
    const taken = await prompt(alice, { prompt: SAVE_WORKFLOW, prompt_id: bobPrompt });
    assert.equal(taken.status, 403, "bob's prompt is still bob's");
    assert.equal((await prompt(alice, { prompt: SAVE_WORKFLOW, client_id: clientId })).status, 403, "bob's clientId is still bob's");
    await assert.rejects(openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=${clientId}`, { 'x-api-key': alice }), { status: 403 });
    await socket.close();
  });

  test('a /view of a file that is not the key’s looks up at most 8 of its prompts', async () => {
    const key = (await createKey(gateway.url, { name: 'many prompts', rate_limit: 100000 }, admin)).api_key;
    const ids: string[] = [];
    for (let i = 0; i < 20; i += 1) ids.push(await queuePrompt(gateway.url, key));
    for (let i = 0; i < 400 && !ids.every((id) => comfy.history.has(id)); i += 1) await sleep(25);
    assert.ok(
      ids.every((id) => comfy.history.has(id)),
      'all 20 prompts ran',
    );
    const before = comfy.requests.length;
    const miss = await send(gateway.url, '/api/view?filename=not-mine.png&type=output', { key });
    assert.equal(miss.status, 404);
    const lookups = comfy.requests.slice(before).filter((r) => r.url.includes('/history/'));
    assert.ok(lookups.length <= 8, `${lookups.length} history lookups`);
    assert.ok(comfy.requests.length - before <= 9, `${comfy.requests.length - before} upstream requests`);
  });

  test('user keys upload only to input: type=output or type=temp is refused with 403 and nothing is stored', async () => {
    for (const type of ['output', 'temp', 'elsewhere']) {
      for (const typeFirst of [true, false]) {
        const filename = `sneaky-${type}-${typeFirst}.png`;
        const image = { name: 'image', filename, value: 'PNGDATA' };
        const res = await upload(alice, typeFirst ? [{ name: 'type', value: type }, image] : [image, { name: 'type', value: type }]);
        assert.equal(res.status, 403, `${type}: ${res.text}`);
        assert.equal(res.json().error_code, 'FORBIDDEN');
        assert.match(res.json().error as string, /input/);
        for (const dir of [comfy.outputDir, comfy.tempDir, comfy.inputDir])
          assert.equal((await readdir(dir)).includes(filename), false, `${filename} is not in ${dir}`);
      }
    }
    const own = await upload(alice, [
      { name: 'image', filename: 'typed-input.png', value: 'PNGDATA' },
      { name: 'type', value: 'input' },
    ]);
    assert.equal(own.status, 200, own.text);
  });

  test("no overwriting another key's upload; one's own may be overwritten", async () => {
    const first = await upload(alice, [
      { name: 'image', filename: 'shared-name.png', value: 'ALICE' },
      { name: 'subfolder', value: 'pics' },
    ]);
    assert.equal(first.status, 200, first.text);
    for (const overwrite of ['true', '1']) {
      const res = await upload(bob, [
        { name: 'image', filename: 'shared-name.png', value: 'BOB' },
        { name: 'subfolder', value: 'pics' },
        { name: 'overwrite', value: overwrite },
      ]);
      assert.equal(res.status, 403, res.text);
      assert.equal(res.json().error_code, 'FORBIDDEN');
    }
    const dotted = await upload(bob, [
      { name: 'overwrite', value: 'true' },
      { name: 'subfolder', value: 'x/../pics' },
      { name: 'image', filename: 'shared-name.png', value: 'BOB' },
    ]);
    assert.equal(dotted.status, 400, 'a folder spelled with .. is refused outright');
    assert.equal(dotted.json().error_code, 'INVALID_REQUEST');
    assert.equal(await readFile(join(comfy.inputDir, 'pics', 'shared-name.png'), 'utf8'), 'ALICE');
    const mine = await upload(alice, [
      { name: 'image', filename: 'shared-name.png', value: 'ALICE 2' },
      { name: 'subfolder', value: 'pics' },
      { name: 'overwrite', value: 'true' },
    ]);
    assert.equal(mine.status, 200, mine.text);
    assert.equal(await readFile(join(comfy.inputDir, 'pics', 'shared-name.png'), 'utf8'), 'ALICE 2');
    const renamed = await upload(bob, [
      { name: 'image', filename: 'shared-name.png', value: 'BOB' },
      { name: 'subfolder', value: 'pics' },
    ]);
    assert.equal(renamed.status, 200, 'without overwrite ComfyUI picks another name');
    assert.notEqual(renamed.json().name, 'shared-name.png');
  });

  test("another key's upload in a subfolder is its file however the folder is spelt: as a subfolder, in the name, with . or doubled slashes", async () => {
    const spellings: Array<{ filename: string; subfolder?: string }> = [
      { filename: 'shared-name.png', subfolder: 'pics/' },
      { filename: 'shared-name.png', subfolder: './pics' },
      { filename: 'shared-name.png', subfolder: 'pics//' },
      { filename: 'shared-name.png', subfolder: 'pics/.' },
      { filename: 'pics/shared-name.png' },
      { filename: 'pics/shared-name.png', subfolder: '.' },
      { filename: 'shared-name.png', subfolder: 'pics//./' },
    ];
    for (const { filename, subfolder } of spellings) {
      const label = JSON.stringify({ filename, subfolder });
      const parts: FormPart[] = [
        { name: 'image', filename, value: 'BOB' },
        { name: 'overwrite', value: 'true' },
      ];
      if (subfolder !== undefined) parts.push({ name: 'subfolder', value: subfolder });
      const res = await upload(bob, parts);
      assert.equal(res.status, 403, `upload ${label}: ${res.text}`);
      const query = new URLSearchParams({ filename: posix.basename(filename), subfolder: posix.join(subfolder ?? '', posix.dirname(filename)), type: 'input' });
      const viewed = await send(gateway.url, `/api/view?${query}`, { key: bob });
      assert.equal(viewed.status, 404, `view ${label}`);
      const image = subfolder === undefined ? filename : `${subfolder.replace(/\/*$/, '')}/${filename}`;
      const loaded = await prompt(bob, { prompt: { '1': { class_type: 'LoadImage', inputs: { image } }, ...SAVE_WORKFLOW } });
      assert.equal(loaded.status, 403, `LoadImage ${JSON.stringify(image)}: ${loaded.text}`);
    }
    assert.equal(await readFile(join(comfy.inputDir, 'pics', 'shared-name.png'), 'utf8'), 'ALICE 2');
  });

  test('a mask over an image that is not the key’s is refused', async () => {
    const ref = JSON.stringify({ filename: 'shared-name.png', subfolder: 'pics', type: 'input' });
    const parts = (key: string): FormPart[] => [
      { name: 'image', filename: `mask-${key.slice(-4)}.png`, value: 'MASK' },
      { name: 'original_ref', value: ref },
    ];
    const res = await upload(bob, parts(bob), '/api/upload/mask');
    assert.equal(res.status, 403, res.text);
  });

  test('an upload form that could be read two ways is refused with 400', async () => {
    const cases: FormPart[][] = [
      [
        { name: 'image', filename: 'x.png', value: 'PNG' },
        { name: 'type', value: 'b3V0cHV0', headers: ['Content-Transfer-Encoding: base64'] },
      ],
      [{ name: 'image', filename: 'x.png', value: 'PNG', headers: ['Content-Length: 1'] }],
      [
        { name: 'image', filename: 'x.png', value: 'PNG' },
        { name: "type\"; name*=utf-8''type", value: 'output' },
      ],
    ];
    for (const parts of cases) {
      const res = await upload(alice, parts);
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json().error_code, 'INVALID_REQUEST');
    }
    const plain = await send(gateway.url, '/api/upload/image', {
      method: 'POST',
      key: alice,
      body: 'type=output',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(plain.status, 400);
  });
});

for (const promptIdFormat of PROMPT_ID_FORMATS) {
  describe(`a client's own prompt_id (ComfyUI that takes ${promptIdFormat === 'uuid' ? 'only a UUID in canonical form' : 'any'})`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let alice: string;
    let bob: string;

    before(async () => {
      ({ comfy, gateway, alice, bob } = await startWithKeys(await startFakeComfyUI({ promptIdFormat })));
    });
    after(async () => {
      await gateway.stop();
      await comfy.close();
    });

    test("is passed on as it is: a refusal for its form is ComfyUI's answer and leaves no job and no claim", async () => {
      for (const [i, id] of ['p'.repeat(200), 'my-job', randomUUID().toUpperCase()].entries()) {
        const clientId = `own-id-client-${i}`;
        const res = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt: SAVE_WORKFLOW, prompt_id: id, client_id: clientId } });
        if (promptIdFormat === 'any') {
          assert.equal(res.status, 200, res.text);
          assert.equal(res.json<{ prompt_id: string }>().prompt_id, id);
          await waitForHistory(gateway.url, alice, id);
          continue;
        }
        assert.equal(res.status, 400, res.text);
        assert.equal(res.json<{ error: { type: string } }>().error.type, 'invalid_prompt_id', "ComfyUI's answer is relayed");
        assert.equal((await send(gateway.url, `/api/gateway/jobs/${encodeURIComponent(id)}`, { key: alice })).status, 404, 'no job');
        const other = await send(gateway.url, '/api/prompt', { method: 'POST', key: bob, body: { prompt: SAVE_WORKFLOW, client_id: clientId } });
        assert.equal(other.status, 200, `the client_id is free: ${other.text}`);
      }
      const canonical = randomUUID();
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', key: alice, body: { prompt: SAVE_WORKFLOW, prompt_id: canonical } });
      assert.equal(res.json<{ prompt_id: string }>().prompt_id, canonical, res.text);
      await waitForHistory(gateway.url, alice, canonical);
    });
  });
}

describe('a new client_id used by two prompts of a key at once', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let alice: string;
  let bob: string;
  /** Set by a test: ComfyUI's refusal waits for it, and `refusing` is told when one does. */
  let refusal: { reached(): void; answer: Promise<void> } | null = null;
  /** Set by a test: the prompt of this id waits in ComfyUI's queue until `run` resolves. */
  let heldRun: { promptId: string; run: Promise<void> } | null = null;

  const prompt = (key: string, body: Record<string, unknown>): Promise<TestResponse> => send(gateway.url, '/api/prompt', { method: 'POST', key, body });
  const socketUrl = (clientId: string): string => `${gateway.url.replace('http', 'ws')}/ws?clientId=${clientId}`;
  /** Holds ComfyUI's next refusal: `refusing` resolves once it is reached, `answer` lets it be sent. */
  const holdRefusal = (): { refusing: Promise<void>; answer(): void } => {
    let reached!: () => void;
    const refusing = new Promise<void>((resolve) => (reached = resolve));
    let answer!: () => void;
    refusal = { reached, answer: new Promise<void>((resolve) => (answer = resolve)) };
    return { refusing, answer };
  };

  before(async () => {
    const fake = await startFakeComfyUI({
      beforeRefusal: async () => {
        const waiting = refusal;
        if (!waiting) return;
        waiting.reached();
        await waiting.answer;
      },
      beforeRun: async (promptId) => {
        if (heldRun?.promptId === promptId) await heldRun.run;
      },
    });
    ({ comfy, gateway, alice, bob } = await startWithKeys(fake));
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('a refused prompt that claimed it leaves it to the key while the other prompt of the key uses it; its socket gets that job’s events', async () => {
    const clientId = `shared-${randomUUID()}`;
    const { refusing, answer } = holdRefusal();
    let run!: () => void;
    const kept = randomUUID();
    heldRun = { promptId: kept, run: new Promise<void>((resolve) => (run = resolve)) };
    try {
      // The refused prompt claims the new id first; ComfyUI's refusal is in flight while the other prompt is admitted with it.
      const refused = prompt(alice, { prompt: REFUSED_WORKFLOW, client_id: clientId });
      await refusing;
      const admitted = await prompt(alice, { prompt: SAVE_WORKFLOW, client_id: clientId, prompt_id: kept });
      assert.equal(admitted.status, 200, admitted.text);
      answer();
      assert.equal((await refused).status, 400, 'ComfyUI refused the first');

      const taken = await prompt(bob, { prompt: SAVE_WORKFLOW, client_id: clientId });
      assert.equal(taken.status, 403, `another key cannot take it: ${taken.text}`);
      await assert.rejects(openCollectingSocket(socketUrl(clientId), { 'x-api-key': bob }), { status: 403 });
      const socket = await openCollectingSocket(socketUrl(clientId), { 'x-api-key': alice });
      run();
      await waitForHistory(gateway.url, alice, kept);
      await untilExecuted(socket, kept);
      await socket.close();
    } finally {
      refusal = null;
      heldRun = null;
      answer();
      run();
    }
  });

  test('a refused prompt that claimed it leaves it to the key whose socket took it meanwhile', async () => {
    const clientId = `socket-${randomUUID()}`;
    const { refusing, answer } = holdRefusal();
    try {
      const refused = prompt(alice, { prompt: REFUSED_WORKFLOW, client_id: clientId });
      await refusing;
      const socket = await openCollectingSocket(socketUrl(clientId), { 'x-api-key': alice });
      answer();
      assert.equal((await refused).status, 400, 'ComfyUI refused the prompt');
      const taken = await prompt(bob, { prompt: SAVE_WORKFLOW, client_id: clientId });
      assert.equal(taken.status, 403, `another key cannot take it: ${taken.text}`);
      const mine = await queuePrompt(gateway.url, alice, { client_id: clientId });
      await waitForHistory(gateway.url, alice, mine);
      await untilExecuted(socket, mine);
      await socket.close();
    } finally {
      refusal = null;
      answer();
    }
  });
});

/** A gateway in front of `comfy` where every prompt goes to ComfyUI at once, with user keys alice and bob. */
async function startWithKeys(comfy: FakeComfyUI): Promise<{ comfy: FakeComfyUI; gateway: GatewayProcess; alice: string; bob: string }> {
  const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '10000'] });
  const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
  const alice = (await createKey(gateway.url, { name: 'alice', rate_limit: 100000 }, admin)).api_key;
  const bob = (await createKey(gateway.url, { name: 'bob', rate_limit: 100000 }, admin)).api_key;
  return { comfy, gateway, alice, bob };
}

/** Waits for the socket to get the prompt's `executed` event (its last event is well after it). */
async function untilExecuted(socket: CollectingSocket, promptId: string): Promise<void> {
  await waitFor(() => socket.texts.some((t) => t.type === 'executed' && t.data.prompt_id === promptId), `the socket to get the events of ${promptId}`);
}
