// Unit tests of the job files: every field of a job is read back as written; a body serialized here is written raw and read back as the same text, any other as a string.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import fc from 'fast-check';
import { heldRequestOf } from '../../src/jobs/dispatch.js';
import { FileJobStore } from '../../src/store/file/file-job-store.js';
import { hasJsonTextBody, withJsonTextBody } from '../../src/store/json-text-body.js';
import { JOB_STATUSES, patchedJob } from '../../src/store/job-record.js';
import { WEBHOOK_EVENTS, type JobPatch, type JobRecord } from '../../src/store/types.js';
import { jobRecord } from '../helpers/job-record.js';

/** A prompt with quotes, backslashes and characters beyond ASCII in it, as an editor workflow has. */
const BODY = { prompt: { '3': { class_type: 'CLIPTextEncode', inputs: { text: 'a "quoted" \\ café ☕\nline' } } }, client_id: 'gateway', extra_data: { n: 1 } };

let dir: string;
const stores: FileJobStore[] = [];

async function opened(options: { retentionSeconds?: number } = {}): Promise<FileJobStore> {
  const store = new FileJobStore({ directory: dir, ...options });
  stores.push(store);
  await store.open();
  return store;
}

/** The value of each journal put of `id`, and of its member in `jobs.json` (when it has one), as JSON reads them. */
async function storedValues(id: string): Promise<{ journal: Record<string, unknown>[]; snapshot: Record<string, unknown> | undefined }> {
  const lines = (await readFile(join(dir, 'jobs.journal'), 'utf8')).split('\n').filter((line) => line !== '');
  const puts = lines
    .map((line) => JSON.parse(line) as { op: string; id: string; value?: Record<string, unknown> })
    .filter((op) => op.op === 'put' && op.id === id);
  const snapshot = JSON.parse(await readFile(join(dir, 'jobs.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  return { journal: puts.map((op) => op.value!), snapshot: snapshot[id] };
}

function heldWith(id: string, request: Record<string, unknown>): JobRecord {
  return jobRecord(id, { status: 'held', backend: '', upstream_id: null, forwarded_at: null, request });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-gate-job-files-'));
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
  await rm(dir, { recursive: true, force: true });
});

test('a body serialized here is written as raw JSON and read back as the same text, written raw again', async () => {
  const request = withJsonTextBody({ body: BODY, headers: { 'comfy-user': 'u"1' }, pin: 'gpu-1' });
  const store = await opened();
  // The first change also writes the first jobs.json, which then holds the job.
  assert.equal(await store.create(heldWith('held-1', request)), true);
  await store.close();
  const { snapshot } = await storedValues('held-1');
  assert.deepEqual(snapshot?.request, { body: BODY, headers: { 'comfy-user': 'u"1' }, pin: 'gpu-1' }, 'the body is JSON, not a string');

  const reopened = await opened();
  const read = reopened.get('held-1')!;
  assert.deepEqual(heldRequestOf(read), { body: JSON.stringify(BODY), headers: { 'comfy-user': 'u"1' }, pin: 'gpu-1' });
  assert.ok(read.request && hasJsonTextBody(read.request), 'a body read from JSON is text serialized here');
  await reopened.create(heldWith('held-2', read.request));
  await reopened.close();
  const { journal } = await storedValues('held-2');
  assert.equal(journal.length, 1, 'in the journal');
  assert.deepEqual((journal[0]!.request as { body: unknown }).body, BODY);
});

test('a body not serialized here (a string an earlier version stored) is written as a string and read back as it was', async () => {
  const store = await opened();
  for (const [id, body] of [
    ['text', JSON.stringify(BODY)],
    ['not-json', 'not json", "x": {'],
  ]) {
    await store.create(heldWith(id!, { body, headers: {} }));
  }
  await store.close();
  for (const id of ['text', 'not-json']) {
    const { journal, snapshot } = await storedValues(id);
    const written = [...journal, ...(snapshot ? [snapshot] : [])];
    assert.ok(written.length >= 1);
    for (const value of written) assert.equal(typeof (value.request as { body: unknown }).body, 'string');
  }

  const reopened = await opened();
  assert.equal(heldRequestOf(reopened.get('text')!)?.body, JSON.stringify(BODY));
  assert.equal(heldRequestOf(reopened.get('not-json')!)?.body, 'not json", "x": {');
  assert.equal(hasJsonTextBody(reopened.get('not-json')!.request!), false);
});

test('a copy of a request serialized here is not taken for one', () => {
  const request = withJsonTextBody({ body: BODY, headers: {} });
  assert.equal(hasJsonTextBody(request), true);
  assert.equal(hasJsonTextBody({ ...request }), false);
  assert.throws(() => {
    (request as { body: string }).body = 'changed';
  }, TypeError);
});

test('every field of a job is read back as it was written, its kept request too', async () => {
  // Required: a field added to JobRecord must be added here, and is then checked to be written.
  const job: Required<JobRecord> = {
    id: 'job "1"',
    key_id: 'k\\ey',
    client_id: 'c\u2028',
    backend: 'gpu-1',
    upstream_id: 'up-1',
    status: 'running',
    admitted_at: 1765130000.125,
    forwarded_at: 1765130000.5,
    started_at: 1765130001.25,
    finished_at: 1765130002.75,
    execution_seconds: 1.5,
    outputs: [{ node: '9', filename: 'a"b.png', subfolder: 'x/y', type: 'output' }],
    error: { message: 'bad \ud800', node_id: '9', node_type: 'SaveImage', exception_type: null },
    request: withJsonTextBody({ body: BODY, headers: { 'comfy-user': 'u' } }),
    front: true,
    webhook: { url: 'https://hooks.example/job', events: ['job.started', 'job.succeeded'] },
    sends: 2,
  };
  const store = await opened();
  await store.create(job);
  await store.close();
  const read = (await opened()).get(job.id);
  assert.deepEqual(read, job);
});

/** Strings of any UTF-16 code units (lone surrogates too), and the characters JSON escapes. */
const anyString = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 16 }).map((units) => String.fromCharCode(...units)),
  fc.array(fc.constantFrom('a', '"', '\\', '\u0000', '\n', '\u2028', '\ud800', 'é'), { maxLength: 8 }).map((parts) => parts.join('')),
);
/** What JSON keeps of a number: any finite double but -0 (written as 0). */
const anyTime = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((value) => !Object.is(value, -0));

