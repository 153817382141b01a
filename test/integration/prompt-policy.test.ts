// Prompt policies through the gateway: each rule refused with 403 PROMPT_POLICY before ComfyUI sees anything, the --default-policy file, policy validation, and max_execution_seconds interrupting a job.

import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { INTERRUPT_MODES, startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { multipart, type FormPart } from '../helpers/multipart.js';
import { waitFor } from '../helpers/wait-for.js';

type Graph = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

/** A small text-to-image graph within every limit used here; `change` edits it. */
function graph(change: (nodes: Graph) => void = () => undefined): Graph {
  const nodes: Graph = {
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'model.safetensors' } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 512, height: 512, batch_size: 1 } },
    '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 20, model: ['4', 0], latent_image: ['5', 0] } },
    '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'ComfyUI' } },
  };
  change(nodes);
  return nodes;
}

/** A real grey PNG of `width` × `height`, each pixel `shade` (its rows compress to a few kilobytes). */
function grayPng(width: number, height: number, shade = 0): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(typed));
    return Buffer.concat([length, typed, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 0, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    // Each row is its filter type (0, none) and its pixels.
    chunk('IDAT', deflateSync(Buffer.concat(Array.from({ length: height }, () => Buffer.concat([Buffer.from([0]), Buffer.alloc(width, shade)]))))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** `png` (as grayPng makes it) made an animated PNG: an `acTL` chunk of `frames` frames put before its image data. */
function animatedPng(png: Buffer, frames: number): Buffer {
  const data = Buffer.alloc(8);
  data.writeUInt32BE(frames, 0);
  const typed = Buffer.concat([Buffer.from('acTL', 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  // The signature (8 bytes) and IHDR (25) come first.
  return Buffer.concat([png.subarray(0, 33), Buffer.from([0, 0, 0, 8]), typed, crc, png.subarray(33)]);
}

/** A GIF of `width` × `height` whose first frame fills it (its frames are not counted from its start). */
function gif(width: number, height: number): Buffer {
  const sides = Buffer.alloc(4);
  sides.writeUInt16LE(width, 0);
  sides.writeUInt16LE(height, 2);
  return Buffer.concat([Buffer.from('GIF89a', 'latin1'), sides, Buffer.from([0, 0, 0, 0x2c, 0, 0, 0, 0]), sides, Buffer.from([0, 2, 2, 0x4c, 0x01, 0, 0x3b])]);
}

/** A whole JPEG whose frame header (`width` × `height`) follows 120 KB of metadata, so that its size is read past its first 64 KiB. */
function jpegAfterMetadata(width: number, height: number): Buffer {
  const segment = (marker: number, data: Buffer): Buffer =>
    Buffer.concat([Buffer.from([0xff, marker, (data.length + 2) >> 8, (data.length + 2) & 0xff]), data]);
  const frame = Buffer.from([8, height >> 8, height & 0xff, width >> 8, width & 0xff, 1, 1, 0x11, 0]);
  return Buffer.concat([
    Buffer.from([0xff, 0xd8]),
    segment(0xe1, Buffer.alloc(60_000)),
    segment(0xe2, Buffer.alloc(60_000)),
    segment(0xc0, frame),
    segment(0xda, Buffer.alloc(8)),
    Buffer.alloc(64),
    Buffer.from([0xff, 0xd9]),
  ]);
}

interface Violation {
  node_id: string | null;
  rule: string;
  limit: unknown;
  value: unknown;
}

/** The default policy of the gateway under test (user keys without a policy of their own). */
const DEFAULT_POLICY = { max_steps: 30, deny_nodes: ['LoadImage*'] };

describe('prompt policy', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;
  let directory: { path: string; remove(): Promise<void> };

  before(async () => {
    comfy = await startFakeComfyUI();
    directory = await tempUserDirectory();
    const policyFile = join(directory.path, 'default-policy.json');
    await writeFile(policyFile, JSON.stringify(DEFAULT_POLICY));
    gateway = await startGateway({
      upstream: comfy.url,
      userDirectory: join(directory.path, 'user'),
      args: ['--require-api-auth', '--default-policy', policyFile],
    });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 })).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
    await directory?.remove();
  });

  /** What ComfyUI was sent as prompts so far. */
  const promptsSent = (): number => comfy.prompts.length + comfy.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/prompt')).length;

  async function keyWith(policy: unknown, role = 'user'): Promise<string> {
    return (await keyRecordWith(policy, role)).api_key;
  }
  function keyRecordWith(policy: unknown, role = 'user'): Promise<CreatedKey> {
    return createKey(gateway.url, { name: 'policed', rate_limit: 1000, role, policy }, admin);
  }

  /** Sends a prompt; on 403 checks that ComfyUI got nothing and returns the violations. */
  async function post(key: string, body: Record<string, unknown>): Promise<{ status: number; violations: Violation[]; text: string }> {
    // Earlier prompts may still be on their way to ComfyUI (a held job is sent once ComfyUI's queue has room): once every job has
    // ended, whatever ComfyUI gets is this request's.
    await waitFor(
      async () => (await send(gateway.url, '/api/gateway/jobs?status=held,queued,running', { key: admin })).json<{ jobs: unknown[] }>().jobs.length === 0,
      'every job ended',
      20_000,
    );
    const sentBefore = promptsSent();
    const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body });
    if (res.status !== 403) return { status: res.status, violations: [], text: res.text };
    const answer = res.json<{ error_code: string; error: string; details: Violation[] }>();
    assert.equal(answer.error_code, 'PROMPT_POLICY', res.text);
    assert.equal(promptsSent(), sentBefore, 'ComfyUI received nothing');
    return { status: res.status, violations: answer.details, text: res.text };
  }

  /** Each rule: a prompt it refuses, the violations listed, and a prompt the same key may send (when there is one). */
  const cases: Array<{ rule: string; policy: Record<string, unknown>; prompt: Graph; expected: Violation[]; within?: Graph }> = [
    {
      rule: 'deny_nodes',
      policy: { deny_nodes: ['Save*'] },
      prompt: graph(),
      expected: [{ node_id: '9', rule: 'deny_nodes', limit: 'Save*', value: 'SaveImage' }],
      within: graph((g) => (g['9']!.class_type = 'PreviewImage')),
    },
    {
      rule: 'allow_nodes',
      policy: { allow_nodes: ['KSampler*', 'Empty*', 'SaveImage'] },
      prompt: graph(),
      expected: [{ node_id: '4', rule: 'allow_nodes', limit: ['KSampler*', 'Empty*', 'SaveImage'], value: 'CheckpointLoaderSimple' }],
      within: graph((g) => delete g['4']),
    },
    {
      rule: 'deny_nodes over allow_nodes',
      policy: { allow_nodes: ['*'], deny_nodes: ['KSampler'] },
      prompt: graph(),
      expected: [{ node_id: '3', rule: 'deny_nodes', limit: 'KSampler', value: 'KSampler' }],
    },
    {
      rule: 'deny_nodes, an old class_type ComfyUI runs as a denied node (GET /node_replacements)',
      policy: { deny_nodes: ['GeminiNanoBanana2V2', 'ImageScaleToMaxDimension'] },
      prompt: graph((g) => {
        g['7'] = { class_type: 'GeminiNanoBanana2', inputs: { prompt: 'a cat', model: 'gemini', seed: 1 } };
        g['8'] = { class_type: 'ResizeImagesByLongerEdge', inputs: { images: ['3', 0], longer_edge: 1024 } };
      }),
      expected: [
        { node_id: '7', rule: 'deny_nodes', limit: 'GeminiNanoBanana2V2', value: 'GeminiNanoBanana2V2' },
        { node_id: '8', rule: 'deny_nodes', limit: 'ImageScaleToMaxDimension', value: 'ImageScaleToMaxDimension' },
      ],
      within: graph(),
    },
    {
      rule: 'max_width',
      policy: { max_width: 1024 },
      prompt: graph((g) => (g['5']!.inputs.width = 2048)),
      expected: [{ node_id: '5', rule: 'max_width', limit: 1024, value: 2048 }],
      within: graph(),
    },
    {
      rule: 'max_height',
      policy: { max_height: 1024 },
      prompt: graph((g) => (g['5']!.inputs.height = 1536)),
      expected: [{ node_id: '5', rule: 'max_height', limit: 1024, value: 1536 }],
      within: graph(),
    },
    {
      rule: 'max_batch_size',
      policy: { max_batch_size: 2 },
      prompt: graph((g) => (g['5']!.inputs.batch_size = 4)),
      expected: [{ node_id: '5', rule: 'max_batch_size', limit: 2, value: 4 }],
      within: graph(),
    },
    {
      rule: 'max_steps',
      policy: { max_steps: 25 },
      prompt: graph((g) => (g['3']!.inputs.steps = 26)),
      expected: [{ node_id: '3', rule: 'max_steps', limit: 25, value: 26 }],
      within: graph(),
    },
    {
      rule: 'max_steps, a number given as a string (ComfyUI converts it)',
      policy: { max_steps: 25 },
      prompt: graph((g) => (g['3']!.inputs.steps = '50')),
      expected: [{ node_id: '3', rule: 'max_steps', limit: 25, value: 50 }],
      within: graph(),
    },
    {
      rule: 'max_steps, a linked input (not a literal)',
      policy: { max_steps: 25 },
      prompt: graph((g) => {
        g['3']!.inputs.steps = ['7', 0];
        g['7'] = { class_type: 'PrimitiveInt', inputs: { value: 500 } };
      }),
      expected: [{ node_id: '3', rule: 'max_steps', limit: 25, value: 'linked' }],
      within: graph(),
    },
    {
      rule: 'max_steps, a value wrapped as {"__value__": ...} (ComfyUI unwraps it)',
      policy: { max_steps: 25 },
      prompt: graph((g) => (g['3']!.inputs.steps = { __value__: 500 })),
      expected: [{ node_id: '3', rule: 'max_steps', limit: 25, value: 500 }],
      within: graph((g) => (g['3']!.inputs.steps = { __value__: 20 })),
    },
    {
      rule: 'limited inputs given as text that ComfyUI reads as a number and the gateway does not',
      policy: { max_width: 1024, max_height: 1024, max_batch_size: 2 },
      prompt: graph((g) => {
        // Python's int() reads digit separators, digits of every script and the separators \x1c-\x1f as whitespace.
        g['5']!.inputs.width = '4_096';
        g['5']!.inputs.height = '\uff14\uff10\uff19\uff16';
        g['5']!.inputs.batch_size = { __value__: '\x1c64' };
      }),
      expected: [
        { node_id: '5', rule: 'max_width', limit: 1024, value: 'text' },
        { node_id: '5', rule: 'max_height', limit: 1024, value: 'text' },
        { node_id: '5', rule: 'max_batch_size', limit: 2, value: 'text' },
      ],
      within: graph((g) => (g['5']!.inputs.width = ' 512 ')),
    },
    {
      rule: 'max_frames',
      policy: { max_frames: 33 },
      prompt: graph((g) => (g['5'] = { class_type: 'EmptyHunyuanLatentVideo', inputs: { width: 848, height: 480, length: 65, batch_size: 1 } })),
      expected: [{ node_id: '5', rule: 'max_frames', limit: 33, value: 65 }],
      within: graph(),
    },
    {
      rule: 'max_width of ImageScale',
      policy: { max_width: 2048 },
      prompt: graph(
        (g) =>
          (g['8'] = { class_type: 'ImageScale', inputs: { image: ['3', 0], upscale_method: 'nearest-exact', width: 4096, height: 512, crop: 'disabled' } }),
      ),
      expected: [{ node_id: '8', rule: 'max_width', limit: 2048, value: 4096 }],
      within: graph(),
    },
    {
      rule: 'max_width and max_height, read by input name on a node of any type (EmptyImage)',
      policy: { max_width: 1024, max_height: 1024 },
      prompt: graph((g) => (g['8'] = { class_type: 'EmptyImage', inputs: { width: 512, height: 4096, batch_size: 1, color: 0 } })),
      expected: [{ node_id: '8', rule: 'max_height', limit: 1024, value: 4096 }],
      within: graph(),
    },
    {
      rule: 'max_width and max_height, a factor (LatentUpscaleBy scale_by) enlarging a 512 latent past the limit',
      policy: { max_width: 1024, max_height: 1024 },
      prompt: graph((g) => {
        g['7'] = { class_type: 'LatentUpscaleBy', inputs: { samples: ['3', 0], upscale_method: 'nearest-exact', scale_by: 2.5 } };
        g['9']!.inputs.images = ['7', 0];
      }),
      expected: [
        { node_id: '7', rule: 'max_width', limit: 1024, value: 1280 },
        { node_id: '7', rule: 'max_height', limit: 1024, value: 1280 },
      ],
      within: graph((g) => {
        g['7'] = { class_type: 'LatentUpscaleBy', inputs: { samples: ['3', 0], upscale_method: 'nearest-exact', scale_by: 1.5 } };
        g['9']!.inputs.images = ['7', 0];
      }),
    },
    {
      rule: 'workflows_only',
      policy: { workflows_only: true },
      prompt: graph(),
      expected: [{ node_id: null, rule: 'workflows_only', limit: true, value: null }],
    },
    {
      rule: 'every violation, in node id order',
      policy: { deny_nodes: ['Save*'], max_width: 1024, max_steps: 25 },
      prompt: graph((g) => {
        g['5']!.inputs.width = 2048;
        g['3']!.inputs.steps = 40;
      }),
      expected: [
        { node_id: '3', rule: 'max_steps', limit: 25, value: 40 },
        { node_id: '5', rule: 'max_width', limit: 1024, value: 2048 },
        { node_id: '9', rule: 'deny_nodes', limit: 'Save*', value: 'SaveImage' },
      ],
    },
  ];
  for (const { rule, policy, prompt, expected, within } of cases) {
    test(`${rule}: 403 PROMPT_POLICY with the violations, and ComfyUI gets nothing`, async () => {
      const key = await keyWith(policy);
      const refused = await post(key, { prompt });
      assert.equal(refused.status, 403, refused.text);
      assert.deepEqual(refused.violations, expected);
      if (!within) return;
      const accepted = await post(key, { prompt: within });
      assert.equal(accepted.status, 200, `a prompt within the policy goes through: ${accepted.text}`);
    });
  }

  test('a factor on an image of no literal size, and a model upscaler, are refused under max_width with the reason', async () => {
    const key = await keyWith({ max_width: 2048 });
    const refused = await post(key, {
      prompt: graph((g) => {
        g['10'] = { class_type: 'LoadImage', inputs: { image: 'photo.png' } };
        g['11'] = { class_type: 'ImageScaleBy', inputs: { image: ['10', 0], upscale_method: 'lanczos', scale_by: 4 } };
        g['12'] = { class_type: 'UpscaleModelLoader', inputs: { model_name: '4x-UltraSharp.pth' } };
        g['13'] = { class_type: 'ImageUpscaleWithModel', inputs: { upscale_model: ['12', 0], image: ['3', 0] } };
      }),
    });
    assert.equal(refused.status, 403, refused.text);
    const found = refused.violations as Array<Violation & { reason?: string }>;
    assert.deepEqual(
      found.map(({ node_id, value }) => [node_id, value]),
      [
        ['10', 'unbounded'],
        ['11', 'unbounded'],
        ['13', 'model'],
      ],
    );
    assert.match(found[0]!.reason!, /size of the loaded image could not be read/);
    assert.match(found[1]!.reason!, /size the prompt does not fix/);
    assert.match(found[2]!.reason!, /factor comes from the model file/);
  });

  test('a loaded image is held to max_width and max_height by its size, read from the start of the file through a ranged /view', async () => {
    const key = await keyWith({ max_width: 1024, max_height: 1024 });
    const upload = async (name: string, content: Buffer): Promise<string> => {
      const boundary = 'policy-test-boundary';
      const head = `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${name}"\r\nContent-Type: image/png\r\n\r\n`;
      const res = await send(gateway.url, '/api/upload/image', {
        method: 'POST',
        key,
        body: Buffer.concat([Buffer.from(head), content, Buffer.from(`\r\n--${boundary}--\r\n`)]),
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      });
      assert.equal(res.status, 200, res.text);
      return res.json<{ name: string }>().name;
    };
    /** LoadImage → VAEEncode → KSampler on the uploaded `image`. */
    const img2img = (image: string): Graph =>
      graph((g) => {
        g['10'] = { class_type: 'LoadImage', inputs: { image } };
        g['11'] = { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } };
        g['3']!.inputs.latent_image = ['11', 0];
      });
    const views = (): Array<FakeComfyUI['requests'][number]> => comfy.requests.filter((r) => r.url.includes('/view?'));
    const viewsBefore = views().length;

    const large = await upload('large.png', grayPng(2048, 2048));
    const refused = await post(key, { prompt: img2img(large) });
    assert.equal(refused.status, 403, refused.text);
    assert.deepEqual(
      refused.violations.map(({ node_id, rule, limit, value }) => ({ node_id, rule, limit, value })),
      [
        { node_id: '10', rule: 'max_width', limit: 1024, value: 2048 },
        { node_id: '10', rule: 'max_height', limit: 1024, value: 2048 },
      ],
    );
    const read = views().slice(viewsBefore);
    assert.equal(read.length, 1, 'one read of the file');
    assert.equal(read[0]!.headers.range, 'bytes=0-65535', 'only its start');

    // A JPEG whose frame header follows 120 KB of metadata: the rest of the header is read in a second range.
    const photoName = await upload('photo.jpg', jpegAfterMetadata(4000, 3000));
    const viewsBeforePhoto = views().length;
    const tooLarge = await post(key, { prompt: img2img(photoName) });
    assert.deepEqual(
      tooLarge.violations.map(({ node_id, rule, value }) => [node_id, rule, value]),
      [
        ['10', 'max_width', 4000],
        ['10', 'max_height', 4000],
      ],
    );
    assert.deepEqual(
      views()
        .slice(viewsBeforePhoto)
        .map((r) => r.headers.range),
      ['bytes=0-65535', 'bytes=65536-131071'],
    );

    const small = await upload('small.png', grayPng(512, 512));
    const accepted = await post(key, { prompt: img2img(small) });
    assert.equal(accepted.status, 200, accepted.text);

    const unreadable = await upload('notes.png', Buffer.from('not an image at all, whatever its name says'));
    const unknown = await post(key, { prompt: img2img(unreadable) });
    assert.equal(unknown.status, 403, unknown.text);
    assert.deepEqual(
      unknown.violations.map(({ node_id, value }) => [node_id, value]),
      [['10', 'unbounded']],
    );
    assert.match(unknown.text, /PNG, JPEG, WebP, GIF and BMP/);

    // A prompt loading more files than the gateway reads the sizes of is refused before any is read.
    const many = graph((g) => {
      for (let i = 0; i < 65; i += 1) g[`l${i}`] = { class_type: 'LoadImage', inputs: { image: `many-${i}.png` } };
    });
    const viewsBeforeMany = views().length;
    const tooMany = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: many } });
    assert.equal(tooMany.status, 400, tooMany.text);
    assert.match(tooMany.text, /loads 65 image or latent files.*at most 64/);
    assert.equal(views().length, viewsBeforeMany, 'nothing read');
  });

  /** Uploads `content` as `filename` for `key` (through the image route, which stores any file); returns the name stored. */
  async function uploadAs(key: string, filename: string, content: Buffer): Promise<string> {
    const res = await send(gateway.url, '/api/upload/image', { method: 'POST', key, ...multipart([{ name: 'image', filename, value: content }]) });
    assert.equal(res.status, 200, res.text);
    return res.json<{ name: string }>().name;
  }

  test('a loaded video, latent or 3D scene is refused as unbounded under each limit it could break, and is sent on for a key without them', async () => {
    /** LoadVideo's frames and LoadLatent's latent, sampled; and a Load3D scene. */
    const loading = (clip: string, saved: string, scene = true): Graph =>
      graph((g) => {
        g['10'] = { class_type: 'LoadVideo', inputs: { file: clip } };
        g['11'] = { class_type: 'GetVideoComponents', inputs: { video: ['10', 0] } };
        g['12'] = { class_type: 'LoadLatent', inputs: { latent: saved } };
        g['3']!.inputs.latent_image = ['12', 0];
        if (scene)
          g['13'] = { class_type: 'Load3D', inputs: { model_file: '3d/cube.glb', image: { image: 'scene.png', recording: '' }, width: 512, height: 512 } };
      });
    /** The prompt loading a video and a latent that `key` uploaded (named after `tag`, as each key's uploads must be). */
    const ownLoading = async (key: string, tag: string, scene = true): Promise<Graph> =>
      loading(await uploadAs(key, `clip-${tag}.mp4`, Buffer.alloc(64)), await uploadAs(key, `saved-${tag}.latent`, Buffer.alloc(64)), scene);
    const limited = await keyWith({ max_width: 1024, max_frames: 64, max_batch_size: 4 });
    const refused = await post(limited, { prompt: await ownLoading(limited, 'limited') });
    assert.equal(refused.status, 403, refused.text);
    assert.deepEqual(
      refused.violations.map(({ node_id, rule, value }) => [node_id, rule, value]),
      [
        ['10', 'max_width', 'unbounded'],
        ['10', 'max_frames', 'unbounded'],
        ['12', 'max_width', 'unbounded'],
        ['12', 'max_batch_size', 'unbounded'],
        ['12', 'max_frames', 'unbounded'],
        ['13', 'max_width', 'unbounded'],
        ['13', 'max_batch_size', 'unbounded'],
      ],
    );
    assert.match(refused.text, /size of a loaded video is not read/);

    const frames = await keyWith({ max_frames: 64 });
    const onlyFrames = await post(frames, { prompt: await ownLoading(frames, 'frames') });
    assert.deepEqual(
      onlyFrames.violations.map(({ node_id, rule }) => [node_id, rule]),
      [
        ['10', 'max_frames'],
        ['12', 'max_frames'],
      ],
      'max_frames alone: read without a size limit',
    );

    const free = await keyWith({ max_steps: 30 });
    const passed = await post(free, { prompt: await ownLoading(free, 'free', false) });
    // The fake ComfyUI has no LoadVideo: its own refusal shows that the gateway sent the prompt on.
    assert.equal(passed.status, 400, passed.text);
    assert.match(passed.text, /node LoadVideo does not exist/);
  });

  /** A .latent file as ComfyUI's SaveLatent writes it: a safetensors header giving `latent_tensor` of `shape` (F32), then its data. */
  function latentFile(shape: number[]): Buffer {
    const bytes = shape.reduce((total, dim) => total * dim, 4);
    const header = Buffer.from(
      JSON.stringify({
        latent_format_version_0: { dtype: 'F32', shape: [0], data_offsets: [0, 0] },
        latent_tensor: { dtype: 'F32', shape, data_offsets: [0, bytes] },
      }),
    );
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    return Buffer.concat([length, header, Buffer.alloc(bytes)]);
  }

  test("a loaded latent is held to the limits by its safetensors header, read from the file's start through a ranged /view", async () => {
    const key = await keyWith({ max_width: 1024, max_height: 1024, max_batch_size: 2, max_frames: 16 });
    /** LoadLatent → KSampler on the latent `key` uploaded as `name`. */
    const sampled = async (name: string, content: Buffer): Promise<Graph> => {
      const stored = await uploadAs(key, name, content);
      return graph((g) => {
        g['10'] = { class_type: 'LoadLatent', inputs: { latent: stored } };
        g['3']!.inputs.latent_image = ['10', 0];
      });
    };
    const views = (): Array<FakeComfyUI['requests'][number]> => comfy.requests.filter((r) => r.url.includes('/view?'));

    // 24 × 16 latent pixels: at most 1008 × 672 pixels whichever VAE decodes it.
    const small = await sampled('small.latent', latentFile([2, 4, 16, 24]));
    const viewsBefore = views().length;
    const accepted = await post(key, { prompt: small });
    assert.equal(accepted.status, 200, accepted.text);
    assert.deepEqual(
      views()
        .slice(viewsBefore)
        .map((r) => r.headers.range),
      ['bytes=0-65535'],
      'one read of its start',
    );

    const large = await post(key, { prompt: await sampled('large.latent', latentFile([4, 4, 64, 16])) });
    assert.equal(large.status, 403, large.text);
    assert.deepEqual(
      large.violations.map(({ node_id, rule, value }) => [node_id, rule, value]),
      [
        ['10', 'max_height', 64 * 42],
        ['10', 'max_batch_size', 4],
      ],
    );
    assert.match(large.text, /latent is 16×64.*42 pixels/);

    // A video latent of 3 latent frames: up to 17 frames once decoded.
    const video = await post(key, { prompt: await sampled('video.latent', latentFile([1, 16, 3, 8, 8])) });
    assert.deepEqual(
      video.violations.map(({ node_id, rule, value }) => [node_id, rule, value]),
      [['10', 'max_frames', 17]],
    );

    const unreadable = await post(key, { prompt: await sampled('notes.latent', Buffer.from('not a safetensors file at all')) });
    assert.deepEqual(
      unreadable.violations.map(({ node_id, rule, value }) => [node_id, rule, value]),
      [
        ['10', 'max_width', 'unbounded'],
        ['10', 'max_batch_size', 'unbounded'],
        ['10', 'max_frames', 'unbounded'],
      ],
    );
    assert.match(unreadable.text, /safetensors header/);
  });

  /** Overwrites `key`'s upload `name` with `content` (`overwrite` first). */
  const overwriteAs = (key: string, name: string, content: Buffer): Promise<TestResponse> =>
    send(gateway.url, '/api/upload/image', {
      method: 'POST',
      key,
      ...multipart([
        { name: 'overwrite', value: 'true' },
        { name: 'image', filename: name, value: content },
      ]),
    });

  test('under max_frames, an upload that overwrites a file with a latent over it, or one the gateway cannot read, is refused', async () => {
    const key = await keyWith({ max_frames: 16 });
    const name = await uploadAs(key, 'kept.latent', latentFile([1, 4, 8, 8]));
    const overwrite = (content: Buffer): Promise<TestResponse> => overwriteAs(key, name, content);
    const stored = (): Promise<Buffer> => readFile(join(comfy.inputDir, name));
    const before = await stored();

    const longer = await overwrite(latentFile([1, 16, 3, 8, 8]));
    assert.equal(longer.status, 403, longer.text);
    assert.equal(longer.json<{ error_code: string }>().error_code, 'PROMPT_POLICY');
    assert.deepEqual(
      longer.json<{ details: Violation[] }>().details.map(({ node_id, rule, limit, value }) => ({ node_id, rule, limit, value })),
      [{ node_id: null, rule: 'max_frames', limit: 16, value: 17 }],
    );
    assert.match(longer.text, /must hold a latent the gateway can read within the limit.*up to 17 frames/);

    // A header longer than the gateway reads: whatever it holds, LoadLatent may load it.
    const longHeader = Buffer.alloc(16);
    longHeader.writeBigUInt64LE(2n * 1024n * 1024n);
    const unread = await overwrite(Buffer.concat([longHeader, Buffer.alloc(1024, 0x20)]));
    assert.equal(unread.status, 403, unread.text);
    assert.deepEqual(
      unread.json<{ details: Violation[] }>().details.map(({ rule, value }) => [rule, value]),
      [['max_frames', 'unbounded']],
    );
    assert.deepEqual(await stored(), before, 'nothing written');

    const within = await overwrite(latentFile([4, 4, 8, 8]));
    assert.equal(within.status, 200, within.text);
    assert.deepEqual(await stored(), latentFile([4, 4, 8, 8]));
    const notLatent = await overwrite(Buffer.from('not a safetensors file, which LoadLatent cannot load'));
    assert.equal(notLatent.status, 200, notLatent.text);
    const image = await overwrite(grayPng(64, 64));
    assert.equal(image.status, 200, `an image: ${image.text}`);
  });

  test('under max_batch_size, an image loader must load a file the gateway reads whole and knows holds one image', async () => {
    const key = await keyWith({ max_batch_size: 4 });
    /** LoadImage of `key`'s upload `name` → VAEEncode, joined (LatentBatch) with an empty latent of `added` → KSampler. */
    const joined = async (name: string, content: Buffer, added = 1): Promise<Graph> => {
      const stored = await uploadAs(key, name, content);
      return graph((g) => {
        g['10'] = { class_type: 'LoadImage', inputs: { image: stored } };
        g['11'] = { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } };
        g['5']!.inputs.batch_size = added;
        g['12'] = { class_type: 'LatentBatch', inputs: { samples1: ['11', 0], samples2: ['5', 0] } };
        g['3']!.inputs.latent_image = ['12', 0];
      });
    };
    const views = (): Array<FakeComfyUI['requests'][number]> => comfy.requests.filter((r) => r.url.includes('/view?'));
    const rule = (res: { violations: Violation[] }): Array<[string | null, string, unknown]> =>
      res.violations.map(({ node_id, rule, value }) => [node_id, rule, value]);

    const viewsBefore = views().length;
    const still = await post(key, { prompt: await joined('still.png', grayPng(64, 64), 3) });
    assert.equal(still.status, 200, still.text);
    assert.deepEqual(
      views()
        .slice(viewsBefore)
        .map((r) => r.headers.range),
      [`bytes=0-${4 * 1024 * 1024}`],
      'one read of the whole file',
    );
    const photo = await post(key, { prompt: await joined('photo.jpg', jpegAfterMetadata(64, 48), 3) });
    assert.equal(photo.status, 200, photo.text);
    const joinedPast = await post(key, { prompt: await joined('again.png', grayPng(64, 64), 4) });
    assert.deepEqual(rule(joinedPast), [['12', 'max_batch_size', 5]], "the join counts the loaded file's one image");

    for (const [name, content] of [
      ['animated.png', animatedPng(grayPng(64, 64), 1000)],
      ['animated.gif', gif(64, 64)],
      ['appended.png', Buffer.concat([grayPng(64, 64), grayPng(64, 64)])],
    ] as const) {
      const refused = await post(key, { prompt: await joined(name, content) });
      assert.equal(refused.status, 403, `${name}: ${refused.text}`);
      assert.deepEqual(
        rule(refused),
        [
          ['10', 'max_batch_size', 'unbounded'],
          ['12', 'max_batch_size', 'unbounded'],
        ],
        `${name}: the loader, and the join of what it loads`,
      );
      assert.match(refused.text, /makes a batch of every frame.*still PNG/, name);
    }

    const free = await keyWith({ max_steps: 30 });
    const stored = await uploadAs(free, 'free.gif', gif(64, 64));
    const viewsBeforeFree = views().length;
    const passed = await post(free, { prompt: graph((g) => (g['10'] = { class_type: 'LoadImage', inputs: { image: stored } })) });
    assert.equal(passed.status, 200, passed.text);
    assert.equal(views().length, viewsBeforeFree, 'no read for a key without max_batch_size');
  });

  test('under max_batch_size, an upload that overwrites a file must be an image known to hold one', async () => {
    const key = await keyWith({ max_batch_size: 2 });
    const name = await uploadAs(key, 'kept.png', grayPng(64, 64));
    const stored = (): Promise<Buffer> => readFile(join(comfy.inputDir, name));
    const before = await stored();
    for (const content of [animatedPng(grayPng(64, 64), 1000), gif(64, 64), Buffer.concat([grayPng(64, 64), grayPng(64, 64)]), latentFile([1, 4, 8, 8])]) {
      const refused = await overwriteAs(key, name, content);
      assert.equal(refused.status, 403, refused.text);
      assert.deepEqual(
        refused.json<{ details: Violation[] }>().details.map(({ node_id, rule, limit, value }) => ({ node_id, rule, limit, value })),
        [{ node_id: null, rule: 'max_batch_size', limit: 2, value: 'unbounded' }],
      );
      assert.match(refused.text, /one it knows holds a single image.*not known to hold one image/);
    }
    assert.deepEqual(await stored(), before, 'nothing written');
    const still = await overwriteAs(key, name, grayPng(32, 32));
    assert.equal(still.status, 200, still.text);
    assert.deepEqual(await stored(), grayPng(32, 32));
  });

  describe('an upload that overwrites a file, under max_width/max_height', () => {
    const uploadForm = (as: string, parts: FormPart[], route = '/api/upload/image'): Promise<TestResponse> =>
      send(gateway.url, route, { method: 'POST', key: as, ...multipart(parts) });
    const image = (content: Buffer, filename: string): FormPart => ({ name: 'image', filename, value: content });
    const overwrite = (value = 'true'): FormPart => ({ name: 'overwrite', value });
    const small = grayPng(512, 512);
    const large = grayPng(2048, 2048);
    const stored = (name: string): Promise<Buffer> => readFile(join(comfy.inputDir, name));
    const inputFiles = async (): Promise<string[]> => (await readdir(comfy.inputDir)).sort();

    /** A key limited to 1024 × 1024 that uploaded the 512 × 512 `name`, and had a prompt loading it admitted. */
    async function stage(name: string): Promise<string> {
      const key = await keyWith({ max_width: 1024, max_height: 1024 });
      const first = await uploadForm(key, [image(small, name)]);
      assert.equal(first.status, 200, first.text);
      assert.equal(first.json<{ name: string }>().name, name);
      const admitted = await post(key, {
        prompt: graph((g) => {
          g['10'] = { class_type: 'LoadImage', inputs: { image: name } };
          g['11'] = { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } };
          g['3']!.inputs.latent_image = ['11', 0];
        }),
      });
      assert.equal(admitted.status, 200, admitted.text);
      return key;
    }

    /** Sends an upload (`upload`) that must be refused with 403 PROMPT_POLICY, leaving `name` as staged and adding no file; returns its violations. */
    async function refusedOverwrite(name: string, upload: () => Promise<TestResponse>): Promise<Array<Violation & { reason: string }>> {
      const filesBefore = await inputFiles();
      const res = await upload();
      assert.equal(res.status, 403, res.text);
      const answer = res.json<{ error_code: string; error: string; details: Array<Violation & { reason: string }> }>();
      assert.equal(answer.error_code, 'PROMPT_POLICY', res.text);
      assert.match(
        answer.error,
        /overwrites a file must be an image the gateway can size \(PNG, JPEG, WebP, GIF or BMP\) within the limits.*Upload it under a new name/,
      );
      assert.deepEqual(await stored(name), small, 'the file is unchanged');
      assert.deepEqual(await inputFiles(), filesBefore, 'no file is added');
      return answer.details;
    }

    test('an image larger than the limits is refused, whatever the order of the fields, and so is a mask written over the file', async () => {
      const name = 'race-large.png';
      const key = await stage(name);
      // overwrite after the image (as ComfyUI's page sends it) or before it, as `true` or `1`.
      for (const parts of [
        [image(large, name), overwrite()],
        [overwrite('1'), image(large, name)],
        [image(large, name), { name: 'subfolder', value: '' }, overwrite('1')],
      ]) {
        const violations = await refusedOverwrite(name, () => uploadForm(key, parts));
        assert.deepEqual(
          violations.map(({ node_id, rule, limit, value }) => ({ node_id, rule, limit, value })),
          [
            { node_id: null, rule: 'max_width', limit: 1024, value: 2048 },
            { node_id: null, rule: 'max_height', limit: 1024, value: 2048 },
          ],
        );
        assert.match(violations[0]!.reason, /2048×2048/);
      }
      // ComfyUI writes a masked image at the size of its mask.
      const maskOf = { name: 'original_ref', value: JSON.stringify({ filename: name, type: 'input' }) };
      await refusedOverwrite(name, () => uploadForm(key, [image(large, name), maskOf, overwrite()], '/api/upload/mask'));
    });

    test('a file whose size cannot be read is refused as unbounded: not an image, or a JPEG whose frame header is past the first MiB', async () => {
      const name = 'race-unread.png';
      const key = await stage(name);
      const segment = Buffer.from([0xff, 0xe1, 0xff, 0xff, ...Buffer.alloc(0xfffd)]);
      const deepJpeg = Buffer.concat([
        Buffer.from([0xff, 0xd8]),
        ...Array.from({ length: 17 }, () => segment),
        Buffer.from([0xff, 0xc0, 0, 11, 8, 0, 16, 0, 16, 1, 1, 0x11, 0]),
      ]);
      for (const content of [Buffer.from('not an image, whatever its name says'), deepJpeg]) {
        const violations = await refusedOverwrite(name, () => uploadForm(key, [image(content, name), overwrite()]));
        assert.deepEqual(
          violations.map(({ rule, value }) => [rule, value]),
          [['max_width', 'unbounded']],
        );
      }
    });

    test('an image within the limits overwrites; an upload without overwrite, a key without limits and an admin key upload as before', async () => {
      const name = 'race-within.png';
      const key = await stage(name);
      // A PNG, and a JPEG whose header is read past the first chunks of the stream.
      for (const content of [grayPng(512, 512, 200), jpegAfterMetadata(1024, 600)]) {
        const replaced = await uploadForm(key, [image(content, name), overwrite()]);
        assert.equal(replaced.status, 200, replaced.text);
        assert.equal(replaced.json<{ name: string }>().name, name);
        assert.deepEqual(await stored(name), content, 'the file is replaced');
      }
      // Without overwrite (no field, or one that is not `true`/`1`, before or after the image) a large image goes in under a
      // name of its own, and a loader of it is refused at prompt time.
      for (const parts of [[image(large, name)], [overwrite('false'), image(large, name)], [image(large, name), overwrite('yes')]]) {
        const res = await uploadForm(key, parts);
        assert.equal(res.status, 200, res.text);
        const storedAs = res.json<{ name: string }>().name;
        assert.notEqual(storedAs, name);
        const later = await post(key, { prompt: graph((g) => (g['10'] = { class_type: 'LoadImage', inputs: { image: storedAs } })) });
        assert.deepEqual(
          later.violations.map(({ node_id, rule, value }) => [node_id, rule, value]),
          [
            ['10', 'max_width', 2048],
            ['10', 'max_height', 2048],
          ],
        );
      }
      // A user key whose policy sets neither limit (the default policy here), and an admin key under a size limit.
      for (const [as, own] of [
        [await keyWith(null), 'free.png'],
        [await keyWith({ max_width: 1024 }, 'admin'), 'admin.png'],
      ] as const) {
        assert.equal((await uploadForm(as, [image(small, own)])).status, 200);
        const replaced = await uploadForm(as, [image(large, own), overwrite()]);
        assert.equal(replaced.status, 200, replaced.text);
        assert.deepEqual(await stored(own), large);
      }
    });
  });

  test('a stitch wider than max_width and a doubling chain of batch joins past max_batch_size are refused at the join, with the reason', async () => {
    const key = await keyWith({ max_width: 1024, max_height: 1024, max_batch_size: 4 });
    /** Two decoded images of `size` stitched side by side (`spacing` apart), encoded and sampled again. */
    const stitched = (size: number, spacing: number): Graph =>
      graph((g) => {
        g['5']!.inputs = { width: size, height: size, batch_size: 1 };
        g['6'] = { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } };
        g['7'] = {
          class_type: 'ImageStitch',
          inputs: { image1: ['6', 0], image2: ['6', 0], direction: 'right', match_image_size: false, spacing_width: spacing, spacing_color: 'white' },
        };
        g['8'] = { class_type: 'VAEEncode', inputs: { pixels: ['7', 0], vae: ['4', 2] } };
        g['10'] = { class_type: 'KSampler', inputs: { seed: 1, steps: 20, model: ['4', 0], latent_image: ['8', 0] } };
        g['9']!.inputs.images = ['10', 0];
      });
    const wide = await post(key, { prompt: stitched(512, 2) });
    assert.equal(wide.status, 403, wide.text);
    const found = wide.violations as Array<Violation & { reason?: string }>;
    assert.deepEqual(
      found.map(({ node_id, rule, value }) => ({ node_id, rule, value })),
      [{ node_id: '7', rule: 'max_width', value: 1026 }],
    );
    assert.match(found[0]!.reason!, /joins images side by side/);

    const doubled = await post(key, {
      prompt: graph((g) => {
        g['5']!.inputs.batch_size = 4;
        g['6'] = { class_type: 'LatentBatch', inputs: { samples1: ['5', 0], samples2: ['5', 0] } };
        g['7'] = { class_type: 'LatentBatch', inputs: { samples1: ['6', 0], samples2: { __value__: ['6', -0] } } };
        g['3']!.inputs.latent_image = ['7', 0];
      }),
    });
    assert.equal(doubled.status, 403, doubled.text);
    assert.deepEqual(
      (doubled.violations as Array<Violation & { reason?: string }>).map(({ node_id, rule, value, reason }) => ({
        node_id,
        rule,
        value,
        why: /joins batches/.test(reason ?? ''),
      })),
      [
        { node_id: '6', rule: 'max_batch_size', value: 8, why: true },
        { node_id: '7', rule: 'max_batch_size', value: 16, why: true },
      ],
    );

    const within = await post(key, { prompt: stitched(512, 0) });
    assert.equal(within.status, 200, `a stitch of two 512 images is 1024 wide: ${within.text}`);
    const batched = await post(key, {
      prompt: graph((g) => {
        g['5']!.inputs.batch_size = 2;
        g['6'] = { class_type: 'LatentBatch', inputs: { samples1: ['5', 0], samples2: ['5', 0] } };
        g['3']!.inputs.latent_image = ['6', 0];
      }),
    });
    assert.equal(batched.status, 200, `2 + 2 is within 4: ${batched.text}`);
  });

  test('a quarter turn swaps the sides the size walk bounds: past max_height at the turn when the limits differ, past max_width at a later stitch', async () => {
    /** The decoded image of `width` × `height` turned by `rotation`, stitched (match_image_size false) to the right of a decoded 512 square or not. */
    const turned = (width: number, height: number, rotation: unknown, stitch: boolean): Graph =>
      graph((g) => {
        g['5']!.inputs = { width, height, batch_size: 1 };
        g['10'] = { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } };
        g['11'] = { class_type: 'ImageRotate', inputs: { image: ['10', 0], rotation } };
        g['9']!.inputs.images = ['11', 0];
        if (!stitch) return;
        g['12'] = { class_type: 'EmptyLatentImage', inputs: { width: 512, height: 512, batch_size: 1 } };
        g['13'] = { class_type: 'VAEDecode', inputs: { samples: ['12', 0], vae: ['4', 2] } };
        g['14'] = {
          class_type: 'ImageStitch',
          inputs: { image1: ['11', 0], image2: ['13', 0], direction: 'right', match_image_size: false, spacing_width: 0, spacing_color: 'white' },
        };
        g['9']!.inputs.images = ['14', 0];
      });
    const brief = (violations: Violation[]): unknown[] => violations.map(({ node_id, rule, value }) => ({ node_id, rule, value }));

    const wideKey = await keyWith({ max_width: 2048, max_height: 1024 });
    const tall = await post(wideKey, { prompt: turned(2048, 512, '90 degrees', false) });
    assert.equal(tall.status, 403, tall.text);
    assert.deepEqual(brief(tall.violations), [{ node_id: '11', rule: 'max_height', value: 2048 }]);
    assert.match((tall.violations[0] as Violation & { reason?: string }).reason ?? '', /quarter/);
    const linkedTurn = turned(2048, 512, ['15', 0], false);
    linkedTurn['15'] = { class_type: 'PrimitiveString', inputs: { value: '180 degrees' } };
    const linked = await post(wideKey, { prompt: linkedTurn });
    assert.deepEqual(brief(linked.violations), [{ node_id: '11', rule: 'max_height', value: 2048 }]);
    const half = await post(wideKey, { prompt: turned(2048, 512, '180 degrees', false) });
    assert.equal(half.status, 200, `a half turn keeps 2048 × 512: ${half.text}`);
    const small = await post(wideKey, { prompt: turned(1024, 512, { __value__: '270 degrees' }, false) });
    assert.equal(small.status, 200, `1024 × 512 turned is 512 × 1024: ${small.text}`);

    const squareKey = await keyWith({ max_width: 1024, max_height: 1024 });
    const stitched = await post(squareKey, { prompt: turned(512, 1024, '270 degrees', true) });
    assert.equal(stitched.status, 403, stitched.text);
    assert.deepEqual(brief(stitched.violations), [{ node_id: '14', rule: 'max_width', value: 1536 }]);
    const upright = await post(squareKey, { prompt: turned(1024, 512, '90 degrees', true) });
    assert.equal(upright.status, 200, `1024 × 512 turned is 512 wide, 1024 with the square: ${upright.text}`);
  });

  test('max_steps holds the steps ExtendIntermediateSigmas makes: the steps of the sigmas it is given times its own', async () => {
    const key = await keyWith({ max_steps: 30 });
    /** A SamplerCustom whose sigmas are BasicScheduler's `scheduled` steps, each made `extended` steps; `source` replaces the scheduler. */
    const extended = (scheduled: number, extendedBy: number, source?: { class_type: string; inputs: Record<string, unknown> }): Graph =>
      graph((g) => {
        g['20'] = source ?? { class_type: 'BasicScheduler', inputs: { model: ['4', 0], scheduler: 'normal', steps: scheduled, denoise: 1 } };
        g['21'] = { class_type: 'ExtendIntermediateSigmas', inputs: { sigmas: ['20', 0], steps: extendedBy, spacing: 'linear' } };
        g['22'] = { class_type: 'SamplerCustom', inputs: { model: ['4', 0], noise_seed: 1, sigmas: ['21', 0], latent_image: ['5', 0] } };
        delete g['3'];
        g['9']!.inputs.images = ['22', 0];
      });
    const brief = (violations: Violation[]): unknown[] => violations.map(({ node_id, rule, value }) => ({ node_id, rule, value }));

    const over = await post(key, { prompt: extended(20, 4) });
    assert.equal(over.status, 403, over.text);
    assert.deepEqual(brief(over.violations), [{ node_id: '21', rule: 'max_steps', value: 80 }]);
    assert.match((over.violations[0] as Violation & { reason?: string }).reason ?? '', /product/);
    const unknown = await post(key, { prompt: extended(20, 2, { class_type: 'CustomSigmas', inputs: { schedule: '14.6, 7, 3, 1, 0' } }) });
    assert.deepEqual(brief(unknown.violations), [{ node_id: '21', rule: 'max_steps', value: 'unbounded' }]);

    const within = await post(key, { prompt: extended(10, 3) });
    assert.equal(within.status, 200, `10 steps made 3 each are 30: ${within.text}`);
  });

  test('a link the size walk must follow is followed however it is written: slot -0 or 0.0, or wrapped as {"__value__": [...]}', async () => {
    const key = await keyWith({ max_width: 1024, max_height: 1024 });
    // A 1024 latent composited onto by an 8 one keeps the 1024 size: enlarged 4×, it is 4096 wide.
    const text = (link: string, scale: string): string =>
      JSON.stringify({
        prompt: graph((g) => {
          g['5']!.inputs = { width: 1024, height: 1024, batch_size: 1 };
          g['6'] = { class_type: 'EmptyLatentImage', inputs: { width: 8, height: 8, batch_size: 1 } };
          g['7'] = { class_type: 'LatentComposite', inputs: { samples_to: 'LINK', samples_from: ['6', 0], x: 0, y: 0, feather: 0 } };
          g['8'] = { class_type: 'LatentUpscaleBy', inputs: { samples: ['7', 0], upscale_method: 'nearest-exact', scale_by: 'SCALE' } };
          g['9']!.inputs.images = ['8', 0];
        }),
      })
        .replace('"LINK"', link)
        .replace('"SCALE"', scale);
    for (const link of ['["3",-0]', '["3",0.0]', '{"__value__":["3",0]}']) {
      const sentBefore = promptsSent();
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: text(link, '4.0'), headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 403, `${link}: ${res.text}`);
      assert.deepEqual(
        res.json<{ details: Violation[] }>().details,
        [
          { node_id: '8', rule: 'max_width', limit: 1024, value: 4096 },
          { node_id: '8', rule: 'max_height', limit: 1024, value: 4096 },
        ],
        link,
      );
      assert.equal(promptsSent(), sentBefore, `${link}: ComfyUI received nothing`);
    }
    const within = await send(gateway.url, '/api/prompt', {
      method: 'POST',
      key,
      body: text('["3",-0]', '1.0'),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(within.status, 200, within.text);
  });

  test('a limited input written as Python writes numbers (50.0, 5e1, 50.00) is read as the number it is', async () => {
    const key = await keyWith({ max_steps: 25 });
    for (const steps of ['50.0', '5e1', '50.00', '5.0E+1']) {
      const text = JSON.stringify({ prompt: graph() }).replace('"steps":20', `"steps":${steps}`);
      assert.ok(text.includes(`"steps":${steps}`), steps);
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: text, headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 403, `${steps}: ${res.text}`);
      assert.deepEqual(res.json<{ details: Violation[] }>().details, [{ node_id: '3', rule: 'max_steps', limit: 25, value: 50 }], steps);
    }
  });

  test('a limit is not fooled by a number just above it, past the doubles or spelt otherwise; a number is read as ComfyUI reads it', async () => {
    const key = await keyWith({ max_width: 1_000_000_000, max_steps: 25 });
    const withWidth = (width: string, steps = '20'): string => {
      const text = JSON.stringify({ prompt: graph() }).replace('"width":512', `"width":${width}`).replace('"steps":20', `"steps":${steps}`);
      assert.ok(text.includes(`"width":${width}`) && text.includes(`"steps":${steps}`), width);
      return text;
    };
    const headers = { 'content-type': 'application/json' };
    for (const [width, steps] of [
      ['1000000001', '20'],
      ['1000000000.000001', '20'],
      ['18446744073709551617', '20'],
      ['1e400', '20'],
      ['1000000000', '25.000001'],
      ['1000000000', '"25.000001"'],
      ['1000000000', '"2.6e1"'],
    ]) {
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: withWidth(width!, steps), headers });
      assert.equal(res.status, 403, `${width} ${steps}: ${res.text}`);
      assert.equal(res.json<{ details: Violation[] }>().details.length, 1, `${width} ${steps}: ${res.text}`);
    }
    // Python reads these as the floats 1e9 and 25.0, which ComfyUI's int() makes the limits, and -0 as 0: within.
    for (const [width, steps] of [
      ['1000000000.00000001', '25.0000000000000001'],
      ['-0', '2.5e1'],
    ]) {
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: withWidth(width!, steps), headers });
      assert.equal(res.status, 200, `${width} ${steps}: ${res.text}`);
    }
  });

  test("a boolean where ComfyUI takes a number counts as Python's int() and float() read it: true is 1, false is 0", async () => {
    const key = await keyWith({ max_width: 1024, max_height: 1024 });
    /** The 1024 image the latent of node 5 decodes to, given to `node` as node 7, which node 9 saves. */
    const decoded = (node: Graph[string]): Graph =>
      graph((g) => {
        g['5']!.inputs = { width: 1024, height: 1024, batch_size: 1 };
        g['6'] = { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } };
        g['7'] = node;
        g['9']!.inputs.images = ['7', 0];
      });
    const refused: Array<[string, Graph, Array<Partial<Violation>>]> = [
      [
        'a spacing of true between two 512 halves (ImageStitch makes it 2 pixels)',
        graph((g) => {
          g['6'] = { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } };
          g['7'] = {
            class_type: 'ImageStitch',
            inputs: { image1: ['6', 0], image2: ['6', 0], direction: 'right', match_image_size: false, spacing_width: true, spacing_color: 'white' },
          };
          g['9']!.inputs.images = ['7', 0];
        }),
        [{ node_id: '7', rule: 'max_width', value: 1026 }],
      ],
      [
        'padding of true on a 1024 image',
        decoded({ class_type: 'ImagePadForOutpaint', inputs: { image: ['6', 0], left: true, top: 0, right: 0, bottom: 0, feathering: 0 } }),
        [{ node_id: '7', rule: 'max_width', value: 1025 }],
      ],
      [
        'a width of false beside a height: the width follows the aspect ratio',
        decoded({ class_type: 'ImageScale', inputs: { image: ['6', 0], upscale_method: 'nearest-exact', width: false, height: 512, crop: 'disabled' } }),
        [{ node_id: '7', rule: 'max_width', value: 'unbounded' }],
      ],
    ];
    for (const [what, prompt, violations] of refused) {
      const res = await post(key, { prompt });
      assert.equal(res.status, 403, `${what}: ${res.text}`);
      assert.deepEqual(
        res.violations.map(({ node_id, rule, value }) => ({ node_id, rule, value })),
        violations,
        what,
      );
    }
    const small = await keyWith({ max_width: 512, max_height: 512 });
    const megapixel = await post(small, {
      prompt: graph((g) => {
        g['6'] = { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } };
        g['7'] = { class_type: 'ImageScaleToTotalPixels', inputs: { image: ['6', 0], upscale_method: 'nearest-exact', megapixels: true } };
        g['9']!.inputs.images = ['7', 0];
      }),
    });
    assert.equal(megapixel.status, 403, `megapixels of true (1,048,576 pixels) under 512 × 512: ${megapixel.text}`);
    assert.deepEqual(
      megapixel.violations.map(({ node_id, rule, value }) => ({ node_id, rule, value })),
      [{ node_id: '7', rule: 'max_width', value: 1 }],
    );
  });

  test('a body the gateway cannot read as JSON, which ComfyUI may still read, gets 400 and ComfyUI gets nothing', async () => {
    const key = await keyWith({ deny_nodes: ['Save*'], max_steps: 25 });
    const text = JSON.stringify({ prompt: graph((g) => (g['3']!.inputs.steps = 500)) });
    // Python's json reads NaN and Infinity, and aiohttp decodes the body with the charset its Content-Type names.
    const bodies: Array<[string, Buffer, string]> = [
      ['NaN', Buffer.from(`${text.slice(0, -1)}, "note": NaN}`), 'application/json'],
      ['-Infinity', Buffer.from(`${text.slice(0, -1)}, "note": -Infinity}`), 'application/json'],
      ['UTF-16', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]), 'application/json; charset=utf-16'],
    ];
    for (const [what, body, contentType] of bodies) {
      const sentBefore = promptsSent();
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body, headers: { 'content-type': contentType } });
      assert.equal(res.status, 400, `${what}: ${res.text}`);
      assert.equal(res.json().error_code, 'INVALID_REQUEST', what);
      assert.equal(promptsSent(), sentBefore, `${what}: ComfyUI received nothing`);
    }
  });

  test('max_prompt_bytes: measured on the raw body, refused with the size', async () => {
    const key = await keyWith({ max_prompt_bytes: 600 });
    const small = JSON.stringify({ prompt: graph() });
    assert.ok(Buffer.byteLength(small) <= 600, 'the plain graph fits');
    assert.equal((await post(key, JSON.parse(small) as Record<string, unknown>)).status, 200);
    const body = { prompt: graph(), extra_data: { extra_pnginfo: { workflow: { note: 'x'.repeat(600) } } } };
    const refused = await post(key, body);
    assert.equal(refused.status, 403);
    assert.deepEqual(refused.violations, [{ node_id: null, rule: 'max_prompt_bytes', limit: 600, value: Buffer.byteLength(JSON.stringify(body)) }]);
  });

  test('the default policy applies to user keys without a policy, not to admin keys; a key policy replaces it', async () => {
    const heavy = graph((g) => (g['3']!.inputs.steps = 50));
    const plainUser = (await createKey(gateway.url, { name: 'plain user', rate_limit: 1000 }, admin)).api_key;
    const refused = await post(plainUser, { prompt: heavy });
    assert.equal(refused.status, 403, refused.text);
    assert.deepEqual(refused.violations, [{ node_id: '3', rule: 'max_steps', limit: 30, value: 50 }]);
    const loader = graph((g) => (g['6'] = { class_type: 'LoadImageMask', inputs: { image: 'mask.png', channel: 'alpha' } }));
    assert.deepEqual((await post(plainUser, { prompt: loader })).violations, [
      { node_id: '6', rule: 'deny_nodes', limit: 'LoadImage*', value: 'LoadImageMask' },
    ]);
    assert.equal((await post(plainUser, { prompt: graph() })).status, 200, 'within the default policy');

    const plainAdmin = (await createKey(gateway.url, { name: 'plain admin', role: 'admin', rate_limit: 1000 }, admin)).api_key;
    assert.equal((await post(plainAdmin, { prompt: heavy })).status, 200, 'an admin key is not held to the default policy');

    const ownUser = await keyRecordWith({ max_steps: 100 });
    assert.equal((await post(ownUser.api_key, { prompt: heavy })).status, 200, "a user key's own policy replaces the default");
    const ownAdmin = await keyWith({ max_steps: 10 }, 'admin');
    assert.deepEqual(
      (await post(ownAdmin, { prompt: graph() })).violations,
      [{ node_id: '3', rule: 'max_steps', limit: 10, value: 20 }],
      "an admin key's own policy applies",
    );

    // Clearing a key's policy brings the default back.
    assert.equal((await send(gateway.url, `/api/keys/${ownUser.key_id}`, { method: 'PATCH', key: admin, body: { policy: null } })).status, 200);
    assert.equal((await post(ownUser.api_key, { prompt: heavy })).status, 403, 'the default policy again');
  });

  test('set, read back, replaced and cleared through the API; invalid policies get 400 listing each problem, and nothing changes', async () => {
    const created = await send(gateway.url, '/api/keys', { method: 'POST', key: admin, body: { name: 'p', policy: { max_steps: 40, deny_nodes: ['Save*'] } } });
    assert.equal(created.status, 200, created.text);
    const { key_id: keyId, policy } = created.json<{ key_id: string; policy: unknown }>();
    assert.deepEqual(policy, { deny_nodes: ['Save*'], max_steps: 40 });
    const shown = async (): Promise<unknown> => (await send(gateway.url, `/api/keys/${keyId}`, { key: admin })).json().policy;
    assert.deepEqual(await shown(), { deny_nodes: ['Save*'], max_steps: 40 });

    const bad: Array<[unknown, string[]]> = [
      [{ max_width: -1 }, ['policy.max_width']],
      [{ max_steps: 0 }, ['policy.max_steps']],
      [{ max_steps: 2.5 }, ['policy.max_steps']],
      [{ max_steps: '30' }, ['policy.max_steps']],
      [{ max_frames: 1e12 }, ['policy.max_frames']],
      [{ allow_nodes: 'KSampler' }, ['policy.allow_nodes']],
      [{ deny_nodes: ['ok', 5] }, ['policy.deny_nodes']],
      [{ deny_nodes: [''] }, ['policy.deny_nodes']],
      [{ workflows_only: 'yes' }, ['policy.workflows_only']],
      [{ max_nodes: 3 }, ['policy.max_nodes']],
      [[], ['policy']],
      ['strict', ['policy']],
      [
        { bogus: 1, deny_nodes: [1], max_width: -5, max_execution_seconds: null, workflows_only: 1 },
        ['policy.bogus', 'policy.deny_nodes', 'policy.max_width', 'policy.max_execution_seconds', 'policy.workflows_only'],
      ],
    ];
    const state = async (): Promise<string> => {
      const keys = (await send(gateway.url, '/api/keys', { key: admin })).json<{ keys: Array<Record<string, unknown>> }>().keys;
      return JSON.stringify(keys.map(({ last_used: _used, ...rest }) => rest));
    };
    const before = await state();
    for (const [value, fields] of bad) {
      for (const [method, path] of [
        ['PATCH', `/api/keys/${keyId}`],
        ['POST', '/api/keys'],
      ] as const) {
        const res = await send(gateway.url, path, { method, key: admin, body: { name: 'changed', policy: value } });
        const where = `${method} policy ${JSON.stringify(value)}`;
        assert.equal(res.status, 400, `${where}: ${res.text}`);
        const answer = res.json<{ error_code: string; details: Array<{ field: string; problem: string }> }>();
        assert.equal(answer.error_code, 'INVALID_REQUEST', where);
        assert.deepEqual(
          answer.details.map((d) => d.field),
          fields,
          where,
        );
      }
    }
    assert.equal(await state(), before, 'nothing changed');

    const replaced = await send(gateway.url, `/api/keys/${keyId}`, { method: 'PATCH', key: admin, body: { policy: { workflows_only: true } } });
    assert.equal(replaced.status, 200, replaced.text);
    assert.deepEqual(replaced.json<{ key: { policy: unknown } }>().key.policy, { workflows_only: true });
    assert.equal((await send(gateway.url, `/api/keys/${keyId}`, { method: 'PATCH', key: admin, body: { policy: null } })).status, 200);
    assert.equal(await shown(), null);
  });

  test('a --default-policy file that cannot be used stops the gateway with exit code 2 and the reason', async () => {
    const bad = join(directory.path, 'bad-policy.json');
    const cases: Array<[string, RegExp]> = [
      [
        '{"max_steps": -3, "nope": true}',
        /--default-policy: .*bad-policy\.json is not a valid prompt policy: default policy\.nope unknown field.*default policy\.max_steps must be a whole number/,
      ],
      ['{"max_steps": 30', /--default-policy: .*bad-policy\.json is not JSON/],
    ];
    for (const [text, message] of cases) {
      await writeFile(bad, text);
      const viaFlag = await runCli(['--port', '0', '--upstream', comfy.url, '--user-directory', join(directory.path, 'unused'), '--default-policy', bad]);
      assert.equal(viaFlag.code, 2, viaFlag.stderr);
      assert.match(viaFlag.stderr, message);
      const viaEnv = await runCli(['--port', '0', '--upstream', comfy.url, '--user-directory', join(directory.path, 'unused')], {
        COMFY_GATE_DEFAULT_POLICY: bad,
      });
      assert.equal(viaEnv.code, 2, viaEnv.stderr);
      assert.match(viaEnv.stderr, message);
    }
    const missing = await runCli(['--port', '0', '--upstream', comfy.url, '--default-policy', join(directory.path, 'no-such.json')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--default-policy: .*no-such\.json cannot be read \(ENOENT\)/);
  });
});

