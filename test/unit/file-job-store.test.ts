// Unit tests of the job files' kept bodies: a body serialized here is written raw and read back as the same text; any other is written as a string.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { heldRequestOf } from '../../src/jobs/dispatch.js';
import { FileJobStore } from '../../src/store/file/file-job-store.js';
import { hasJsonTextBody, withJsonTextBody } from '../../src/store/json-text-body.js';
import type { JobRecord } from '../../src/store/types.js';
import { jobRecord } from '../helpers/job-record.js';

/** A prompt with quotes, backslashes and characters beyond ASCII in it, as an editor workflow has. */
const BODY = { prompt: { '3': { class_type: 'CLIPTextEncode', inputs: { text: 'a "quoted" \\ café ☕\nline' } } }, client_id: 'gateway', extra_data: { n: 1 } };

let dir: string;
const stores: FileJobStore[] = [];

async function opened(): Promise<FileJobStore> {
  const store = new FileJobStore({ directory: dir });
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
