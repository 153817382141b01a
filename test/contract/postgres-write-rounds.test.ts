// Writes go to PostgreSQL together: jobs and ownership claims of one turn, a statement per kind, each answered as if alone; usage records one transaction per tick.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { PostgresDatabase, PostgresJobStore, PostgresOwnershipStore, PostgresUsageStore } from '../../src/store/postgres/index.js';
import type { JobRecord } from '../../src/store/types.js';
import { jobRecord } from '../helpers/job-record.js';
import { migratedDatabaseForFile, type MigratedDatabase } from './backends.js';

const fresh = await migratedDatabaseForFile();

const NOW = Date.now() / 1000;
let admitted = 0;

/** A held job of `keyId`, admitted after every job made before it, with a prompt kept. */
function job(id: string, keyId: string): JobRecord {
  return jobRecord(id, {
    key_id: keyId,
    status: 'held',
    upstream_id: null,
    admitted_at: NOW + (admitted += 1),
    forwarded_at: null,
    request: { body: { prompt: { '1': { class_type: 'KSampler', inputs: { seed: 7 } } } }, headers: { 'content-type': 'application/json' } },
  });
}

/** The test file's database, and a connection of the test's own to read its tables. */
const { url, admin } = fresh as MigratedDatabase;

const ids = (count: number, prefix: string): string[] => Array.from({ length: count }, (_, i) => `${prefix}${i}`);

/** Opens the database with its statements that write `table` recorded (their first two words), in the order sent. */
async function recordingDatabase(url: string, table: string): Promise<{ database: PostgresDatabase; writes: string[] }> {
  const database = await PostgresDatabase.open({ url });
  const query = database.query.bind(database);
  const writes: string[] = [];
  const writing = new RegExp(`^\\s*(INSERT INTO|UPDATE) ${table}\\b`);
  database.query = ((text: string, values?: unknown[]) => {
    if (writing.test(text)) writes.push(text.trim().split(/\s+/, 2).join(' '));
    return query(text, values);
  }) as typeof database.query;
  return { database, writes };
}

describe('PostgresJobStore: the writes of one turn together', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  let store: PostgresJobStore;
  /** The statements that wrote the jobs table, in the order they were sent. */
  let writes: string[];

  beforeEach(async () => {
    await admin.query('TRUNCATE jobs');
    const opened = await recordingDatabase(url, 'jobs');
    writes = opened.writes;
    store = new PostgresJobStore({ database: opened.database });
    await store.open();
  });
  afterEach(async () => {
    await store.close();
  });

  async function stored(id: string): Promise<{ key_id: string; status: string; upstream_id: string | null; started_at: number | null } | undefined> {
    const { rows } = await admin.query('SELECT key_id, status, upstream_id, started_at FROM jobs WHERE id = $1', [id]);
    return rows[0];
  }

  test('ten creates in one turn are one INSERT, ten patches of the same columns one UPDATE; each resolves as if alone', async () => {
    const created = await Promise.all(ids(10, 'j').map((id) => store.create(job(id, 'k1'))));
    assert.deepEqual(created, Array(10).fill(true));
    assert.deepEqual(writes, ['INSERT INTO']);
    const updated = await Promise.all(ids(10, 'j').map((id, i) => store.update(id, { status: 'queued', upstream_id: `u${i}` })));
    assert.deepEqual(
      updated.map((updatedJob) => [updatedJob?.id, updatedJob?.status, updatedJob?.upstream_id]),
      ids(10, 'j').map((id, i) => [id, 'queued', `u${i}`]),
    );
    assert.deepEqual(writes, ['INSERT INTO', 'UPDATE jobs']);
    for (const [i, id] of ids(10, 'j').entries()) {
      assert.deepEqual(await stored(id), { key_id: 'k1', status: 'queued', upstream_id: `u${i}`, started_at: null });
      assert.equal(store.get(id)?.upstream_id, `u${i}`);
    }
    // The request body went through the statement as it is.
    assert.deepEqual(store.get('j3')?.request, job('j3', 'k1').request);
  });

  test('patches of different columns in one turn are one UPDATE each', async () => {
    await Promise.all(ids(4, 'j').map((id) => store.create(job(id, 'k1'))));
    writes.length = 0;
    await Promise.all([
      store.update('j0', { status: 'queued' }),
      store.update('j1', { status: 'queued' }),
      store.update('j2', { status: 'running', started_at: NOW }),
      store.update('j3', { status: 'running', started_at: NOW }),
    ]);
    assert.deepEqual(writes, ['UPDATE jobs', 'UPDATE jobs']);
    assert.deepEqual(
      ids(4, 'j').map((id) => [store.get(id)?.status, store.get(id)?.started_at]),
      [
        ['queued', null],
        ['queued', null],
        ['running', NOW],
        ['running', NOW],
      ],
    );
  });

  test('a create whose id is taken resolves false and changes nothing; the others of its statement are created', async () => {
    assert.equal(await store.create(job('taken', 'k1')), true);
    const [again, other] = await Promise.all([store.create(job('taken', 'k2')), store.create(job('new', 'k2'))]);
    assert.equal(again, false);
    assert.equal(other, true);
    assert.equal((await stored('taken'))?.key_id, 'k1');
    assert.equal(store.get('taken')?.key_id, 'k1');
    assert.equal((await stored('new'))?.key_id, 'k2');
  });

  test("a job's writes made in one turn take effect in the order they were made", async () => {
    const [created, queued, running] = await Promise.all([
      store.create(job('j', 'k1')),
      store.update('j', { status: 'queued', upstream_id: 'u' }, { ifStatus: 'held' }),
      store.update('j', { status: 'running', started_at: NOW }, { ifStatus: 'queued' }),
    ]);
    assert.equal(created, true);
    assert.equal(queued?.status, 'queued');
    assert.equal(running?.status, 'running');
    assert.deepEqual(await stored('j'), { key_id: 'k1', status: 'running', upstream_id: 'u', started_at: NOW });
    assert.deepEqual(writes, ['INSERT INTO', 'UPDATE jobs', 'UPDATE jobs']);
  });

  test('an update whose ifStatus does not hold resolves undefined beside those of its statement that do', async () => {
    await Promise.all([store.create(job('held', 'k1')), store.create(job('queued', 'k1'))]);
    await store.update('queued', { status: 'queued' });
    const [notQueued, queued] = await Promise.all([
      store.update('held', { status: 'running', started_at: NOW }, { ifStatus: 'queued' }),
      store.update('queued', { status: 'running', started_at: NOW }, { ifStatus: 'queued' }),
    ]);
    assert.equal(notQueued, undefined);
    assert.equal(queued?.status, 'running');
    assert.equal((await stored('held'))?.status, 'held');
    assert.equal(store.get('held')?.status, 'held');
  });

  test('a write the table refuses fails alone: the others of its statement are written', async () => {
    const refused = { ...job('refused', 'k1'), backend: null } as unknown as JobRecord;
    const [good, bad, alsoGood] = await Promise.allSettled([store.create(job('a', 'k1')), store.create(refused), store.create(job('b', 'k1'))]);
    assert.deepEqual(good, { status: 'fulfilled', value: true });
    assert.deepEqual(alsoGood, { status: 'fulfilled', value: true });
    assert.equal(bad.status, 'rejected');
    assert.match(String((bad as PromiseRejectedResult).reason), /null value in column "backend"/);
    assert.equal(await stored('refused'), undefined);
    assert.equal(store.get('refused'), undefined);
    assert.equal((await stored('a'))?.status, 'held');
    assert.equal((await stored('b'))?.status, 'held');
  });
});

