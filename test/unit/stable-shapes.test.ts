// Objects made for every prompt keep one V8 shape from one prompt to the next: a shape per object would make every place that reads them look their fields up the slowest way.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

/** A module of the build, by its path from this test, as the URL an ES module imports it by. */
const moduleUrl = (path: string): string => new URL(path, import.meta.url).href;

/**
 * Runs an ES module `script` in a node that allows V8's natives, and returns what it prints. The script may call
 * `oneShape(make)`: whether the objects `make(i)` makes keep one shape once V8 has warmed up to making them (a first few
 * may differ while its caches fill).
 */
function runWithNatives(script: string): string {
  const oneShape = `const oneShape = (make) => { let last; for (let i = 0; i < 400; i += 1) { const made = make(i); if (i > 200 && !%HaveSameMap(made, last)) return false; last = made; } return true; };`;
  return execFileSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', `${oneShape}\n${script}`], { encoding: 'utf8' }).trim();
}

test('kept requests share one shape, with a pin or without', () => {
  const printed = runWithNatives(`
    import { withJsonTextBody } from '${moduleUrl('../../src/store/json-text-body.js')}';
    const kept = (seed, pin) => withJsonTextBody({ body: { prompt: { 3: { inputs: { seed } } } }, headers: { 'comfy-user': null }, ...(pin ? { pin } : {}) });
    console.log(oneShape((i) => kept(i)), oneShape((i) => kept(i, 'p' + i)), Object.isFrozen(kept(3)));
  `);
  assert.equal(printed, 'true true true');
});

test('a job sent under a new id has the shape of every other job', () => {
  const printed = runWithNatives(`
    import { jobWithFields } from '${moduleUrl('../../src/store/job-record.js')}';
    const held = (id) => ({ id, key_id: 'k', client_id: 'c', backend: '', upstream_id: null, status: 'held', admitted_at: 1.7e9 + 0.5,
      forwarded_at: null, started_at: null, finished_at: null, execution_seconds: null, outputs: [], error: null, request: null, front: false, webhook: null });
    const sent = (id) => jobWithFields(held(id), { backend: 'b', upstream_id: id + '-up', status: 'queued', forwarded_at: 1.7e9 + 0.25, sends: 1 }, id + '-up');
    const patched = jobWithFields(sent('x'), { status: 'running', started_at: 1.7e9 + 0.75 });
    console.log(oneShape((i) => sent('j' + i)), %HaveSameMap(sent('a'), patched), sent('a').id);
  `);
  assert.equal(printed, 'true true a-up');
});

test('answers relayed, as they came or rewritten, share one shape of headers', () => {
  const printed = runWithNatives(`
    import { relayAnswer, withJsonText } from '${moduleUrl('../../src/isolation/json-body.js')}';
    // Headers as the gateway reads them from ComfyUI: added one by one; a chunked answer has no length.
    const answer = (length) => {
      const headers = {};
      headers['content-type'] = 'application/json';
      if (length > 0) headers['content-length'] = String(length);
      headers.etag = '"a"';
      return { status: 200, headers, body: Buffer.alloc(length) };
    };
    const relayed = (given) => {
      let written;
      relayAnswer({ writeHead: (status, headers) => (written = headers), end: () => undefined }, given);
      return written;
    };
    const rewritten = (length) => withJsonText(answer(length), Buffer.from('{}'));
    console.log(oneShape(() => relayed(answer(0))), oneShape((i) => rewritten(i + 1).headers), JSON.stringify(relayed(rewritten(5))));
  `);
  assert.equal(printed, 'true true {"content-type":"application/json; charset=utf-8","content-length":"2"}');
});
