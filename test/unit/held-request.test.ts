// Unit tests of what a job keeps to be sent: its body as JSON text, a parsed body of an earlier version read as text, and the parsed body for listings.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { heldBodyOf, heldRequestOf } from '../../src/jobs/dispatch.js';
import type { JobRecord } from '../../src/store/types.js';

const BODY = { prompt: { '3': { class_type: 'KSampler', inputs: { seed: 42 } } }, prompt_id: 'p-1', client_id: 'gateway', extra_data: { create_time: 17 } };

/** A held job keeping `request` (as a store reads it back). */
function heldJob(request: unknown): JobRecord {
  return { id: 'p-1', key_id: 'k', status: 'held', request } as unknown as JobRecord;
}

test('a body kept as JSON text is sent as it is, with the headers, pin and sends kept', () => {
  const text = JSON.stringify(BODY);
  assert.deepEqual(heldRequestOf(heldJob({ body: text, headers: { 'comfy-user': 'u' }, pin: 'gpu-1', sends: 1 })), {
    body: text,
    headers: { 'comfy-user': 'u' },
    pin: 'gpu-1',
    sends: 1,
  });
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

test('listings read the held body parsed, and an empty object when there is none or it is not an object', () => {
  assert.deepEqual(heldBodyOf(heldJob({ body: JSON.stringify(BODY), headers: {} })), BODY);
  assert.deepEqual(heldBodyOf(heldJob({ body: BODY, headers: {} })), BODY);
  assert.deepEqual(heldBodyOf(heldJob(null)), {});
  assert.deepEqual(heldBodyOf(heldJob({ body: '[1, 2]', headers: {} })), {});
  assert.deepEqual(heldBodyOf(heldJob({ body: 'not json', headers: {} })), {});
});
