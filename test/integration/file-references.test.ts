// Another key's files named the ways ComfyUI reads and the gateway might not: annotations without their space, absolute and Windows paths, content hashes, loader nodes beyond LoadImage, uploads of a name or of bytes another key holds; and interrupts on releases that stop whatever runs.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { SAVE_WORKFLOW, waitForHistory } from '../helpers/comfy-client.js';
import { INTERRUPT_MODES, startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { multipart, type FormPart } from '../helpers/multipart.js';
import { MAX_FILE_LIKE_STRINGS } from '../../src/isolation/loaded-files.js';
import { startTwoKeyStage, type TwoKeyStage } from '../helpers/two-keys.js';
import { waitFor } from '../helpers/wait-for.js';

describe('file references read as ComfyUI reads them', () => {
  let stage: TwoKeyStage;
  /** An input file bob uploaded, and its bytes. */
  const bobInput = 'bob-input.png';
  const bobBytes = 'BOB-SECRET-INPUT';
  /** The content hash ComfyUI's answer to bob's upload gave it (assets are on). */
  let bobHash: string;

  const upload = (key: string, parts: FormPart[], route = '/api/upload/image'): Promise<TestResponse> =>
    send(stage.gateway.url, route, { method: 'POST', key, ...multipart(parts) });
  const prompt = (key: string, graph: Record<string, unknown>): Promise<TestResponse> =>
    send(stage.gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: graph } });
  const upstreamPrompts = (): number => stage.comfy.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/prompt')).length;
  const bobOutputBytes = (): Promise<Buffer> => readFile(join(stage.comfy.outputDir, stage.bobImage));

  before(async () => {
    stage = await startTwoKeyStage(['--upstream-queue-depth', '100']);
    const stored = await upload(stage.bob.api_key, [{ name: 'image', filename: bobInput, value: bobBytes }]);
    assert.equal(stored.status, 200, stored.text);
    bobHash = stored.json<{ asset: { asset_hash: string } }>().asset.asset_hash;
  });
  after(() => stage.close());

  test('a name whose annotation has no space before it is refused at upload, at /view and in a prompt', async () => {
    for (const name of [
      `${stage.bobImage}X[output]`,
      `${stage.bobImage}_[output]`,
      `${bobInput}X[input]`,
      `${stage.bobImage}  [output]`,
      ` ${stage.bobImage} [output]`,
    ]) {
      const stored = await upload(stage.alice.api_key, [{ name: 'image', filename: name, value: 'ALICE' }]);
      assert.equal(stored.status, 400, `upload ${name}: ${stored.text}`);
      assert.equal(stored.json().error_code, 'INVALID_REQUEST');
      for (const type of ['input', 'output']) {
        const view = await send(stage.gateway.url, `/api/view?filename=${encodeURIComponent(name)}&type=${type}`, { key: stage.alice.api_key });
        assert.equal(view.status, 400, `view ${name} (${type}): ${view.status}`);
        assert.equal(view.text.includes('BOB'), false);
      }
      const before = upstreamPrompts();
      const loaded = await prompt(stage.alice.api_key, { '1': { class_type: 'LoadImage', inputs: { image: name } }, ...SAVE_WORKFLOW });
      assert.equal(loaded.status, 400, `LoadImage ${name}: ${loaded.text}`);
      assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
    }
    const spaced = await send(stage.gateway.url, `/api/view?filename=${encodeURIComponent(`${stage.bobImage} [output]`)}`, { key: stage.alice.api_key });
    assert.equal(spaced.status, 404, 'the one spelling every release reads alike is checked as the output it names');
    assert.ok((await bobOutputBytes()).length > 0);
  });

  test('an encoded request body is refused: ComfyUI decodes it, so it would act on other bytes than the gateway checked', async () => {
    const harmless = multipart([{ name: 'image', filename: 'alice-harmless.png', value: 'ALICE' }]);
    const hostile = multipart([
      { name: 'image', filename: bobInput, value: 'ALICE-OVERWRITE' },
      { name: 'overwrite', value: 'true' },
    ]);
    // A gzip stream whose header's extra field holds the harmless form, and whose data is the hostile one: the gateway read the
    // first, as a preamble and a whole form, and ComfyUI the second.
    const plain = gzipSync(hostile.body);
    const extra = Buffer.concat([Buffer.from('\r\n'), harmless.body]);
    const length = Buffer.alloc(2);
    length.writeUInt16LE(extra.length);
    const flagged = Buffer.from(plain.subarray(0, 10));
    flagged[3] = 0x04;
    const smuggled = Buffer.concat([flagged, length, extra, plain.subarray(10)]);
    for (const encoding of ['gzip', 'GZip ']) {
      const res = await send(stage.gateway.url, '/api/upload/image', {
        method: 'POST',
        key: stage.alice.api_key,
        headers: { ...hostile.headers, 'content-encoding': encoding },
        body: smuggled,
      });
      assert.equal(res.status, 415, `${encoding}: ${res.text}`);
      assert.equal(res.json().error_code, 'UNSUPPORTED_CONTENT_ENCODING');
    }
    assert.equal(await readFile(join(stage.comfy.inputDir, bobInput), 'utf8'), bobBytes, "bob's upload is untouched");
    const before = upstreamPrompts();
    const deflated = await send(stage.gateway.url, '/api/prompt', {
      method: 'POST',
      key: stage.alice.api_key,
      headers: { 'content-type': 'application/json', 'content-encoding': 'deflate' },
      body: deflateSync(JSON.stringify({ prompt: SAVE_WORKFLOW })),
    });
    assert.equal(deflated.status, 415, deflated.text);
    assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
    const identity = await upload(stage.alice.api_key, [{ name: 'image', filename: 'alice-plain.png', value: 'ALICE' }]);
    assert.equal(identity.status, 200, 'a body sent as it is passes');
  });

  test('an upload form that aiohttp would read with another first part is refused: a boundary or a part header ended by LF alone', async () => {
    const { headers } = multipart([]);
    const boundary = /boundary=(.*)$/.exec(headers['content-type']!)![1]!;
    const visible = (decoy: string): string =>
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${decoy}"\r\nContent-Type: image/png\r\n\r\nDECOY\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n--${boundary}--\r\n`;
    const forms = {
      // aiohttp takes the first line that is the boundary, LF-ended; the gateway saw a preamble up to the first CRLF boundary.
      'a hidden first part after an LF-ended boundary': `x\n--${boundary}\nContent-Disposition: form-data; name="image"; filename="${bobInput}"\n\nALICE-OVERWRITE\r\n${visible('alice-decoy.png')}`,
      // aiohttp splits part headers at LF: its first Content-Disposition is the one the gateway read as part of X-Note.
      'a Content-Disposition hidden in another header': `--${boundary}\r\nX-Note: a\nContent-Disposition: form-data; name="image"; filename="${bobInput}"\r\nContent-Disposition: form-data; name="image"; filename="alice-decoy2.png"\r\nContent-Type: image/png\r\n\r\nALICE-OVERWRITE\r\n--${boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n--${boundary}--\r\n`,
    };
    for (const [shape, body] of Object.entries(forms)) {
      const res = await send(stage.gateway.url, '/api/upload/image', { method: 'POST', key: stage.alice.api_key, headers, body: Buffer.from(body) });
      assert.equal(await readFile(join(stage.comfy.inputDir, bobInput), 'utf8'), bobBytes, `${shape}: bob's upload is untouched (${res.status})`);
      assert.equal(res.status, 400, `${shape}: ${res.text}`);
      assert.equal(res.json().error_code, 'INVALID_REQUEST');
    }
  });

  test('a FLOAT input of "nan" (ComfyUI then writes NaN into its queue and history) never shows another key\'s queue', async () => {
    const graph = { ...SAVE_WORKFLOW, '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 1000, cfg: 'nan', denoise: '-inf' } } };
    const queued = await prompt(stage.bob.api_key, graph);
    assert.equal(queued.status, 200, queued.text);
    const bobsId = queued.json<{ prompt_id: string }>().prompt_id;
    try {
      for (const key of [stage.alice.api_key, stage.bob.api_key]) {
        const queue = await send(stage.gateway.url, '/api/queue', { key });
        assert.equal(queue.status, 200, queue.text);
        const listed = queue.json<{ queue_running: unknown[][]; queue_pending: unknown[][] }>();
        const running = listed.queue_running.find((item) => item[1] === bobsId);
        if (key === stage.alice.api_key) {
          assert.equal(queue.text.includes(bobsId), false, "alice does not see bob's prompt id");
          assert.equal(queue.text.includes('KSampler'), false, "nor bob's graph");
        } else {
          assert.deepEqual(
            (running?.[2] as Record<string, { inputs: Record<string, unknown> }>)['3']!.inputs,
            { seed: 1, steps: 1000, cfg: null, denoise: null },
            'bob sees his own, NaN and -Infinity as null',
          );
        }
      }
    } finally {
      await send(stage.gateway.url, '/api/interrupt', { method: 'POST', key: stage.bob.api_key, body: { prompt_id: bobsId } });
      await waitForHistory(stage.gateway.url, stage.bob.api_key, bobsId);
    }
    const history = await send(stage.gateway.url, `/api/history/${bobsId}`, { key: stage.bob.api_key });
    assert.equal(history.json<Record<string, { prompt: unknown[] }>>()[bobsId]!.prompt[1], bobsId, 'his history entry reads too');
  });

  test('an absolute, Windows or climbing subfolder or name cannot reach another key’s upload', async () => {
    const root = stage.comfy.inputDir;
    const attempts: FormPart[][] = [
      [{ name: 'subfolder', value: root }],
      [{ name: 'subfolder', value: `${root}/` }],
      [{ name: 'subfolder', value: 'x\\..' }],
      [{ name: 'subfolder', value: 'C:\\comfy\\input' }],
      [{ name: 'subfolder', value: 'x/..' }],
    ];
    for (const extra of attempts) {
      const res = await upload(stage.alice.api_key, [
        { name: 'image', filename: bobInput, value: 'ALICE-OVERWRITE' },
        { name: 'overwrite', value: 'true' },
        ...extra,
      ]);
      assert.equal(res.status, 400, `${JSON.stringify(extra)}: ${res.text}`);
      assert.equal(res.json().error_code, 'INVALID_REQUEST');
    }
    for (const filename of [`${root}/${bobInput}`, `..\\${bobInput}`, `../input/${bobInput}`]) {
      const res = await upload(stage.alice.api_key, [
        { name: 'image', filename, value: 'ALICE-OVERWRITE' },
        { name: 'overwrite', value: 'true' },
      ]);
      assert.equal(res.status, 400, `${filename}: ${res.text}`);
    }
    assert.equal(await readFile(join(root, bobInput), 'utf8'), bobBytes, 'bob’s upload is unchanged');
    const view = await send(stage.gateway.url, `/api/view?filename=${bobInput}&type=input&subfolder=${encodeURIComponent(root)}`, { key: stage.alice.api_key });
    assert.equal(view.status, 400);
    const mask = await upload(
      stage.alice.api_key,
      [
        { name: 'image', filename: 'mask.png', value: 'MASK' },
        { name: 'original_ref', value: JSON.stringify({ filename: bobInput, subfolder: root, type: 'input' }) },
      ],
      '/api/upload/mask',
    );
    assert.equal(mask.status, 400, mask.text);
  });

  test("a mask's original_ref is read as Python's json.loads reads it: NaN beside another key's image does not hide it", async () => {
    const masks = (ref: string): Promise<TestResponse> =>
      upload(
        stage.alice.api_key,
        [
          { name: 'image', filename: 'alice-mask.png', value: 'MASK' },
          { name: 'original_ref', value: ref },
        ],
        '/api/upload/mask',
      );
    for (const ref of [`{"filename": "${bobInput}", "type": "input", "scale": NaN}`, `{"filename": "${bobInput}", "type": "input", "x": -Infinity}`]) {
      const res = await masks(ref);
      assert.equal(res.status, 403, `${ref}: ${res.text}`);
      assert.match(res.json<{ error: string }>().error, /original_ref/);
    }
    for (const ref of ['{"filename": ', '["bob-input.png"]', 'null']) {
      const res = await masks(ref);
      assert.equal(res.status, 400, `${ref}: ${res.text}`);
      assert.equal(res.json().error_code, 'INVALID_REQUEST');
    }
  });

  test('a blake3: name (a content hash, whoever owns the file) is refused for user keys', async () => {
    const byAdmin = await send(stage.gateway.url, `/api/view?filename=${bobHash}`, { key: stage.admin });
    assert.equal(byAdmin.text, bobBytes, "ComfyUI serves bob's upload by its hash to whoever asks");
    for (const type of ['input', 'output']) {
      const view = await send(stage.gateway.url, `/api/view?filename=${bobHash}&type=${type}`, { key: stage.alice.api_key });
      assert.equal(view.status, 400);
      assert.equal(view.json().error_code, 'INVALID_REQUEST');
    }
    const loaded = await prompt(stage.alice.api_key, { '1': { class_type: 'LoadImage', inputs: { image: bobHash } }, ...SAVE_WORKFLOW });
    assert.equal(loaded.status, 400, loaded.text);
  });

  test('loader nodes beyond LoadImage, and nodes the gateway does not know, cannot load another key’s files', async () => {
    const foreign: Array<[string, Record<string, unknown>]> = [
      ['WebcamCapture', { '1': { class_type: 'WebcamCapture', inputs: { image: bobInput, width: 0, height: 0, capture_on_queue: false } } }],
      ['LoadLatent', { '1': { class_type: 'LoadLatent', inputs: { latent: `${stage.bobImage} [output]` } } }],
      ['Load3D image', { '1': { class_type: 'Load3D', inputs: { image: { image: bobInput, mask: '', recording: '' } } } }],
      // ComfyUI unwraps {"__value__": v} before it reads an input.
      ['LoadImage, a wrapped value', { '1': { class_type: 'LoadImage', inputs: { image: { __value__: bobInput } } } }],
      ['Load3D image, a wrapped value', { '1': { class_type: 'Load3D', inputs: { image: { __value__: { image: bobInput } } } } }],
      ['a folder loader', { '1': { class_type: 'LoadImageDataSetFromFolder', inputs: { folder: '.' } } }],
      ['an unknown node, input name', { '1': { class_type: 'CustomLoadImagePath', inputs: { path: bobInput } } }],
      ['an unknown node, output name', { '1': { class_type: 'CustomLoadImagePath', inputs: { path: stage.bobImage } } }],
      ['an unknown node, annotated', { '1': { class_type: 'CustomLoadImagePath', inputs: { path: `${stage.bobImage}X[output]` } } }],
      ['an unknown node, nested', { '1': { class_type: 'CustomBatchLoader', inputs: { files: { list: ['mine.png', `${stage.bobImage} [output]`] } } } }],
    ];
    for (const [what, graph] of foreign) {
      const before = upstreamPrompts();
      const res = await prompt(stage.alice.api_key, { ...graph, ...SAVE_WORKFLOW });
      assert.equal(res.status, 403, `${what}: ${res.status} ${res.text}`);
      assert.equal(res.json().error_code, 'FORBIDDEN');
      assert.equal(upstreamPrompts(), before, `${what}: nothing reached ComfyUI`);
    }
  });

  test('a prompt whose inputs hold more strings that could name a file than the gateway looks up is refused', async () => {
    const names = (count: number): string[] => Array.from({ length: count }, (_, i) => `n${i}.png`);
    const before = upstreamPrompts();
    const over = await prompt(stage.alice.api_key, {
      '1': { class_type: 'CustomBatchLoader', inputs: { files: names(MAX_FILE_LIKE_STRINGS + 1) } },
      ...SAVE_WORKFLOW,
    });
    assert.equal(over.status, 400, over.text);
    assert.equal(over.json().error_code, 'INVALID_REQUEST');
    assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
    // With SaveImage's filename_prefix, exactly the limit; the text is too long to be a name and is not counted.
    const longText = { '1': { class_type: 'CLIPTextEncode', inputs: { text: 'x'.repeat(300) } } };
    const atCap = await prompt(stage.alice.api_key, {
      '1': { class_type: 'CustomBatchLoader', inputs: { files: names(MAX_FILE_LIKE_STRINGS - 1) } },
      '2': longText['1'],
      ...SAVE_WORKFLOW,
    });
    assert.notEqual(atCap.status, 403, atCap.text);
    assert.equal(upstreamPrompts(), before + 1, 'at the limit, with a text too long to be a name, the prompt reaches ComfyUI');
  });

  test('node definitions list no uploaded file names to a user key; an admin key gets ComfyUI’s list', async () => {
    type Definitions = Record<string, { input: { required: Record<string, [unknown, unknown]> } }>;
    for (const target of ['/api/object_info', '/object_info/LoadImage', '/api/object_info/LoadImage?x=1']) {
      const asUser = await send(stage.gateway.url, target, { key: stage.alice.api_key });
      assert.equal(asUser.status, 200, target);
      assert.equal(asUser.text.includes(bobInput), false, `${target}: bob’s upload is not named`);
      assert.deepEqual(asUser.json<Definitions>().LoadImage!.input.required.image![0], [], target);
    }
    const asAdmin = (await send(stage.gateway.url, '/api/object_info/LoadImage', { key: stage.admin })).json<Definitions>();
    assert.ok((asAdmin.LoadImage!.input.required.image![0] as string[]).includes(bobInput));
    assert.ok((await send(stage.gateway.url, '/api/object_info', { key: stage.alice.api_key })).json<Definitions>().KSampler, 'the other nodes are there');
  });

  test('a save node’s filename_prefix with %batch_num%, or given by a link, is refused for user keys (it could replace another key’s file)', async () => {
    const save = (prefix: unknown): Record<string, unknown> => ({
      '1': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: prefix } },
    });
    for (const prefix of ['img%batch_num%', { __value__: 'x/%batch_num%' }, ['1', 0]]) {
      const before = upstreamPrompts();
      const refused = await prompt(stage.alice.api_key, save(prefix));
      assert.equal(refused.status, 400, `${JSON.stringify(prefix)}: ${refused.text}`);
      assert.equal(refused.json().error_code, 'INVALID_REQUEST');
      assert.equal(refused.json<{ details: Array<{ field: string }> }>().details[0]!.field, 'prompt node 2 input filename_prefix');
      assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
    }
    assert.equal((await prompt(stage.alice.api_key, save('img%year%'))).status, 200, 'the tokens ComfyUI replaces before numbering pass');
    assert.equal((await prompt(stage.admin, save('img%batch_num%'))).status, 200, 'an admin key is not held to it');
  });

  test("a known loader's file given by a link is refused for user keys: ComfyUI reads it only when it runs the graph", async () => {
    const before = upstreamPrompts();
    for (const [classType, input] of [
      ['LoadImage', 'image'],
      ['LoadImageOutput', 'image'],
      ['Load3D', 'model_file'],
      ['Load3D', 'image'],
    ] as const) {
      const graph = {
        '1': { class_type: 'PrimitiveString', inputs: { value: stage.bobImage } },
        '2': { class_type: classType, inputs: { [input]: ['1', 0] } },
        ...SAVE_WORKFLOW,
      };
      const res = await prompt(stage.alice.api_key, graph);
      assert.equal(res.status, 400, `${classType}.${input}: ${res.text}`);
      assert.deepEqual(res.json<{ details: unknown[] }>().details, [{ field: `prompt node 2 input ${input}`, problem: 'a link: give the file name' }]);
    }
    assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
  });

  test("a loader's own file whose name FFmpeg reads as a pattern (a%d.png loads a0.png, a1.png, … of any key) is refused for user keys", async () => {
    const before = upstreamPrompts();
    for (const name of ['shot%d.png', 'shot%03d.png', 'shot*.png', 'shot[0-9].png', 'shot{a,b}.png']) {
      const stored = await upload(stage.alice.api_key, [{ name: 'image', filename: name, value: 'ALICE' }]);
      assert.equal(stored.status, 200, stored.text);
      const res = await prompt(stage.alice.api_key, { '1': { class_type: 'LoadImage', inputs: { image: name } }, ...SAVE_WORKFLOW });
      assert.equal(res.status, 400, `${name}: ${res.text}`);
      assert.deepEqual(res.json<{ details: unknown[] }>().details, [{ field: 'prompt node 1 input image', problem: 'a name FFmpeg reads as a pattern' }]);
    }
    assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
  });

  test('a key’s own files, text and links still pass through to ComfyUI', async () => {
    const stored = await upload(stage.alice.api_key, [{ name: 'image', filename: 'alice-own.png', value: 'ALICE' }]);
    assert.equal(stored.status, 200, stored.text);
    const passes: Array<Record<string, unknown>> = [
      { '1': { class_type: 'LoadImage', inputs: { image: 'alice-own.png' } } },
      { '1': { class_type: 'CustomLoadImagePath', inputs: { path: 'alice-own.png', text: 'a fox in the snow', link: ['3', 0] } } },
      { '1': { class_type: 'CLIPTextEncode', inputs: { text: `a painting of ${stage.bobImage}`, clip: ['4', 1] } } },
    ];
    for (const graph of passes) {
      const before = upstreamPrompts();
      const res = await prompt(stage.alice.api_key, { ...graph, ...SAVE_WORKFLOW });
      assert.notEqual(res.status, 403, res.text);
      assert.equal(upstreamPrompts(), before + 1, `${JSON.stringify(graph)} reached ComfyUI`);
    }
  });
});

