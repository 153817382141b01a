// Reloads read PostgreSQL a page at a time: every row, in order, with the event loop free between pages; a key deleted by hand still goes.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PAGE_ROWS } from '../../src/store/postgres/database.js';
import { PostgresDatabase, PostgresJobStore, PostgresKeyStore, PostgresOwnershipStore } from '../../src/store/postgres/index.js';
import { jobRecord } from '../helpers/job-record.js';
import { migratedDatabaseForFile, type MigratedDatabase } from './backends.js';
import { waitFor } from './harness.js';
import { makeKey } from './key-store.contract.js';

const fresh = await migratedDatabaseForFile();
/** More rows than two pages, and not a whole number of them. */
const MANY = 2 * PAGE_ROWS + 500;
/** The test file's database, and a connection of the test's own to read its tables. */
const { url, admin } = fresh as MigratedDatabase;

describe('PostgreSQL reads in pages', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  test('eachPage hands over every row in order, pages of at most the size asked, and the event loop turns between two pages', async () => {
    const db = await PostgresDatabase.open({ url });
    try {
      const pages: number[][] = [];
      const immediatesRun: boolean[] = [];
      let lastImmediateRan = true;
      await db.eachPage<{ g: number }>(
        'SELECT g FROM generate_series(1, $1::int) AS g',
        [250],
        (rows) => {
          // A callback queued on the page before has run by now: the loop was free between the two pages.
          immediatesRun.push(lastImmediateRan);
          lastImmediateRan = false;
          setImmediate(() => (lastImmediateRan = true));
          pages.push(rows.map((row) => row.g));
        },
        100,
      );
      assert.deepEqual(
        pages.map((page) => page.length),
        [100, 100, 50],
      );
      assert.deepEqual(
        pages.flat(),
        Array.from({ length: 250 }, (_, i) => i + 1),
      );
      assert.deepEqual(immediatesRun, [true, true, true]);

      const whole: number[] = [];
      await db.eachPage<{ g: number }>('SELECT g FROM generate_series(1, 200) AS g', [], (rows) => void whole.push(rows.length), 100);
      assert.deepEqual(whole, [100, 100], 'no empty page after a full last one');
      const none: number[] = [];
      await db.eachPage<{ g: number }>('SELECT 1 AS g WHERE false', [], (rows) => void none.push(rows.length), 100);
      assert.deepEqual(none, []);

      await assert.rejects(
        db.eachPage('SELECT no_such_column FROM jobs', [], () => undefined),
        /no_such_column/,
      );
      // The failed read's transaction was rolled back: the pool still answers.
      assert.equal((await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
    } finally {
      await db.close();
    }
  });

  test(`a job store opened over ${MANY} jobs holds every one, oldest admitted first`, async () => {
    await admin.query('TRUNCATE jobs');
    const writer = await PostgresDatabase.open({ url });
    const ids = Array.from({ length: MANY }, (_, i) => `job${i}`);
    const at = Date.now() / 1000;
    try {
      const jobs = new PostgresJobStore({ database: writer });
      await jobs.open();
      const created = await Promise.all(ids.map((id, i) => jobs.create(jobRecord(id, { key_id: 'k1', status: 'queued', admitted_at: at + i / 1000 }))));
      assert.ok(created.every(Boolean));
      await jobs.close();
    } finally {
      await writer.close();
    }

    const reader = await PostgresDatabase.open({ url });
    const jobs = new PostgresJobStore({ database: reader });
    try {
      await jobs.open();
      assert.equal(jobs.count({ keyId: 'k1' }), MANY);
      assert.deepEqual(
        jobs.active(['queued']).map((job) => job.id),
        ids,
      );
    } finally {
      await jobs.close();
      await reader.close();
    }
  });

  test(`a job store's reload fetches whole rows only of the jobs it holds at an older revision, over ${MANY} it wrote itself`, async () => {
    await admin.query('TRUNCATE jobs');
    const db = await PostgresDatabase.open({ url });
    const jobs = new PostgresJobStore({ database: db, reloadIntervalMs: 100 });
    try {
      await jobs.open();
      const at = Date.now() / 1000;
      const ids = Array.from({ length: MANY }, (_, i) => `own${i}`);
      assert.ok((await Promise.all(ids.map((id, i) => jobs.create(jobRecord(id, { key_id: 'k1', admitted_at: at + i / 1000 }))))).every(Boolean));
      await jobs.settled();

      // From here on: the ids whose whole rows are read (by id, or in a reload's pages), and the reloads of the jobs table run.
      const fetched: string[] = [];
      let reloads = 0;
      const query = db.query.bind(db);
      const eachPage = db.eachPage.bind(db);
      db.query = ((text: string, values?: unknown[]) => {
        if (text.includes('FROM jobs WHERE id = ANY')) fetched.push(...(values![0] as string[]));
        return query(text, values);
      }) as typeof db.query;
      db.eachPage = ((text: string, values: unknown[], onPage: (rows: { id: string; status?: string }[]) => void | Promise<void>) => {
        if (!text.includes('FROM jobs WHERE updated_at')) return eachPage(text, values, onPage);
        reloads += 1;
        return eachPage<{ id: string; status?: string }>(text, values, (rows) => {
          fetched.push(...rows.filter((row) => row.status !== undefined).map((row) => row.id));
          return onPage(rows);
        });
      }) as typeof db.eachPage;
      await waitFor(() => reloads >= 2, 5000, 'two reloads run');
      await jobs.settled();
      assert.deepEqual(fetched, [], 'no whole row is read again of the jobs it wrote');

      // Changed by hand with the triggers off: a new revision, and no notification of it.
      const changed = ids[PAGE_ROWS + 7]!;
      const client = await admin.connect();
      try {
        await client.query('BEGIN');
        await client.query("SET LOCAL session_replication_role = 'replica'");
        await client.query("UPDATE jobs SET status = 'cancelled', rev = nextval('jobs_rev'), updated_at = clock_timestamp() WHERE id = $1", [changed]);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
      await waitFor(() => jobs.get(changed)?.status === 'cancelled', 5000, 'the reload takes the changed row');
      assert.deepEqual(fetched, [changed], 'only the changed job is read whole');
      assert.equal(jobs.get(ids[0]!)?.status, 'queued');
      assert.equal(jobs.count({ keyId: 'k1' }), MANY);
    } finally {
      await jobs.close();
      await db.close();
    }
  });

  test(`an ownership store opened over ${MANY} claims knows every owner`, async () => {
    await admin.query('TRUNCATE ownership');
    const writer = await PostgresDatabase.open({ url });
    const ids = Array.from({ length: MANY }, (_, i) => `p${i}`);
    try {
      const claims = new PostgresOwnershipStore({ database: writer });
      await claims.open();
      await Promise.all(ids.map((id, i) => claims.claim('prompt', id, i % 2 === 0 ? 'alice' : 'bob')));
      await claims.close();
    } finally {
      await writer.close();
    }

    const reader = await PostgresDatabase.open({ url });
    const claims = new PostgresOwnershipStore({ database: reader });
    try {
      await claims.open();
      assert.deepEqual(
        ids.filter((id, i) => claims.ownerOf('prompt', id) !== (i % 2 === 0 ? 'alice' : 'bob')),
        [],
      );
    } finally {
      await claims.close();
      await reader.close();
    }
  });

  test('a key deleted by hand without its notification is dropped by the next reload; the others stay', async () => {
    await admin.query('TRUNCATE api_keys');
    const kept = makeKey().record;
    const removed = makeKey().record;
    const writer = await PostgresDatabase.open({ url });
    try {
      const keys = new PostgresKeyStore({ database: writer });
      await keys.open();
      assert.ok(await keys.create(kept));
      assert.ok(await keys.create(removed));
      await keys.close();
    } finally {
      await writer.close();
    }

    // Opened after the creates, so no notification of theirs is still on its way to this store.
    const db = await PostgresDatabase.open({ url });
    const keys = new PostgresKeyStore({ database: db, reloadIntervalMs: 100 });
    try {
      await keys.open();
      assert.equal(keys.get(removed.key_id)?.key_id, removed.key_id);
      // Triggers off for this transaction: the DELETE announces nothing, as if its notification were lost.
      const client = await admin.connect();
      try {
        await client.query('BEGIN');
        await client.query("SET LOCAL session_replication_role = 'replica'");
        await client.query('DELETE FROM api_keys WHERE key_id = $1', [removed.key_id]);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
      await waitFor(() => keys.get(removed.key_id) === undefined, 5000, 'the reload drops the key the table lost');
      assert.equal(keys.findByHash(removed.key_hash), undefined);
      assert.equal(keys.get(kept.key_id)?.key_id, kept.key_id);
      assert.equal(keys.size(), 1);
    } finally {
      await keys.close();
      await db.close();
    }
  });
});
