// The PostgreSQL schema: numbered migrations applied once each, also when replicas start together, and rolled back whole on failure.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { MIGRATIONS } from '../../src/store/postgres/migrations.js';
import { PostgresDatabase } from '../../src/store/postgres/index.js';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';

const fresh = await freshPostgresDatabase();

describe('PostgreSQL schema migrations', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  let admin: pg.Pool;
  before(() => {
    admin = new pg.Pool({ connectionString: database.url, max: 2 });
  });
  after(async () => {
    await admin.end();
    await database.drop();
  });

  test('five replicas starting together apply each migration once', async () => {
    const opened = await Promise.all(Array.from({ length: 5 }, () => PostgresDatabase.open({ url: database.url })));
    await Promise.all(opened.map((db) => db.close()));
    const { rows } = await admin.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    assert.deepEqual(
      rows.map((r) => r.version),
      MIGRATIONS.map((m) => m.version),
    );
  });

  test('running the migrations again applies nothing; a new numbered migration is applied once', async () => {
    const db = await PostgresDatabase.open({ url: database.url });
    try {
      assert.deepEqual(await db.migrate(), []);
      const next = [...MIGRATIONS, { version: 9001, name: 'test step', sql: 'CREATE TABLE test_step (x integer)' }];
      assert.deepEqual(await db.migrate(next), [9001]);
      assert.deepEqual(await db.migrate(next), []);
      await admin.query('DROP TABLE test_step');
      await admin.query('DELETE FROM schema_migrations WHERE version = 9001');
    } finally {
      await db.close();
    }
  });

  test('a failing migration changes nothing and says which one failed', async () => {
    const db = await PostgresDatabase.open({ url: database.url });
    try {
      const broken = [...MIGRATIONS, { version: 9002, name: 'broken step', sql: 'CREATE TABLE half_done (x integer); SELECT no_such_function()' }];
      await assert.rejects(db.migrate(broken), /migration 9002 \(broken step\) failed/);
      const { rows } = await admin.query("SELECT to_regclass('half_done') AS t, (SELECT count(*) FROM schema_migrations WHERE version = 9002)::int AS n");
      assert.deepEqual(rows[0], { t: null, n: 0 });
    } finally {
      await db.close();
    }
  });
});