for (const interrupts of INTERRUPT_MODES) {
  test(`an interrupt naming a key's queued prompt does not stop another key's running one (${interrupts} interrupts)`, async () => {
    const comfy = await startFakeComfyUI({ interrupts, stepDelayMs: 40 });
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '10'] });
    try {
      const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
      const alice = (await createKey(gateway.url, { name: 'alice' }, admin)).api_key;
      const bob = (await createKey(gateway.url, { name: 'bob' }, admin)).api_key;
      const queue = async (key: string): Promise<string> =>
        (await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: SAVE_WORKFLOW } })).json<{ prompt_id: string }>().prompt_id;
      const bobPrompt = await queue(bob);
      await waitFor(() => comfy.inFlight().length === 1, 'bob’s prompt runs');
      const alicePrompt = await queue(alice);
      await waitFor(() => comfy.inFlight().length === 2, 'alice’s prompt waits in ComfyUI’s queue');
      const interrupted = await send(gateway.url, '/api/interrupt', { method: 'POST', key: alice, body: { prompt_id: alicePrompt } });
      assert.equal(interrupted.status, 200);
      assert.equal(comfy.requests.filter((r) => r.url.endsWith('/interrupt')).length, 0, 'a prompt that does not run is not interrupted in ComfyUI');
      const bobEntry = await waitForHistory(gateway.url, bob, bobPrompt, 30_000);
      assert.equal((bobEntry.status as { status_str: string }).status_str, 'success', 'bob’s prompt ran to its end');
      await waitForHistory(gateway.url, alice, alicePrompt, 30_000);
    } finally {
      await gateway.stop();
      await comfy.close();
    }
  });
}

