// A job with a patch's fields set in memory reads exactly as the same job parsed from its files would: the job table applies its own changes with it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { jobWithFields, parseJobRecord, patchedFields } from '../../src/store/job-record.js';
import type { JobPatch, JobRecord } from '../../src/store/types.js';

const time = fc.double({ min: 1.7e9, max: 2e9, noNaN: true });
/** Records as JSON reads them back: with Object's prototype. */
const plain = { noNullPrototype: true } as const;
const output = fc.record(
  { type: fc.constantFrom('output', 'temp'), subfolder: fc.string({ maxLength: 4 }), filename: fc.string({ minLength: 1, maxLength: 8 }) },
  plain,
);
const fields = {
  client_id: fc.option(fc.string({ maxLength: 8 })),
  backend: fc.string({ maxLength: 8 }),
  upstream_id: fc.option(fc.uuid()),
  status: fc.constantFrom('held', 'queued', 'running', 'success', 'error', 'interrupted', 'cancelled' as const),
  forwarded_at: fc.option(time),
  started_at: fc.option(time),
  finished_at: fc.option(time),
  execution_seconds: fc.option(fc.double({ min: 0, max: 1e5, noNaN: true })),
  outputs: fc.array(output, { maxLength: 3 }),
  error: fc.option(fc.record({ message: fc.string({ maxLength: 10 }), node_errors: fc.constant({}) }, plain)),
  request: fc.option(fc.record({ body: fc.string({ maxLength: 10 }), headers: fc.constant({}) }, plain)),
  sends: fc.nat({ max: 5 }),
  front: fc.boolean(),
  webhook: fc.option(fc.record({ url: fc.webUrl(), events: fc.subarray(['job.started', 'job.succeeded', 'job.failed', 'job.cancelled'] as const) }, plain)),
};
const job = fc
  .record(
    { id: fc.uuid(), key_id: fc.string({ minLength: 1, maxLength: 8 }), admitted_at: time, ...fields, sends: fc.option(fields.sends, { nil: undefined }) },
    plain,
  )
  .map((stored) => parseJobRecord(stored) as JobRecord);
// A patch may hold any of the fields, and those it never changes (id, key_id, admitted_at), which patchedFields drops.
const patch = fc.record(
  { ...fields, id: fc.uuid(), key_id: fc.string(), admitted_at: time },
  { requiredKeys: [], noNullPrototype: true },
) as fc.Arbitrary<JobPatch>;

test('a job with a patch is the job parsed with the patch spread over it, field for field and in the same order', () => {
  fc.assert(
    fc.property(job, fc.array(patch, { maxLength: 4 }), (start, patches) => {
      let inMemory = start;
      let read = start;
      for (const next of patches) {
        const set = patchedFields(next);
        inMemory = jobWithFields(inMemory, set);
        read = parseJobRecord(JSON.parse(JSON.stringify({ ...read, ...set }))) as JobRecord;
        assert.deepEqual(inMemory, read);
        assert.deepEqual(Object.keys(inMemory), Object.keys(read));
      }
    }),
  );
});
