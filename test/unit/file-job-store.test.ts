// Unit tests of FileJobStore: a rename is one journal line, so a crash that tears it keeps the job under its old id.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { FileJobStore } from '../../src/store/file/file-job-store.js';
import type { JobRecord } from '../../src/store/types.js';

const HELD: JobRecord = {
  id: 'temp-1',
  key_id: 'alice',
  client_id: null,
  backend: 'default',
  upstream_id: null,
  status: 'held',
  admitted_at: 1_700_000_000.5,
  forwarded_at: null,
  started_at: null,
  finished_at: null,
  execution_seconds: null,
  outputs: [],
  error: null,
  request: { prompt: { 1: { class_type: 'KSampler', inputs: {} } } },
  front: false,
};

describe('FileJobStore', () => {
  let dir: string;
  const stores: FileJobStore[] = [];

  async function openStore(): Promise<FileJobStore> {
    const store = new FileJobStore({ directory: dir, retentionSeconds: 36_500 * 86_400 });
    await store.open();
    stores.push(store);
    return store;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-jobs-'));
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });

  test('a rename is one journal line: torn by a crash, neither half is applied', async () => {
    const store = await openStore();
    await store.create(HELD);
    await store.close();
    const renamer = await openStore();
    const journal = join(dir, 'jobs.journal');
    const before = (await stat(journal)).size;
    assert.ok(await renamer.rename('temp-1', 'comfy-1', { status: 'queued', upstream_id: 'comfy-1', request: null }));
    await renamer.close();
    const appended = (await readFile(journal, 'utf8')).slice(before);
    assert.equal(appended.split('\n').filter(Boolean).length, 1, 'the old id removed and the new one put on one line');
    // A crash mid-append: the line lacks its last bytes.
    await truncate(journal, (await stat(journal)).size - 10);
    const again = await openStore();
    assert.deepEqual(again.get('temp-1'), HELD, 'the job is still there under its old id');
    assert.equal(again.get('comfy-1'), undefined);
    assert.equal(again.count({}), 1);
  });
});
