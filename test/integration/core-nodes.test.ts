// ComfyUI core nodes whose file access the loader checks did not cover: dataset folders and savers, RecordAudio's unchecked path, and save prefixes that leave their folder.

import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SAVE_WORKFLOW, waitForHistory } from '../helpers/comfy-client.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { multipart } from '../helpers/multipart.js';
import { startTwoKeyStage, type TwoKeyStage } from '../helpers/two-keys.js';

describe('core nodes that read or write files by name', () => {
  let stage: TwoKeyStage;
  const bobInput = 'bob-voice.flac';

  const prompt = (key: string, graph: Record<string, unknown>): Promise<TestResponse> =>
    send(stage.gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: { ...graph, ...SAVE_WORKFLOW } } });
  const upstreamPrompts = (): number => stage.comfy.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/prompt')).length;
  /** Sends `graph` as alice, then as the admin: alice's gets `status` and `code` and never reaches ComfyUI; the admin's is queued. */
  const refusedForUsersOnly = async (what: string, graph: Record<string, unknown>, status: number, code: string): Promise<TestResponse> => {
    const before = upstreamPrompts();
    const refused = await prompt(stage.alice.api_key, graph);
    assert.equal(refused.status, status, `${what}: ${refused.text}`);
    assert.equal(refused.json().error_code, code, what);
    assert.equal(upstreamPrompts(), before, `${what}: nothing reached ComfyUI`);
    const byAdmin = await prompt(stage.admin, graph);
    assert.equal(byAdmin.status, 200, `${what}, by an admin key: ${byAdmin.text}`);
    return refused;
  };

  before(async () => {
    stage = await startTwoKeyStage(['--upstream-queue-depth', '100']);
    const stored = await send(stage.gateway.url, '/api/upload/image', {
      method: 'POST',
      key: stage.bob.api_key,
      ...multipart([{ name: 'image', filename: bobInput, value: 'BOB-SECRET-AUDIO' }]),
    });
    assert.equal(stored.status, 200, stored.text);
  });
  after(() => stage.close());

  test('dataset nodes that load a whole folder or write fixed names are refused for user keys, with the reason', async () => {
    const refused: Array<[string, Record<string, unknown>, RegExp]> = [
      // nodes_train.py (2025) joins `folder` to the input folder unchecked, and loads every image there.
      ['LoadImageSetFromFolderNode', { folder: '.' }, /loads every file of an input folder/],
      // `{prefix}_00000.png` in output/folder_name, written over whatever holds that name.
      ['SaveImageDataSetToFolder', { images: ['3', 0], folder_name: 'dataset', filename_prefix: 'image' }, /writes fixed names.*SaveImage/],
      ['SaveTrainingDataset', { latents: ['3', 0], conditioning: ['3', 0], folder_name: 'training_dataset' }, /shard_0000\.pkl/],
      ['LoadTrainingDataset', { folder_name: 'training_dataset' }, /another key's too/],
    ];
    for (const [classType, inputs, reason] of refused) {
      const res = await refusedForUsersOnly(classType, { '1': { class_type: classType, inputs } }, 403, 'FORBIDDEN');
      assert.match(res.json<{ error: string }>().error, new RegExp(`node 1 \\(${classType}\\) `), classType);
      assert.match(res.json<{ error: string }>().error, reason, classType);
    }
  });

  test("RecordAudio's file name is held to the key's own files, as LoadAudio's: ComfyUI reads any path it is given", async () => {
    const record = (audio: unknown): Record<string, unknown> => ({ '1': { class_type: 'RecordAudio', inputs: { audio } } });
    await refusedForUsersOnly("another key's upload", record(bobInput), 403, 'FORBIDDEN');
    await refusedForUsersOnly('an absolute path', record('/etc/hostname'), 400, 'INVALID_REQUEST');
    await refusedForUsersOnly('a file no key owns', record('operator-only.flac'), 403, 'FORBIDDEN');
    await refusedForUsersOnly('a link', record(['2', 0]), 400, 'INVALID_REQUEST');
    const stored = await send(stage.gateway.url, '/api/upload/image', {
      method: 'POST',
      key: stage.alice.api_key,
      ...multipart([{ name: 'image', filename: 'alice-voice.flac', value: 'ALICE' }]),
    });
    assert.equal(stored.status, 200, stored.text);
    const own = await prompt(stage.alice.api_key, record('alice-voice.flac'));
    assert.equal(own.status, 200, `the key's own recording passes: ${own.text}`);
  });

  test("text with an unpaired surrogate is refused for user keys: Python writes such a prefix as the bytes it escapes, over another key's file", async () => {
    const save = (prefix: string): Record<string, unknown> => ({ '20': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: prefix } } });
    const bobs = await prompt(stage.bob.api_key, save('café'));
    assert.equal(bobs.status, 200, bobs.text);
    await waitForHistory(stage.gateway.url, stage.bob.api_key, bobs.json<{ prompt_id: string }>().prompt_id);
    const bobFile = join(stage.comfy.outputDir, 'café_00001_.png');
    const before = (await stat(bobFile)).mtimeMs;

    // `caf\udcc3\udca9` (JSON.stringify writes the escapes) is the file name café to Python's os.fsencode.
    const alias = 'caf\udcc3\udca9';
    const sentBefore = upstreamPrompts();
    const refused = await prompt(stage.alice.api_key, save(alias));
    assert.equal(refused.status, 400, refused.text);
    assert.equal(refused.json().error_code, 'INVALID_REQUEST');
    assert.match(refused.json<{ error: string }>().error, /unpaired surrogate/);
    const custom = await prompt(stage.alice.api_key, { '21': { class_type: 'SomePackLoader', inputs: { path: `bob\ud800.png` } } });
    assert.equal(custom.status, 400, `any input, a custom node's too: ${custom.text}`);
    assert.equal(upstreamPrompts(), sentBefore, 'nothing reached ComfyUI');

    // What the check keeps from user keys: an admin's prompt with that prefix writes over bob's file.
    const admins = await prompt(stage.admin, save(alias));
    assert.equal(admins.status, 200, admins.text);
    await waitForHistory(stage.gateway.url, stage.admin, admins.json<{ prompt_id: string }>().prompt_id);
    assert.ok((await stat(bobFile)).mtimeMs > before, "the admin's prompt wrote café_00001_.png again");
  });

  test('a class_type spelt as a property every object has is an unknown node, not a loader', async () => {
    for (const classType of ['constructor', 'toString', '__proto__']) {
      const res = await prompt(stage.alice.api_key, { '1': { class_type: classType, inputs: { image: 'alice-voice.flac' } } });
      assert.equal(res.status, 400, `${classType}: ComfyUI refuses the unknown class: ${res.text}`);
    }
  });

  test('a filename_prefix that leaves its folder is refused for user keys: save nodes that join it themselves write wherever it points', async () => {
    for (const prefix of ['../input/bob', '/tmp/x', 'C:/comfy/x', 'a/../../x', '..\\input\\bob']) {
      const graph = { '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: prefix } } };
      const before = upstreamPrompts();
      const refused = await send(stage.gateway.url, '/api/prompt', {
        method: 'POST',
        key: stage.alice.api_key,
        body: { prompt: { ...SAVE_WORKFLOW, ...graph } },
      });
      assert.equal(refused.status, 400, `${prefix}: ${refused.text}`);
      assert.deepEqual(refused.json<{ details: unknown[] }>().details, [
        { field: 'prompt node 9 input filename_prefix', problem: 'leaves its folder: no leading /, drive or .. segment' },
      ]);
      assert.equal(upstreamPrompts(), before, `${prefix}: nothing reached ComfyUI`);
    }
    const adminGraph = { ...SAVE_WORKFLOW, '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: '../x' } } };
    assert.equal((await send(stage.gateway.url, '/api/prompt', { method: 'POST', key: stage.admin, body: { prompt: adminGraph } })).status, 200);
    const folder = { ...SAVE_WORKFLOW, '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'album/..x/cat' } } };
    assert.equal((await send(stage.gateway.url, '/api/prompt', { method: 'POST', key: stage.alice.api_key, body: { prompt: folder } })).status, 200);
  });
});

describe('nodes that ComfyUI runs as a loader or a save node (a custom pack’s node replacements)', () => {
  let stage: TwoKeyStage;
  const bobInput = 'bob-face.png';
  // What a custom node pack may register: old class_types that ComfyUI runs as its core file nodes, inputs renamed.
  const packReplacements = {
    LegacyImageLoader: [{ new_node_id: 'LoadImage', old_node_id: 'LegacyImageLoader', input_mapping: [{ new_id: 'image', old_id: 'file' }] }],
    LegacySaver: [
      {
        new_node_id: 'SaveImage',
        old_node_id: 'LegacySaver',
        input_mapping: [
          { new_id: 'images', old_id: 'pixels' },
          { new_id: 'filename_prefix', old_id: 'name' },
        ],
      },
    ],
    LegacyFolderLoader: [
      { new_node_id: 'LoadImageSetFromFolderNode', old_node_id: 'LegacyFolderLoader', input_mapping: [{ new_id: 'folder', old_id: 'path' }] },
    ],
  };

  const prompt = (key: string, graph: Record<string, unknown>): Promise<TestResponse> =>
    send(stage.gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: { ...graph, ...SAVE_WORKFLOW } } });
  const upstreamPrompts = (): number => stage.comfy.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/prompt')).length;

  before(async () => {
    stage = await startTwoKeyStage(['--upstream-queue-depth', '100'], { nodeReplacements: packReplacements });
    const stored = await send(stage.gateway.url, '/api/upload/image', {
      method: 'POST',
      key: stage.bob.api_key,
      ...multipart([{ name: 'image', filename: bobInput, value: 'BOB-SECRET-FACE' }]),
    });
    assert.equal(stored.status, 200, stored.text);
  });
  after(() => stage.close());

  test('each file check reads such a node as the node ComfyUI runs in its place', async () => {
    const refused: Array<[string, Record<string, unknown>, number, RegExp]> = [
      [
        "another key's upload, loaded as LoadImage's image",
        { class_type: 'LegacyImageLoader', inputs: { file: bobInput } },
        403,
        /node 1 as LoadImage \(bob-face\.png\)/,
      ],
      ['a link where LoadImage takes a name', { class_type: 'LegacyImageLoader', inputs: { file: ['3', 0] } }, 400, /is a link/],
      [
        'a save prefix with %batch_num%, saved as SaveImage',
        { class_type: 'LegacySaver', inputs: { pixels: ['3', 0], name: 'cat%batch_num%' } },
        400,
        /%batch_num%/,
      ],
      [
        'a folder loader, refused for user keys',
        { class_type: 'LegacyFolderLoader', inputs: { path: '.' } },
        403,
        /node 1 as LoadImageSetFromFolderNode \(LoadImageSetFromFolderNode\)/,
      ],
    ];
    for (const [what, node, status, message] of refused) {
      const before = upstreamPrompts();
      const res = await prompt(stage.alice.api_key, { '1': node });
      assert.equal(res.status, status, `${what}: ${res.text}`);
      assert.match(res.json<{ error: string }>().error, message, what);
      assert.equal(upstreamPrompts(), before, `${what}: nothing reached ComfyUI`);
    }
    // ComfyUI does run the replaced node as a LoadImage of that file: the admin's prompt is queued and validated as one.
    const byAdmin = await prompt(stage.admin, {
      '1': { class_type: 'LegacyImageLoader', inputs: { file: bobInput } },
      '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
    });
    assert.equal(byAdmin.status, 200, byAdmin.text);
    const sent = stage.comfy.prompts.at(-1)!.body as { prompt: Record<string, { class_type: string; inputs: Record<string, unknown> }> };
    assert.deepEqual(sent.prompt['1'], { class_type: 'LoadImage', inputs: { image: bobInput } });
  });

  test("the key's own file and prefix pass through the replaced node", async () => {
    const stored = await send(stage.gateway.url, '/api/upload/image', {
      method: 'POST',
      key: stage.alice.api_key,
      ...multipart([{ name: 'image', filename: 'alice-face.png', value: 'ALICE' }]),
    });
    assert.equal(stored.status, 200, stored.text);
    const own = await prompt(stage.alice.api_key, {
      '1': { class_type: 'LegacyImageLoader', inputs: { file: 'alice-face.png' } },
      '2': { class_type: 'LegacySaver', inputs: { pixels: ['1', 0], name: 'alice-legacy' } },
    });
    assert.equal(own.status, 200, own.text);
  });

  test('a node whose id reads as a replaced node’s ("1 as LoadImage") is checked as well, not hidden by it', async () => {
    // Node 1 runs as a LoadImage of the key's own file; the node named "1 as LoadImage" loads bob's, and ComfyUI runs both.
    const hidden: Array<[string, Record<string, unknown>, RegExp]> = [
      ["another key's upload", { class_type: 'LoadImage', inputs: { image: bobInput } }, /node 1 as LoadImage \(bob-face\.png\)/],
      ['a folder loader', { class_type: 'LoadImageSetFromFolderNode', inputs: { folder: '.' } }, /1 as LoadImage \(LoadImageSetFromFolderNode\)/],
    ];
    for (const [what, node, message] of hidden) {
      const before = upstreamPrompts();
      const res = await prompt(stage.alice.api_key, {
        '1': { class_type: 'LegacyImageLoader', inputs: { file: 'alice-face.png' } },
        '1 as LoadImage': node,
        '2': { class_type: 'PreviewImage', inputs: { images: ['1 as LoadImage', 0] } },
      });
      assert.equal(res.status, 403, `${what}: ${res.text}`);
      assert.match(res.json<{ error: string }>().error, message, what);
      assert.equal(upstreamPrompts(), before, `${what}: nothing reached ComfyUI`);
    }
  });
});
