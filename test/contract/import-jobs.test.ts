// The job registry's copy from JSON files into PostgreSQL (`comfy-gate migrate`): every job, as its journal left it, once.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FileJobStore } from '../../src/store/file/file-job-store.js';
import { PostgresDatabase, PostgresJobStore } from '../../src/store/postgres/index.js';
import { importFileStore } from '../../src/store/postgres/import-file-store.js';
import type { JobRecord } from '../../src/store/types.js';
import { freshPostgresDatabase } from './backends.js';

const fresh = await freshPostgresDatabase();
const KEPT = { retentionSeconds: 36_500 * 86_400 };

function job(id: string, fields: Partial<JobRecord> = {}): JobRecord {
  return {
    id,
    key_id: 'alice',
    client_id: 'tab-1',
    backend: 'default',
    upstream_id: null,
    status: 'held',
    admitted_at: Date.now() / 1000,
    forwarded_at: null,
    started_at: null,
    finished_at: null,
    execution_seconds: null,
    outputs: [],
    error: null,
    request: { prompt: { 3: { class_type: 'KSampler', inputs: { seed: 1 } } }, client_id: 'gateway' },
    front: true,
    webhook: { url: 'https://example.com/hook', events: ['job.succeeded'] },
    ...fields,
  };
}

describe('importFileStore: jobs', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const directories: string[] = [];
  after(async () => {
    await Promise.all(directories.map((d) => rm(d, { recursive: true, force: true })));
    if (!('skip' in fresh)) await fresh.drop();
  });

  test('copies the jobs of jobs.json and its journal (changes included) once; a second run copies nothing', async () => {
    if ('skip' in fresh) return;
    const directory = await mkdtemp(join(tmpdir(), 'comfy-gate-import-jobs-'));
    directories.push(directory);
    const created = new FileJobStore({ directory, ...KEPT });
    await created.open();
    await created.create(job('held-1'));
    await created.create(job('held-2', { key_id: 'bob', front: false }));
    await created.close();
    // Reopened, so that the changes are in the journal rather than in the snapshot written after the first change.
    const files = new FileJobStore({ directory, ...KEPT });
    await files.open();
    await files.update('held-2', {
      status: 'success',
      upstream_id: 'comfy-2',
      request: null,
      finished_at: Date.now() / 1000,
      outputs: [{ node: '9', filename: 'a.png', subfolder: '', type: 'output' }],
      error: null,
    });
    await files.update('held-1', { error: { message: 'not yet', node_errors: { 3: { errors: [] } } } });
    const expected = files.list({ offset: 0, limit: 10 });
    await files.close();
    const journal = await readFile(join(directory, 'jobs.journal'), 'utf8');
    assert.match(journal, /"upstream_id":"comfy-2"/, 'the changes are in the journal');
    assert.match(journal, /"message":"not yet"/);

    const database = await PostgresDatabase.open({ url: fresh.url });
    try {
      assert.deepEqual((await importFileStore(directory, database)).jobs, { found: 2, copied: 2 });
      assert.deepEqual((await importFileStore(directory, database)).jobs, { found: 2, copied: 0 });
    } finally {
      await database.close();
    }
    const store = new PostgresJobStore({ database: await PostgresDatabase.open({ url: fresh.url }), ...KEPT });
    await store.open();
    try {
      assert.deepEqual(store.list({ offset: 0, limit: 10 }), expected);
      assert.equal(store.get('held-2')?.status, 'success', "the journal's change, not the snapshot's record");
    } finally {
      await store.close();
    }
  });
});