describe('prompt policy on a ComfyUI without node replacements', () => {
  test('prompts are checked by their class_type as sent, and the 404 is kept: ComfyUI is not asked again for each prompt', async () => {
    const comfy = await startFakeComfyUI({ nodeReplacements: false });
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    try {
      const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
      const key = (await createKey(gateway.url, { name: 'policed', rate_limit: 1000, policy: { deny_nodes: ['GeminiNanoBanana2*'], max_steps: 25 } }, admin))
        .api_key;
      const gemini = { '1': { class_type: 'GeminiNanoBanana2', inputs: { prompt: 'a cat', model: 'gemini', seed: 1 } } };
      const refused = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: gemini } });
      assert.equal(refused.status, 403, refused.text);
      for (let i = 0; i < 3; i += 1) {
        const res = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: SAVE_WORKFLOW } });
        assert.equal(res.status, 200, res.text);
      }
      const asked = comfy.requests.filter((r) => r.url.endsWith('/node_replacements'));
      assert.equal(asked.length, 1, 'asked once, then kept with the catalog answers');
    } finally {
      await gateway.stop();
      await comfy.close();
    }
  });
});

for (const interrupts of INTERRUPT_MODES) {
  describe(`jobs stopped while they run: max_execution_seconds and daily_execution_seconds (${interrupts} interrupts)`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let admin: string;

    before(async () => {
      // About 200 ms per execution event: the save workflow runs for more than four seconds.
      comfy = await startFakeComfyUI({ stepDelayMs: 200, interrupts });
      gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '3'] });
      admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    });
    after(async () => {
      await gateway?.stop();
      await comfy?.close();
    });

    test('a job running longer is interrupted in ComfyUI and ends as error with the policy limit as its reason', async () => {
      const key = (await createKey(gateway.url, { name: 'brief', rate_limit: 1000, policy: { max_execution_seconds: 1 } }, admin)).api_key;
      const queued = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: SAVE_WORKFLOW } });
      assert.equal(queued.status, 200, queued.text);
      const id = queued.json<{ prompt_id: string }>().prompt_id;
      const job = await waitFor(
        async () => {
          const res = await send(gateway.url, `/api/gateway/jobs/${id}`, { key });
          const found = res.json<{ status: string; execution_seconds: number | null; error: { message: string; exception_type?: string } | null }>();
          return ['success', 'error', 'interrupted'].includes(found.status) ? found : undefined;
        },
        'the job to end',
        15_000,
      );
      assert.equal(job.status, 'error', JSON.stringify(job));
      assert.match(job.error?.message ?? '', /longer than the 1 seconds .*max_execution_seconds/);
      assert.equal(job.error?.exception_type, 'ExecutionTimeLimit');
      assert.ok(job.execution_seconds !== null && job.execution_seconds >= 1 && job.execution_seconds < 3, `ran about a second: ${job.execution_seconds}`);
      const interrupts = comfy.requests.filter((r) => r.method === 'POST' && r.url === '/api/interrupt');
      assert.equal(interrupts.length, 1, 'one targeted interrupt');
    });

    test('once the budget is spent the running job is interrupted, and the jobs behind it end as error without running: those queued in ComfyUI are deleted from its queue', async () => {
      const created = await createKey(gateway.url, { name: 'budget', rate_limit: 1000, daily_execution_seconds: 2 }, admin);
      const interruptsSent = (): number => comfy.requests.filter((r) => r.method === 'POST' && r.url === '/api/interrupt').length;
      const interruptsBefore = interruptsSent();
      const ids: string[] = [];
      // The first runs; with an upstream queue depth of 3, the next two wait in ComfyUI's queue and the last in the gateway.
      for (let i = 0; i < 4; i += 1) {
        const queued = await send(gateway.url, '/api/prompt', { method: 'POST', key: created.api_key, body: { prompt: SAVE_WORKFLOW } });
        assert.equal(queued.status, 200, queued.text);
        ids.push(queued.json<{ prompt_id: string }>().prompt_id);
      }
      const [first, ...behind] = ids;
      assert.deepEqual(
        behind.map((id) => comfy.prompts.some((prompt) => prompt.id === id)),
        [true, true, false],
        'two wait in ComfyUI, one in the gateway',
      );
      type Ended = { status: string; started_at: number | null; execution_seconds: number | null; error: { message: string; exception_type: string } | null };
      const ended: Ended[] = [];
      for (const id of ids) {
        ended.push(
          await waitFor(
            async () => {
              const job = (await send(gateway.url, `/api/gateway/jobs/${id}`, { key: created.api_key })).json<Ended>();
              return ['success', 'error', 'interrupted', 'cancelled'].includes(job.status) ? job : undefined;
            },
            'the job to end',
            15_000,
          ),
        );
      }
      assert.deepEqual(
        comfy.started.filter((id) => ids.includes(id)),
        [first],
        'ComfyUI started the first job only',
      );
      assert.deepEqual(
        comfy.deletedFromQueue.filter((id) => ids.includes(id)).sort(),
        behind.slice(0, 2).sort(),
        'the two in ComfyUI were deleted from its queue',
      );
      for (const job of ended) {
        assert.equal(job.status, 'error', JSON.stringify(job));
        assert.equal(job.error?.exception_type, 'ExecutionBudgetExceeded');
      }
      const [ran, ...notRun] = ended;
      assert.match(ran!.error?.message ?? '', /daily_execution_seconds \(2 seconds per UTC day\) is spent; the gateway interrupted the job/);
      assert.ok(ran!.execution_seconds! >= 2 && ran!.execution_seconds! < 3.5, `the first ran about the budget: ${ran!.execution_seconds}`);
      for (const job of notRun) {
        assert.match(job.error?.message ?? '', /daily_execution_seconds \(2 seconds per UTC day\) was spent before the job started; it was not run/);
        assert.equal(job.started_at, null, JSON.stringify(job));
      }
      for (const id of behind) {
        const history = (await send(gateway.url, `/api/history/${id}`, { key: created.api_key })).json<Record<string, { status: { status_str: string } }>>();
        assert.equal(history[id]?.status.status_str, 'error', `${id}: its history entry tells the error`);
      }
      assert.equal(interruptsSent() - interruptsBefore, 1, 'one targeted interrupt, for the running job');
      // The run is metered just after its end is written.
      const metered = await waitFor(async () => {
        const usage = (await send(gateway.url, '/api/usage', { key: created.api_key })).json<{ usage_stats: { execution_seconds: number } }>();
        return usage.usage_stats.execution_seconds >= 2 && usage.usage_stats.execution_seconds;
      }, 'the run to be metered');
      assert.ok(metered < 3.5, `metered: ${metered}`);
      const refused = await send(gateway.url, '/api/prompt', { method: 'POST', key: created.api_key, body: { prompt: SAVE_WORKFLOW } });
      assert.equal(refused.status, 429);
      assert.equal(refused.json<{ error_code: string }>().error_code, 'EXECUTION_BUDGET_EXCEEDED');
    });
  });
}

