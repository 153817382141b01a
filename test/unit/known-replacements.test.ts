// ComfyUI's node replacements as prompt checks read them: parsed once per answer, the last ones standing in when ComfyUI cannot answer.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GatewayError, upstreamUnavailable } from '../../src/errors.js';
import { knownNodeReplacements } from '../../src/isolation/known-replacements.js';
import { nodesAsChecked } from '../../src/policy/node-replacements.js';
import type { UpstreamAnswer } from '../../src/proxy/http.js';

const answer = (status: number, body: unknown): UpstreamAnswer => ({ status, headers: {}, body: Buffer.from(JSON.stringify(body)) });
const LOADER = { OldLoader: [{ new_node_id: 'LoadImage', input_mapping: [{ new_id: 'image', old_id: 'file' }] }] };

describe('knownNodeReplacements', () => {
  test('parses an answer once, and again when the answer changes', async () => {
    let current = answer(200, LOADER);
    const read = knownNodeReplacements(() => Promise.resolve(current));
    const first = await read();
    assert.equal(first.get('OldLoader')?.new_node_id, 'LoadImage');
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
