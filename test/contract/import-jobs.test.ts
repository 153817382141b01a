// The job registry's and the webhook outbox's copy from JSON files into PostgreSQL (`comfy-gate migrate`): every record, as its journal left it, once.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FileJobStore } from '../../src/store/file/file-job-store.js';
import { FileWebhookStore } from '../../src/store/file/file-webhook-store.js';
import { PostgresDatabase, PostgresJobStore, PostgresWebhookStore } from '../../src/store/postgres/index.js';
import { importFileStore } from '../../src/store/postgres/import-file-store.js';
import type { JobRecord, WebhookDelivery } from '../../src/store/types.js';
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
    // As an earlier version wrote a job it had sent: the count of sends inside the kept request.
    await created.create(job('sent-before', { status: 'queued', request: { ...job('').request, sends: 1 } }));
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
    await files.update('held-1', { error: { message: 'not yet', node_errors: { 3: { errors: [] } } }, sends: 2 });
    const expected = files.list({ offset: 0, limit: 10 });
    await files.close();
    const journal = await readFile(join(directory, 'jobs.journal'), 'utf8');
    assert.match(journal, /"upstream_id":"comfy-2"/, 'the changes are in the journal');
    assert.match(journal, /"message":"not yet"/);

    const database = await PostgresDatabase.open({ url: fresh.url });
    try {
      assert.deepEqual((await importFileStore(directory, database)).jobs, { found: 3, copied: 3 });
      assert.deepEqual((await importFileStore(directory, database)).jobs, { found: 3, copied: 0 });
    } finally {
      await database.close();
    }
    const store = new PostgresJobStore({ database: await PostgresDatabase.open({ url: fresh.url }), ...KEPT });
    await store.open();
    try {
      assert.deepEqual(store.list({ offset: 0, limit: 10 }), expected);
      assert.equal(store.get('held-2')?.status, 'success', "the journal's change, not the snapshot's record");
      assert.equal(store.get('held-1')?.sends, 2, 'the count of sends has its own column');
      assert.equal(store.get('sent-before')?.sends, 1, "an earlier version's count is read from the request");
      assert.equal(store.get('held-2')?.sends, undefined, 'never sent: no count');
    } finally {
      await store.close();
    }
  });

  test('copies the webhook outbox, attempts and states included, once; a pending delivery stays due', async () => {
    if ('skip' in fresh) return;
    const directory = await mkdtemp(join(tmpdir(), 'comfy-gate-import-deliveries-'));
    directories.push(directory);
    const now = Date.now() / 1000;
    const delivery = (id: string, fields: Partial<WebhookDelivery> = {}): WebhookDelivery => ({
      id,
      job_id: `job-${id}`,
      key_id: 'alice',
      event: 'job.succeeded',
      url: 'https://hooks.example.com/in',
      body: JSON.stringify({ id, type: 'job.succeeded' }),
      state: 'pending',
      created_at: now - 100,
      next_attempt_at: now - 100,
      attempts: [],
      ...fields,
    });
    const files = new FileWebhookStore({ directory, retentionSeconds: 36_500 * 86_400 });
    await files.open();
    await files.enqueue(delivery('whd_pending'));
    await files.enqueue(delivery('whd_done'));
    const [claim] = (await files.claimDue(now, 10, 60)).filter((c) => c.delivery.id === 'whd_done');
    await files.recordAttempt(claim!, { at: now - 50, status: 200, error: null, duration_ms: 4 }, { state: 'delivered', next_attempt_at: null });
    const expected = [await files.get('whd_pending'), await files.get('whd_done')];
    await files.close();

    const database = await PostgresDatabase.open({ url: fresh.url });
    try {
      assert.deepEqual((await importFileStore(directory, database)).webhook_deliveries, { found: 2, copied: 2 });
      assert.deepEqual((await importFileStore(directory, database)).webhook_deliveries, { found: 2, copied: 0 });
    } finally {
      await database.close();
    }
    const store = new PostgresWebhookStore({ database: await PostgresDatabase.open({ url: fresh.url }), retentionSeconds: 36_500 * 86_400 });
    await store.open();
    try {
      assert.deepEqual([await store.get('whd_pending'), await store.get('whd_done')], expected);
      assert.deepEqual(
        (await store.claimDue(now, 10, 60)).map((c) => c.delivery.id),
        ['whd_pending'],
      );
    } finally {
      await store.close();
    }
  });
});
