// Names another file system reads as another key's file: a case variant, a trailing dot or space, a stream, an 8.3 short name, a device name, and a save prefix in another key's prefix's case, on ComfyUI for Windows and macOS (the fake's caseInsensitiveFiles) and on Linux.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SAVE_WORKFLOW, waitForHistory } from '../helpers/comfy-client.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { multipart, type FormPart } from '../helpers/multipart.js';
import { startTwoKeyStage, type TwoKeyStage } from '../helpers/two-keys.js';

/** Bob's uploads: a short name, and a long one that Windows also knows by an 8.3 short name. */
const BOB_INPUT = 'bob-photo.png';
const BOB_LONG_INPUT = 'bob-long-photo-name.png';
const BOB_BYTES = 'BOB-SECRET-INPUT';
/** Bob's upload with an accent, composed (NFC) as most clients send it; macOS's APFS reads it decomposed (NFD) as the same file. */
const BOB_ACCENTED = 'bob-caf\u00e9.png';
const BOB_ACCENTED_NFD = BOB_ACCENTED.normalize('NFD');

for (const caseInsensitiveFiles of [true, false]) {
  describe(`file names of other keys ${caseInsensitiveFiles ? 'on a case-insensitive disk (Windows, macOS)' : 'on a case-sensitive disk'}`, () => {
    let stage: TwoKeyStage;

    const upload = (key: string, parts: FormPart[]): Promise<TestResponse> =>
      send(stage.gateway.url, '/api/upload/image', { method: 'POST', key, ...multipart(parts) });
    const prompt = (key: string, graph: Record<string, unknown>): Promise<TestResponse> =>
      send(stage.gateway.url, '/api/prompt', { method: 'POST', key, body: { prompt: graph } });
    const view = (key: string, filename: string, type: string): Promise<TestResponse> =>
      send(stage.gateway.url, `/api/view?filename=${encodeURIComponent(filename)}&type=${type}`, { key });
    const upstreamPrompts = (): number => stage.comfy.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/prompt')).length;
    const bobFilesIntact = async (): Promise<void> => {
      for (const name of [BOB_INPUT, BOB_LONG_INPUT]) assert.equal(await readFile(join(stage.comfy.inputDir, name), 'utf8'), BOB_BYTES, `${name} is bob's`);
    };

    before(async () => {
      stage = await startTwoKeyStage(['--upstream-queue-depth', '100'], { caseInsensitiveFiles });
      for (const name of [BOB_INPUT, BOB_LONG_INPUT, BOB_ACCENTED]) {
        const stored = await upload(stage.bob.api_key, [{ name: 'image', filename: name, value: BOB_BYTES }]);
        assert.equal(stored.status, 200, stored.text);
      }
    });
    after(() => stage.close());

    test("an overwriting upload of another key's file in other case, with a trailing dot or space, as a stream or by its short name is refused", async () => {
      for (const name of ['BOB-PHOTO.PNG', 'Bob-Photo.png', 'bob-photo.png.', 'bob-photo.png ', 'bob-photo.png::$DATA', 'BOB-LO~1.PNG']) {
        const stored = await upload(stage.alice.api_key, [
          { name: 'image', filename: name, value: 'ALICE-OVERWRITE' },
          { name: 'overwrite', value: 'true' },
        ]);
        assert.ok([400, 403].includes(stored.status), `upload ${JSON.stringify(name)}: ${stored.status} ${stored.text}`);
        const viewed = await view(stage.alice.api_key, name, 'input');
        assert.ok([400, 404].includes(viewed.status), `view ${JSON.stringify(name)}: ${viewed.status}`);
        await bobFilesIntact();
      }
    });

    test("an upload ComfyUI stores under a case variant of another key's file does not become the uploader's", async () => {
      // The same bytes as bob's file: ComfyUI on a case-insensitive disk finds it there, and answers its name as the upload spelt it.
      const stored = await upload(stage.alice.api_key, [{ name: 'image', filename: 'BOB-PHOTO.PNG', value: BOB_BYTES }]);
      assert.equal(stored.status, 409, stored.text);
      assert.equal(stored.json().error_code, 'FILE_NAME_TAKEN');
      const viewed = await view(stage.alice.api_key, 'BOB-PHOTO.PNG', 'input');
      assert.equal(viewed.status, 404);
      assert.equal(viewed.text.includes('BOB'), false);
      await bobFilesIntact();
    });

    test("another key's file named in the other Unicode composition (NFD for NFC) is that key's file at upload, /view and in a prompt", async () => {
      assert.notEqual(BOB_ACCENTED_NFD, BOB_ACCENTED);
      for (const name of [BOB_ACCENTED_NFD, BOB_ACCENTED_NFD.toUpperCase()]) {
        const overwritten = await upload(stage.alice.api_key, [
          { name: 'image', filename: name, value: 'ALICE-OVERWRITE' },
          { name: 'overwrite', value: 'true' },
        ]);
        assert.equal(overwritten.status, 403, `overwrite ${JSON.stringify(name)}: ${overwritten.text}`);
        // The same bytes as bob's file: ComfyUI on macOS finds it under that name, and answers the name as the upload spelt it.
        const stored = await upload(stage.alice.api_key, [{ name: 'image', filename: name, value: BOB_BYTES }]);
        assert.equal(stored.status, 409, `upload ${JSON.stringify(name)}: ${stored.text}`);
        const viewed = await view(stage.alice.api_key, name, 'input');
        assert.equal(viewed.status, 404, `view ${JSON.stringify(name)}`);
        assert.equal(viewed.text.includes('BOB'), false);
        const before = upstreamPrompts();
        const loaded = await prompt(stage.alice.api_key, { '1': { class_type: 'LoadImage', inputs: { image: name } }, ...SAVE_WORKFLOW });
        assert.equal(loaded.status, 403, `LoadImage ${JSON.stringify(name)}: ${loaded.text}`);
        assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
      }
      assert.equal(await readFile(join(stage.comfy.inputDir, BOB_ACCENTED), 'utf8'), BOB_BYTES, "bob's accented file is intact");
    });

    test("a prompt that names another key's file in other case is refused, by a loader or any other node", async () => {
      const before = upstreamPrompts();
      for (const graph of [
        { '1': { class_type: 'LoadImage', inputs: { image: 'BOB-PHOTO.PNG' } }, ...SAVE_WORKFLOW },
        { '1': { class_type: 'CLIPTextEncode', inputs: { text: 'Bob-Photo.png' } }, ...SAVE_WORKFLOW },
      ]) {
        const answer = await prompt(stage.alice.api_key, graph);
        assert.equal(answer.status, 403, answer.text);
      }
      assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
    });

    test("a prompt whose other node names another key's file as Windows reads it (a backslash, a trailing dot or space, a stream, a short name) or from a sibling folder is refused", async () => {
      const before = upstreamPrompts();
      for (const text of [
        'bob-photo.png.',
        'bob-photo.png. .',
        'bob-photo.png ',
        'bob-photo.png::$DATA',
        'bob-photo.png:$DATA',
        '.\\bob-photo.png',
        'x\\..\\bob-photo.png',
        '../input/bob-photo.png',
        '../../ComfyUI/input/bob-photo.png',
        '..\\input\\bob-photo.png',
      ]) {
        const answer = await prompt(stage.alice.api_key, { '1': { class_type: 'CLIPTextEncode', inputs: { text } }, ...SAVE_WORKFLOW });
        assert.equal(answer.status, 403, `${JSON.stringify(text)}: ${answer.text}`);
      }
      assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
      // Windows may open a short name as another key's long-named file: it is refused, whoever's file it is.
      for (const text of ['BOB-LO~1.PNG', 'sub/bob-lo~1.png.']) {
        const answer = await prompt(stage.alice.api_key, { '1': { class_type: 'CLIPTextEncode', inputs: { text } }, ...SAVE_WORKFLOW });
        assert.equal(answer.status, 400, `${JSON.stringify(text)}: ${answer.text}`);
        assert.match(answer.json<{ error: string }>().error, /8\.3 short name/);
      }
      assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
      // A text that only ends as a sentence does, or in a tilde and a number, is no file of another key's.
      const answer = await prompt(stage.alice.api_key, { '1': { class_type: 'CLIPTextEncode', inputs: { text: 'a photo of a cat. ~2' } }, ...SAVE_WORKFLOW });
      assert.equal(answer.status, 200, answer.text);
      await waitForHistory(stage.gateway.url, stage.alice.api_key, answer.json<{ prompt_id: string }>().prompt_id);
    });

    test("a save prefix that differs only by case from another key's is refused before ComfyUI numbers files over that key's", async () => {
      const bobOutput = await readFile(join(stage.comfy.outputDir, stage.bobImage));
      const before = upstreamPrompts();
      for (const prefix of ['comfyui', 'COMFYUI', 'sub/../comfyUI']) {
        const answer = await prompt(stage.alice.api_key, {
          ...SAVE_WORKFLOW,
          '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: prefix } },
        });
        assert.equal(answer.status, 403, `${prefix}: ${answer.text}`);
        assert.match(answer.json<{ error: string }>().error, /differs only by case/);
      }
      assert.equal(upstreamPrompts(), before, 'nothing reached ComfyUI');
      // The prefix as bob spelt it is numbered after bob's files; a key's own prefix may change its case.
      for (const prefix of ['ComfyUI', 'alice-cat', 'ALICE-CAT']) {
        const answer = await prompt(stage.alice.api_key, {
          ...SAVE_WORKFLOW,
          '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: prefix } },
        });
        assert.equal(answer.status, 200, `${prefix}: ${answer.text}`);
        await waitForHistory(stage.gateway.url, stage.alice.api_key, answer.json<{ prompt_id: string }>().prompt_id);
      }
      assert.deepEqual(await readFile(join(stage.comfy.outputDir, stage.bobImage)), bobOutput, "bob's output is intact");
    });
  });
}