describe("interrupts due while the gateway's event socket to ComfyUI was down", () => {
  const limits = [
    { field: 'max_execution_seconds', key: { policy: { max_execution_seconds: 1 } }, exceptionType: 'ExecutionTimeLimit' },
    { field: 'daily_execution_seconds', key: { daily_execution_seconds: 1 }, exceptionType: 'ExecutionBudgetExceeded' },
  ];
  for (const limit of limits) {
    test(`${limit.field}: reached while the socket is down, the job is interrupted as soon as the socket is back`, async () => {
      // About 200 ms per execution event: the save workflow runs for more than four seconds.
      const comfy = await startFakeComfyUI({ stepDelayMs: 200 });
      // A gateway of its own: its 30 s sweep, which would send the interrupt too, comes after the test.
      const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
      try {
        const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
        const key = (await createKey(gateway.url, { name: 'limited', rate_limit: 1000, ...limit.key }, admin)).api_key;
        const [socketId] = await waitFor(() => comfy.openSockets().length === 1 && comfy.openSockets(), "the gateway's socket");
        const queued = await send(gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: SAVE_WORKFLOW } });
        assert.equal(queued.status, 200, queued.text);
        const id = queued.json<{ prompt_id: string }>().prompt_id;
        await waitFor(
          async () => (await send(gateway.url, `/api/gateway/jobs/${id}`, { key })).json<{ status: string }>().status === 'running',
          'the job to run',
        );
        // The socket drops and cannot be opened again for 1.5 s: the limit is reached meanwhile.
        comfy.refuseSockets(true);
        comfy.cutSocket(socketId!, 0);
        await sleep(1500);
        assert.deepEqual(
          comfy.requests.filter((r) => r.url === '/api/interrupt'),
          [],
          'no interrupt while the gateway cannot tell that the job runs',
        );
        comfy.refuseSockets(false);
        await waitFor(() => comfy.openSockets().includes(socketId!), 'the socket to be opened again', 5000);
        const reopenedAt = Date.now();
        await waitFor(() => comfy.requests.some((r) => r.method === 'POST' && r.url === '/api/interrupt'), 'the interrupt', 2000);
        const interruptedAfterMs = Date.now() - reopenedAt;
        const job = await waitFor(
          async () => {
            const found = (await send(gateway.url, `/api/gateway/jobs/${id}`, { key })).json<{ status: string; error: { exception_type?: string } | null }>();
            return ['success', 'error', 'interrupted'].includes(found.status) ? found : undefined;
          },
          'the job to end',
          5000,
        );
        assert.equal(job.status, 'error', JSON.stringify(job));
        assert.equal(job.error?.exception_type, limit.exceptionType);
        assert.ok(interruptedAfterMs < 1000, `interrupted ${interruptedAfterMs} ms after the socket was back`);
      } finally {
        await gateway.stop();
        await comfy.close();
      }
    });
  }
});