describe('PostgresOwnershipStore: the claims of one turn together', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  let store: PostgresOwnershipStore;
  /** Another replica, on a database of its own connections. */
  let other: PostgresOwnershipStore;
  let writes: string[];

  beforeEach(async () => {
    await admin.query('TRUNCATE ownership');
    const opened = await recordingDatabase(url, 'ownership');
    writes = opened.writes;
    store = new PostgresOwnershipStore({ database: opened.database });
    other = new PostgresOwnershipStore({ database: await PostgresDatabase.open({ url }) });
    await Promise.all([store.open(), other.open()]);
  });
  afterEach(async () => {
    await Promise.all([store.close(), other.close()]);
  });

  async function ownerInTable(id: string): Promise<string | undefined> {
    const { rows } = await admin.query<{ key_id: string }>("SELECT key_id FROM ownership WHERE kind = 'prompt' AND id = $1", [id]);
    return rows[0]?.key_id;
  }

  test('ten claims in one turn are one INSERT; each resolves its owner and is held in memory', async () => {
    const owners = await Promise.all(ids(10, 'p').map((id, i) => store.claim('prompt', id, `k${i % 3}`)));
    assert.deepEqual(
      owners,
      ids(10, 'p').map((_, i) => `k${i % 3}`),
    );
    assert.deepEqual(writes, ['INSERT INTO']);
    for (const [i, id] of ids(10, 'p').entries()) {
      assert.equal(await ownerInTable(id), `k${i % 3}`);
      assert.equal(store.ownerOf('prompt', id), `k${i % 3}`);
    }
  });

  test('in one turn, the first claim of an id wins and a later one of another key is told the owner; an id another replica holds stays its', async () => {
    assert.equal(await other.claim('prompt', 'theirs', 'k-other'), 'k-other');
    const [first, second, held, unclaimed] = await Promise.all([
      store.claim('prompt', 'same', 'k1'),
      store.claim('prompt', 'same', 'k2'),
      store.claim('prompt', 'theirs', 'k1'),
      store.claim('prompt', 'new', 'k2'),
    ]);
    assert.deepEqual([first, second, held, unclaimed], ['k1', 'k1', 'k-other', 'k2']);
    assert.equal(await ownerInTable('same'), 'k1');
    assert.equal(await ownerInTable('theirs'), 'k-other');
    assert.equal(store.ownerOf('prompt', 'theirs'), 'k-other');
    assert.equal(await ownerInTable('new'), 'k2');
  });
});

describe('PostgresUsageStore: one transaction per tick while records keep coming', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  test('records made every millisecond for a second, with a tick of 100 ms, are written in about ten transactions, every one of them', async () => {
    await admin.query('TRUNCATE usage_records, usage_daily, usage_hourly, usage_batches');
    const opened = await PostgresDatabase.open({ url });
    let transactions = 0;
    const transaction = opened.transaction.bind(opened);
    opened.transaction = ((work) => {
      transactions += 1;
      return transaction(work);
    }) as typeof opened.transaction;
    const store = new PostgresUsageStore({ database: opened, retentionDays: 36_500, flushIntervalMs: 100, refreshIntervalMs: 60_000 });
    await store.open();
    let made = 0;
    const until = Date.now() + 1000;
    while (Date.now() < until) {
      store.record({
        key_id: 'k1',
        endpoint: '/prompt',
        timestamp: Date.now() / 1000,
        duration: 0.01,
        success: true,
        metadata: { method: 'POST', status: 200 },
      });
      made += 1;
      await delay(1);
    }
    await store.close();
    // Ten ticks in the second, and the last records written on close (a tick may run late, never more often).
    assert.ok(transactions <= 12, `${transactions} transactions for ${made} records`);
    const { rows } = await admin.query<{ count: string }>("SELECT count(*) FROM usage_records WHERE key_id = 'k1'");
    assert.equal(Number(rows[0]!.count), made);
  });
});