/** Any value of every field a patch may set (typed so that a field added to jobs must be added here). */
const anyPatchField: { [K in keyof Required<JobPatch>]: fc.Arbitrary<Required<JobPatch>[K]> } = {
  client_id: fc.option(anyString),
  backend: anyString,
  upstream_id: fc.option(anyString),
  status: fc.constantFrom(...JOB_STATUSES),
  forwarded_at: fc.option(anyTime),
  started_at: fc.option(anyTime),
  finished_at: fc.option(anyTime),
  execution_seconds: fc.option(anyTime),
  outputs: fc.array(fc.record({ node: anyString, filename: anyString, subfolder: anyString, type: anyString }), { maxLength: 3 }),
  error: fc.option(fc.record({ message: anyString })),
  request: fc.option(fc.record({ body: anyString, headers: fc.dictionary(anyString, anyString, { maxKeys: 2 }) })),
  front: fc.boolean(),
  webhook: fc.option(fc.record({ url: anyString, events: fc.subarray([...WEBHOOK_EVENTS]) })),
  sends: fc.nat(),
};

test('jobs of any strings and numbers are read back from jobs.json and from the journal as they were written and patched', async () => {
  const jobs = fc.sample(fc.record({ ...anyPatchField, key_id: anyString, admitted_at: anyTime, sends: fc.option(fc.nat(), { nil: undefined }) }), 200);
  const written = jobs.map((fields, i): JobRecord => {
    // structuredClone: plain objects, as a job's parts are (fast-check's records have no prototype).
    const { sends, ...others } = structuredClone(fields);
    return { id: `${i}:${fields.key_id}`, ...others, ...(sends === undefined ? {} : { sends }) };
  });
  // Kept however long ago they finished: the times are any numbers.
  const keptForGood = { retentionSeconds: Number.POSITIVE_INFINITY };
  const store = await opened(keptForGood);
  // The first group of changes is also the first jobs.json; those after it go to the journal.
  await Promise.all(written.slice(0, 100).map((job) => store.create(job)));
  for (const job of written.slice(100)) await store.create(job);
  // Patched, any fields of a job but its id, key and admission: the patches' lines are written field by field too.
  const patches = fc.sample(fc.record(anyPatchField, { requiredKeys: [] }), written.length);
  for (const [i, job] of written.entries()) {
    const patch = structuredClone(patches[i]!);
    const patched = await store.update(job.id, patch);
    assert.deepEqual(patched, patchedJob(job, patch));
    written[i] = patched!;
  }
  await store.close();
  const snapshot = JSON.parse(await readFile(join(dir, 'jobs.json'), 'utf8')) as Record<string, unknown>;
  assert.ok(Object.keys(snapshot).length >= 100, 'the first group is in jobs.json');
  const reopened = await opened(keptForGood);
  for (const job of written) assert.deepEqual(reopened.get(job.id), job);
});