describe('comfy-gate keys --policy', () => {
  test('create and update take JSON, @FILE or none; a bad policy exits with 2 and changes nothing', async () => {
    const dir = await tempUserDirectory();
    try {
      const keys = (...args: string[]) => runCli(['keys', ...args, '--user-directory', dir.path]);
      const created = await keys('create', '--name', 'cli', '--policy', '{"max_steps": 40, "deny_nodes": ["Save*"]}', '--json');
      assert.equal(created.code, 0, created.stderr);
      const { key_id: keyId, policy } = JSON.parse(created.stdout) as { key_id: string; policy: unknown };
      assert.deepEqual(policy, { deny_nodes: ['Save*'], max_steps: 40 });

      const file = join(dir.path, 'policy.json');
      await writeFile(file, '{"workflows_only": true}');
      const fromFile = await keys('update', keyId, '--policy', `@${file}`, '--json');
      assert.equal(fromFile.code, 0, fromFile.stderr);
      assert.deepEqual((JSON.parse(fromFile.stdout) as { key: { policy: unknown } }).key.policy, { workflows_only: true });

      const shown = await keys('show', keyId);
      assert.match(shown.stdout, /^policy: +\{"workflows_only":true\}$/m);

      for (const [value, message] of [
        ['{"max_steps": -1}', /--policy: max_steps must be a whole number from 1 to 1000000000/],
        ['{"max_steps": 4', /--policy must be a JSON object, @FILE or none; the value is not JSON/],
        [`@${join(dir.path, 'missing.json')}`, /--policy @.*missing\.json: the file cannot be read \(ENOENT\)/],
      ] as const) {
        const refused = await keys('update', keyId, '--policy', value);
        assert.equal(refused.code, 2, refused.stderr);
        assert.match(refused.stderr, message);
      }
      const cleared = await keys('update', keyId, '--policy', 'none', '--json');
      assert.equal(cleared.code, 0, cleared.stderr);
      assert.equal((JSON.parse(cleared.stdout) as { key: { policy: unknown } }).key.policy, null);
    } finally {
      await dir.remove();
    }
  });
});
