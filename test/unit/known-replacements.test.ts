// ComfyUI's node replacements as prompt checks read them: parsed once per answer, the last ones standing in when ComfyUI cannot answer.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GatewayError, upstreamUnavailable } from '../../src/errors.js';
import { everyBackendsReplacements, knownNodeReplacements } from '../../src/isolation/known-replacements.js';
import { nodesAsChecked, parseNodeReplacements } from '../../src/policy/node-replacements.js';
import type { UpstreamAnswer } from '../../src/proxy/http.js';

const answer = (status: number, body: unknown): UpstreamAnswer => ({ status, headers: {}, body: Buffer.from(JSON.stringify(body)) });
const LOADER = { OldLoader: [{ new_node_id: 'LoadImage', input_mapping: [{ new_id: 'image', old_id: 'file' }] }] };

describe('knownNodeReplacements', () => {
  test('parses an answer once, and again when the answer changes', async () => {
    let current = answer(200, LOADER);
    const read = knownNodeReplacements(() => Promise.resolve(current));
    const first = await read();
    assert.equal(first.get('OldLoader')?.[0]?.new_node_id, 'LoadImage');
    assert.equal(await read(), first, 'the same answer is not parsed again');
    current = answer(200, {});
    assert.equal((await read()).size, 0);
  });

  test('the last replacements read stand in when ComfyUI cannot be asked or answers with an error', async () => {
    const answers: Array<UpstreamAnswer | Error> = [answer(200, LOADER), upstreamUnavailable(new Error('down')), answer(500, 'oops')];
    const read = knownNodeReplacements(() => {
      const next = answers.shift()!;
      return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
    });
    const first = await read();
    assert.equal(await read(), first);
    assert.equal(await read(), first);
  });

  test('a 200 answer that is not a JSON object is an error answer, never read as no replacements', async () => {
    const garbage = (): UpstreamAnswer => ({ status: 200, headers: {}, body: Buffer.from('<html>Service Unavailable</html>') });
    const answers = [answer(200, LOADER), garbage(), answer(200, ['OldLoader'])];
    const read = knownNodeReplacements(() => Promise.resolve(answers.shift()!));
    const first = await read();
    assert.equal(await read(), first, 'text that is not JSON');
    assert.equal(await read(), first, 'JSON that is not an object');
    const unread = knownNodeReplacements(() => Promise.resolve(garbage()));
    await assert.rejects(unread(), (error: unknown) => error instanceof GatewayError && error.code === 'UPSTREAM_UNREADABLE');
  });

  test('with none read yet, a failure is thrown, never read as no replacements', async () => {
    const down = knownNodeReplacements(() => Promise.reject(upstreamUnavailable(new Error('down'))));
    await assert.rejects(down(), (error: unknown) => error instanceof GatewayError && error.code === 'UPSTREAM_UNAVAILABLE');
    const failing = knownNodeReplacements(() => Promise.resolve(answer(500, 'oops')));
    await assert.rejects(failing(), (error: unknown) => error instanceof GatewayError && error.code === 'UPSTREAM_UNREADABLE');
  });
});

describe('everyBackendsReplacements', () => {
  const SAVER = { OldLoader: [{ new_node_id: 'SaveImage', input_mapping: [{ new_id: 'filename_prefix', old_id: 'file' }] }] };

  test("a class one backend replaces with a loader and another with a saver is read as both; one backend's alike twice, once", async () => {
    const read = everyBackendsReplacements([
      () => Promise.resolve(parseNodeReplacements(LOADER)),
      () => Promise.resolve(parseNodeReplacements(SAVER)),
      () => Promise.resolve(parseNodeReplacements(LOADER)),
    ]);
    const prompt = { '1': { class_type: 'OldLoader', inputs: { file: 'x.png' } } };
    assert.deepEqual(nodesAsChecked(prompt, await read()), [
      ['1', prompt['1']],
      ['1 as LoadImage', { class_type: 'LoadImage', inputs: { image: 'x.png' } }],
      ['1 as SaveImage', { class_type: 'SaveImage', inputs: { filename_prefix: 'x.png' } }],
    ]);
  });

  test("merges again only when a backend's replacements change", async () => {
    const first = parseNodeReplacements(LOADER);
    let second = parseNodeReplacements(SAVER);
    const read = everyBackendsReplacements([() => Promise.resolve(first), () => Promise.resolve(second)]);
    const merged = await read();
    assert.equal(await read(), merged);
    second = parseNodeReplacements({});
    assert.equal((await read()).get('OldLoader')?.length, 1);
  });

  test('a backend never read is left out; with none read, the failure is thrown', async () => {
    const down = (): Promise<never> => Promise.reject(upstreamUnavailable(new Error('down')));
    const some = everyBackendsReplacements([down, () => Promise.resolve(parseNodeReplacements(LOADER))]);
    assert.equal((await some()).get('OldLoader')?.[0]?.new_node_id, 'LoadImage');
    const none = everyBackendsReplacements([down, down]);
    await assert.rejects(none(), (error: unknown) => error instanceof GatewayError && error.code === 'UPSTREAM_UNAVAILABLE');
  });
});

describe('nodesAsChecked', () => {
  test('lists each node as sent, then each node ComfyUI may run as another class, under its id and that class, with the inputs renamed', async () => {
    const replacements = await knownNodeReplacements(() => Promise.resolve(answer(200, LOADER)))();
    const prompt = { '1': { class_type: 'OldLoader', inputs: { file: 'x.png', other: 1 } }, '2': { class_type: 'LoadImage', inputs: { image: 'y.png' } } };
    assert.deepEqual(nodesAsChecked(prompt, replacements), [
      ['1', prompt['1']],
      ['2', prompt['2']],
      ['1 as LoadImage', { class_type: 'LoadImage', inputs: { image: 'x.png' } }],
    ]);
    assert.deepEqual(nodesAsChecked(prompt, new Map()), Object.entries(prompt));
    assert.deepEqual(nodesAsChecked('not a prompt', replacements), []);
  });

  test('a node named as a replaced node is listed beside it, not overwritten by it', async () => {
    const replacements = await knownNodeReplacements(() => Promise.resolve(answer(200, LOADER)))();
    const named = { class_type: 'LoadImage', inputs: { image: 'another-keys.png' } };
    const nodes = nodesAsChecked({ '1': { class_type: 'OldLoader', inputs: { file: 'x.png' } }, '1 as LoadImage': named }, replacements);
    assert.deepEqual(
      nodes.filter(([label]) => label === '1 as LoadImage').map(([, node]) => node),
      [named, { class_type: 'LoadImage', inputs: { image: 'x.png' } }],
    );
  });
});
