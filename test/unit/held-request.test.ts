// Unit tests of what a job keeps to be sent: its body as JSON text, a parsed body of an earlier version read as text, the parsed body for listings, and its count of sends.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsonRewriter } from '../../src/isolation/large-json.js';
import { heldBodyOf, heldRequestOf } from '../../src/jobs/dispatch.js';
import { parseJobRecord } from '../../src/store/job-record.js';
import type { JobRecord } from '../../src/store/types.js';

const BODY = { prompt: { '3': { class_type: 'KSampler', inputs: { seed: 42 } } }, prompt_id: 'p-1', client_id: 'gateway', extra_data: { create_time: 17 } };

/** A held job keeping `request` (as a store reads it back). */
function heldJob(request: unknown): JobRecord {
  return { id: 'p-1', key_id: 'k', status: 'held', request } as unknown as JobRecord;
}

test('a body kept as JSON text is sent as it is, with the headers and pin kept', () => {
  const text = JSON.stringify(BODY);
  assert.deepEqual(heldRequestOf(heldJob({ body: text, headers: { 'comfy-user': 'u' }, pin: 'gpu-1' })), {
    body: text,
    headers: { 'comfy-user': 'u' },
    pin: 'gpu-1',
  });
});

test("the count of sends is the job's own field; one an earlier version kept inside the request is read from there", () => {
  const stored = { id: 'p-1', key_id: 'k', backend: 'default', status: 'queued', admitted_at: 1, request: { body: '{}', headers: {} } };
  const read = (value: Record<string, unknown>): JobRecord => parseJobRecord(value) as JobRecord;
  assert.equal(read({ ...stored, sends: 2 }).sends, 2);
  assert.equal(read({ ...stored, request: { ...stored.request, sends: 1 } }).sends, 1);
  assert.equal(read({ ...stored, sends: 2, request: { ...stored.request, sends: 1 } }).sends, 2, 'its own field first');
  assert.equal(read(stored).sends, undefined, 'never sent');
  assert.equal(read({ ...stored, sends: null }).sends, undefined);
  assert.equal(parseJobRecord({ ...stored, sends: -1 }), 'sends must be a whole number or null, not -1');
  assert.equal(parseJobRecord({ ...stored, sends: 1.5 }), 'sends must be a whole number or null, not 1.5');
});

test('a body an earlier version kept parsed is read as its JSON text', () => {
  const request = heldRequestOf(heldJob({ body: BODY, headers: {} }));
  assert.equal(request?.body, JSON.stringify(BODY));
  assert.deepEqual(request?.headers, {});
});

test('no request once a job ran, and none from a request without a body', () => {
  assert.equal(heldRequestOf(heldJob(null)), undefined);
  assert.equal(heldRequestOf(heldJob({ headers: {} })), undefined);
  assert.equal(heldRequestOf(heldJob({ body: 42, headers: {} })), undefined);
});

test('listings read the held body parsed, and an empty object when there is none or it is not an object', async () => {
  const parser = new JsonRewriter();
  assert.deepEqual(await heldBodyOf(heldJob({ body: JSON.stringify(BODY), headers: {} }), parser), BODY);
  assert.deepEqual(await heldBodyOf(heldJob({ body: BODY, headers: {} }), parser), BODY);
  assert.deepEqual(await heldBodyOf(heldJob(null), parser), {});
  assert.deepEqual(await heldBodyOf(heldJob({ body: '[1, 2]', headers: {} }), parser), {});
  assert.deepEqual(await heldBodyOf(heldJob({ body: 'not json', headers: {} }), parser), {});
  await parser.close();
});