describe('several backends number their outputs apart: one name, two keys’ files', () => {
  const fakes: FakeComfyUI[] = [];
  let gateway: GatewayProcess;
  let alice: string;
  let bob: string;
  let carol: string;

  /** Runs a SaveImage prompt with `prefix` as `key` and waits for its job: the fake that ran it and the file it made. */
  const run = async (key: string, prefix: string): Promise<{ fake: FakeComfyUI; filename: string }> => {
    const res = await send(gateway.url, '/api/gateway/run', {
      method: 'POST',
      key,
      body: { prompt: { ...SAVE_WORKFLOW, '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: prefix } } }, wait: 30 },
    });
    assert.equal(res.status, 200, res.text);
    const job = res.json<{ upstream_id: string; outputs: Array<{ filename: string }> }>();
    const fake = fakes.find((candidate) => candidate.prompts.some((queued) => queued.id === job.upstream_id))!;
    return { fake, filename: job.outputs[0]!.filename };
  };
  const view = (key: string, filename: string): Promise<TestResponse> => send(gateway.url, `/api/view?filename=${filename}&type=output`, { key });

  before(async () => {
    for (let i = 0; i < 2; i += 1) fakes.push(await startFakeComfyUI({ stepDelayMs: 30 }));
    gateway = await startGateway({ upstream: null, args: ['--require-api-auth', ...fakes.flatMap((fake) => ['--upstream', fake.url])] });
    const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
    const [a, b, c] = await Promise.all(['alice', 'bob', 'carol'].map(async (name) => (await createKey(gateway.url, { name }, admin)).api_key));
    [alice, bob, carol] = [a!, b!, c!];
  });
  after(async () => {
    await gateway.stop();
    for (const fake of fakes) await fake.close();
  });

  test('a name made on two backends by two keys is served to neither as the other’s, nor loaded', async () => {
    const [bobs, alices] = await Promise.all([run(bob, 'ComfyUI'), sleep(40).then(() => run(alice, 'ComfyUI'))]);
    assert.equal(bobs.filename, alices.filename, 'each backend numbers its files on its own');
    assert.notEqual(bobs.fake, alices.fake, 'the two jobs ran side by side');
    for (const fake of fakes) await writeFile(join(fake.outputDir, bobs.filename), `made on ${fake.url}`);
    for (const [key, others] of [
      [bob, alices.fake],
      [alice, bobs.fake],
    ] as const) {
      const res = await view(key, bobs.filename);
      assert.notEqual(res.text, `made on ${others.url}`, 'never the other key’s file');
      assert.ok(res.status === 404 || res.status === 200, `${res.status}`);
    }
    for (const key of [alice, bob]) {
      const loaded = await send(gateway.url, '/api/prompt', {
        method: 'POST',
        key,
        body: { prompt: { '1': { class_type: 'LoadImage', inputs: { image: `${bobs.filename} [output]` } }, ...SAVE_WORKFLOW } },
      });
      assert.equal(loaded.status, 403, loaded.text);
    }
  });

  test('a key’s own output is served from the backend that made it, and a prompt loading it runs there', async () => {
    const carols = await run(carol, 'carol-only');
    const served = await view(carol, carols.filename);
    assert.equal(served.status, 200, served.text);
    const marks = fakes.map((fake) => fake.prompts.length);
    const loaded = await send(gateway.url, '/api/prompt', {
      method: 'POST',
      key: carol,
      body: { prompt: { '1': { class_type: 'LoadImage', inputs: { image: `${carols.filename} [output]` } }, ...SAVE_WORKFLOW } },
    });
    assert.equal(loaded.status, 200, loaded.text);
    await waitFor(() => fakes.some((fake, i) => fake.prompts.length > marks[i]!), 'the prompt reaches a backend');
    const reached = fakes.filter((fake, i) => fake.prompts.length > marks[i]!);
    assert.equal(reached.length, 1);
    assert.equal(reached[0], carols.fake, 'it ran where carol’s file is');
  });
});

describe('two keys upload one name at once', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;

  before(async () => {
    // Each upload is answered 400 ms after its file is written: the first is still in flight when the second arrives.
    comfy = await startFakeComfyUI({ uploadAnswerDelayMs: 400 });
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  const upload = (key: string, name: string, value: string, overwrite: boolean): Promise<TestResponse> =>
    send(gateway.url, '/api/upload/image', {
      method: 'POST',
      key,
      ...multipart([{ name: 'image', filename: name, value }, ...(overwrite ? [{ name: 'overwrite', value: 'true' }] : [])]),
    });
  const view = (key: string, name: string): Promise<TestResponse> => send(gateway.url, `/api/view?filename=${encodeURIComponent(name)}&type=input`, { key });

  test("an overwriting upload during another key's upload of the name never leaves either key with the other's bytes", async () => {
    const victim = (await createKey(gateway.url, { name: 'victim', rate_limit: 1000 }, admin)).api_key;
    const attacker = (await createKey(gateway.url, { name: 'attacker', rate_limit: 1000 }, admin)).api_key;
    const first = upload(victim, 'clip.png', 'VICTIM-BYTES', false);
    await sleep(150);
    const second = await upload(attacker, 'clip.png', 'ATTACKER-BYTES', true);
    const victimAnswer = await first;
    const stored = await readFile(join(comfy.inputDir, 'clip.png'), 'utf8');
    assert.equal(stored, 'ATTACKER-BYTES', 'the overwrite reached ComfyUI');
    assert.equal(second.status, 200, second.text);
    assert.equal((await view(attacker, 'clip.png')).text, 'ATTACKER-BYTES');
    // The victim is told that the name is not its own, and cannot load bytes it did not upload as if they were its own.
    assert.equal(victimAnswer.status, 409, victimAnswer.text);
    assert.equal(victimAnswer.json().error_code, 'FILE_NAME_TAKEN');
    const victimView = await view(victim, 'clip.png');
    assert.notEqual(victimView.status, 200, victimView.text);
    const again = await upload(victim, 'clip.png', 'VICTIM-BYTES', false);
    assert.equal(again.status, 200, again.text);
    const renamed = again.json<{ name: string }>().name;
    assert.notEqual(renamed, 'clip.png');
    assert.equal((await view(victim, renamed)).text, 'VICTIM-BYTES');
  });

  test('an overwriting upload of a name another key is overwriting at that moment is refused, and the first keeps its file', async () => {
    const first = (await createKey(gateway.url, { name: 'first', rate_limit: 1000 }, admin)).api_key;
    const second = (await createKey(gateway.url, { name: 'second', rate_limit: 1000 }, admin)).api_key;
    const pending = upload(first, 'both.png', 'FIRST', true);
    await sleep(150);
    const refused = await upload(second, 'both.png', 'SECOND', true);
    assert.equal(refused.status, 403, refused.text);
    assert.equal((await pending).status, 200);
    assert.equal(await readFile(join(comfy.inputDir, 'both.png'), 'utf8'), 'FIRST', 'the refused upload never reached ComfyUI');
    assert.equal((await view(first, 'both.png')).text, 'FIRST');
  });

  test('an upload of the very bytes another key holds under that name gets 409 each time it is sent, and goes through under another name', async () => {
    const holder = (await createKey(gateway.url, { name: 'holder', rate_limit: 1000 }, admin)).api_key;
    const copier = (await createKey(gateway.url, { name: 'copier', rate_limit: 1000 }, admin)).api_key;
    assert.equal((await upload(holder, 'shared.png', 'SHARED-BYTES', false)).status, 200);
    // ComfyUI finds a file of that name with the same bytes and answers with it, storing no copy, however often it is sent.
    for (const attempt of [1, 2]) {
      const refused = await upload(copier, 'shared.png', 'SHARED-BYTES', false);
      assert.equal(refused.status, 409, `attempt ${attempt}: ${refused.text}`);
      const { error_code, error } = refused.json<{ error_code: string; error: string }>();
      assert.equal(error_code, 'FILE_NAME_TAKEN');
      assert.match(error, /under another name/);
      assert.doesNotMatch(error, /upload again/i, 'the answer does not tell the key to send it again, which gets the same answer');
    }
    assert.notEqual((await view(copier, 'shared.png')).status, 200);
    const renamed = await upload(copier, 'shared-copy.png', 'SHARED-BYTES', false);
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal((await view(copier, renamed.json<{ name: string }>().name)).text, 'SHARED-BYTES');
  });
});