describe('names Windows reads as another file', () => {
  let stage: TwoKeyStage;
  before(async () => {
    stage = await startTwoKeyStage();
  });
  after(() => stage.close());

  test('are refused with 400 at upload, at /view and in a loader, whatever the folder', async () => {
    const cases: Array<{ filename: string; subfolder?: string }> = [
      { filename: 'CON' },
      { filename: 'con.png' },
      { filename: 'Nul.tar.gz' },
      { filename: 'COM1.png' },
      { filename: 'lpt9' },
      { filename: 'photo.png:hidden' },
      { filename: 'photo.png.' },
      { filename: 'photo.png  ' },
      { filename: 'PROGRA~1.PNG' },
      { filename: 'photo~12' },
      { filename: 'photo.png', subfolder: 'aux' },
      { filename: 'photo.png', subfolder: 'album./2024' },
      { filename: 'photo.png', subfolder: 'album ' },
      { filename: 'photo.png', subfolder: 'MY-ALB~1' },
    ];
    for (const { filename, subfolder = '' } of cases) {
      const label = JSON.stringify({ filename, subfolder });
      const parts: FormPart[] = [{ name: 'image', filename, value: 'ALICE' }];
      if (subfolder) parts.push({ name: 'subfolder', value: subfolder });
      const stored = await send(stage.gateway.url, '/api/upload/image', { method: 'POST', key: stage.alice.api_key, ...multipart(parts) });
      assert.equal(stored.status, 400, `upload ${label}: ${stored.text}`);
      assert.equal(stored.json().error_code, 'INVALID_REQUEST');
      assert.match(stored.json<{ error: string }>().error, /remove it|rename it/);
      const query = `filename=${encodeURIComponent(filename)}&subfolder=${encodeURIComponent(subfolder)}&type=input`;
      const viewed = await send(stage.gateway.url, `/api/view?${query}`, { key: stage.alice.api_key });
      assert.equal(viewed.status, 400, `view ${label}`);
      const image = subfolder ? `${subfolder}/${filename}` : filename;
      const loaded = await send(stage.gateway.url, '/api/prompt', {
        method: 'POST',
        key: stage.alice.api_key,
        body: { prompt: { '1': { class_type: 'LoadImage', inputs: { image } }, ...SAVE_WORKFLOW } },
      });
      assert.equal(loaded.status, 400, `LoadImage ${label}: ${loaded.text}`);
    }
  });
});
