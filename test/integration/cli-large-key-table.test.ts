// The keys commands on a PostgreSQL database of many keys: each reads and writes only the rows it needs, and keys list pages through them.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PAGE_ROWS } from '../../src/store/postgres/database.js';
import { CHANNELS } from '../../src/store/postgres/migrations.js';
import { adminPool, freshPostgresDatabase, migratedDatabaseForFile, TEST_POSTGRES_URL, type MigratedDatabase } from '../contract/backends.js';
import { PostgresDatabase } from '../../src/store/postgres/index.js';
import { runCli } from '../helpers/gateway-process.js';

/** Keys put in the table by SQL before the commands run. */
const BULK = 200_000;
/** Rows of `api_keys` a transaction of the commands' role may read; reading more fails the transaction. */
const READ_LIMIT = 100;

const fresh = await migratedDatabaseForFile();
const { url, admin } = fresh as MigratedDatabase;
const role = `comfy_gate_cli_${randomBytes(6).toString('hex')}`;
const password = randomBytes(12).toString('hex');

/** The test database's URL, logged in as `role`: what the commands are given. */
function roleUrl(): string {
  const parsed = new URL(url);
  parsed.username = role;
  parsed.password = password;
  return parsed.toString();
}

/** Runs comfy-gate on the database as `role`. */
function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli([...args, '--database-url', roleUrl()]);
}

/** The id of the bulk key number `n`. */
function bulkId(n: number): string {
  return `bulk${String(n).padStart(7, '0')}`;
}

/** Inserts `count` keys numbered from 1 (oldest first), with the table's triggers off (they would queue a notification per row). */
async function insertBulk(pool: pg.Pool, count: number, name: string): Promise<void> {
  await pool.query('ALTER TABLE api_keys DISABLE TRIGGER USER');
  await pool.query(
    `INSERT INTO api_keys (key_id, name, created_at, rate_limit, key_prefix, key_hash)
     SELECT 'bulk' || lpad(n::text, 7, '0'), ${name}, 1700000000 + n, 100, 'comfy_bulk__', md5(n::text) || md5('x' || n)
     FROM generate_series(1, $1::int) AS n`,
    [count],
  );
  await pool.query('ALTER TABLE api_keys ENABLE TRIGGER USER');
  await pool.query('ANALYZE api_keys');
}

describe('keys commands on a large PostgreSQL key table', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  before(async () => {
    await insertBulk(admin, BULK, `'bulk key ' || n`);
    // Row-level security on api_keys for the commands' role: its policy counts the rows a transaction
    // reads and fails the transaction past READ_LIMIT. Reading the whole table, as loading every key
    // into memory does, cannot pass; a lookup by key_id reads one row.
    await admin.query(`
      CREATE FUNCTION comfy_gate_test_row_read() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
      DECLARE n integer := coalesce(nullif(current_setting('comfy_gate_test.rows_read', true), ''), '0')::integer + 1;
      BEGIN
        PERFORM set_config('comfy_gate_test.rows_read', n::text, true);
        IF n > ${READ_LIMIT} THEN
          RAISE EXCEPTION 'read more than ${READ_LIMIT} rows of api_keys in one transaction';
        END IF;
        RETURN true;
      END $$;
      CREATE POLICY comfy_gate_test_reads ON api_keys USING (comfy_gate_test_row_read()) WITH CHECK (true);
      ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
      CREATE ROLE ${role} LOGIN PASSWORD '${password}';
      GRANT USAGE, CREATE ON SCHEMA public TO ${role};
      GRANT ALL ON ALL TABLES IN SCHEMA public TO ${role};
      GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${role};
    `);
  });
  after(async () => {
    // The role has privileges in the test database, which migratedDatabaseForFile drops after this.
    await admin.query(`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ${role}; REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM ${role}`);
    await admin.query(`REVOKE ALL ON SCHEMA public FROM ${role}`);
    const server = adminPool(TEST_POSTGRES_URL);
    try {
      await server.query(`DROP ROLE IF EXISTS ${role}`);
    } finally {
      await server.end();
    }
  });

  test(`the role cannot read more than ${READ_LIMIT} keys in a transaction (what the next test relies on)`, async () => {
    const asRole = adminPool(roleUrl());
    try {
      await assert.rejects(asRole.query('SELECT key_id FROM api_keys'), new RegExp(`read more than ${READ_LIMIT} rows`));
      const { rows } = await asRole.query<{ name: string }>('SELECT name FROM api_keys WHERE key_id = $1', [bulkId(7)]);
      assert.deepEqual(rows, [{ name: 'bulk key 7' }]);
    } finally {
      await asRole.end();
    }
  });

  test(`create, show, disable, update, rotate, delete and usage --key among ${BULK} keys read only the keys they name; changes are announced`, async () => {
    const listener = new pg.Client({ connectionString: url });
    listener.on('error', () => undefined);
    await listener.connect();
    const announced: string[] = [];
    let onAnnounce = (): void => undefined;
    listener.on('notification', (message) => {
      announced.push(message.payload ?? '');
      onAnnounce();
    });
    /** Resolves once `keyId`'s change was announced on the keys channel. */
    const announcedFor = (keyId: string): Promise<void> =>
      new Promise((resolve) => {
        onAnnounce = () => announced.includes(keyId) && resolve();
        onAnnounce();
      });
    await listener.query(`LISTEN ${CHANNELS.keys}`);
    try {
      const created = await cli('keys', 'create', '--name', 'fresh', '--json');
      assert.equal(created.code, 0, created.stderr);
      const { key_id: freshId } = JSON.parse(created.stdout) as { key_id: string };
      await announcedFor(freshId);
      const stored = await admin.query<{ name: string }>('SELECT name FROM api_keys WHERE key_id = $1', [freshId]);
      assert.deepEqual(stored.rows, [{ name: 'fresh' }]);

      const target = bulkId(123_456);
      const shown = await cli('keys', 'show', target, '--json');
      assert.equal(shown.code, 0, shown.stderr);
      assert.deepEqual(
        (({ key_id, name, status, created_at }) => ({ key_id, name, status, created_at }))(JSON.parse(shown.stdout) as Record<string, unknown>),
        { key_id: target, name: 'bulk key 123456', status: 'active', created_at: 1_700_123_456 },
      );

      const disabled = await cli('keys', 'disable', target);
      assert.equal(disabled.code, 0, disabled.stderr);
      assert.match(disabled.stdout, /^Disabled key "bulk key 123456"/);
      await announcedFor(target);
      assert.equal((await admin.query('SELECT is_active FROM api_keys WHERE key_id = $1', [target])).rows[0].is_active, false);

      const other = bulkId(54_321);
      const updated = await cli('keys', 'update', other, '--rate-limit', '7', '--name', 'renamed');
      assert.equal(updated.code, 0, updated.stderr);
      const rotated = await cli('keys', 'rotate', other, '--grace', '1h', '--json');
      assert.equal(rotated.code, 0, rotated.stderr);
      const changed = await admin.query('SELECT name, rate_limit, previous_key_hash FROM api_keys WHERE key_id = $1', [other]);
      assert.deepEqual(changed.rows, [{ name: 'renamed', rate_limit: 7, previous_key_hash: md5Pair(54_321) }]);

      const usage = await cli('usage', '--key', other, '--json');
      assert.equal(usage.code, 0, usage.stderr);
      assert.equal((JSON.parse(usage.stdout) as { keys: Array<{ key_name: string }> }).keys[0]!.key_name, 'renamed');

      const deleted = await cli('keys', 'delete', freshId, '--yes');
      assert.equal(deleted.code, 0, deleted.stderr);
      const gone = await cli('keys', 'show', freshId);
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, new RegExp(`no key has key_id ${freshId}`));
      const missing = await cli('keys', 'disable', 'no-such-key');
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /no key has key_id no-such-key/);
    } finally {
      await listener.end();
    }
  });
});

describe('keys list on PostgreSQL', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  test('pages through the keys: every key oldest first, JSON as one document, a table with aligned columns', async () => {
    const database = await freshPostgresDatabase();
    if ('skip' in database) throw new Error(database.skip);
    const pool = adminPool(database.url);
    try {
      await (await PostgresDatabase.open({ url: database.url })).close();
      const count = 2 * PAGE_ROWS + 500;
      // Names of different widths, one cut at 40 characters in the table; key 2 was deleted.
      await insertBulk(pool, count, `CASE WHEN n = ${count} THEN repeat('w', 60) ELSE 'key ' || n END`);
      await pool.query('UPDATE api_keys SET deleted = true WHERE key_id = $1', [bulkId(2)]);
      const live = Array.from({ length: count }, (_, i) => i + 1).filter((n) => n !== 2);

      const json = await runCli(['keys', 'list', '--json', '--database-url', database.url]);
      assert.equal(json.code, 0, json.stderr);
      const { keys } = JSON.parse(json.stdout) as { keys: Array<{ key_id: string; status: string }> };
      assert.deepEqual(
        keys.map((key) => key.key_id),
        live.map(bulkId),
      );
      assert.equal(json.stdout, `${JSON.stringify({ keys }, null, 2)}\n`, 'the text printJson prints for the whole list');

      const text = await runCli(['keys', 'list', '--database-url', database.url]);
      assert.equal(text.code, 0, text.stderr);
      const lines = text.stdout.trimEnd().split('\n');
      assert.equal(lines.length, live.length + 1);
      const statusAt = lines[0]!.indexOf('STATUS');
      assert.ok(statusAt > 0);
      assert.ok(
        lines.slice(1).every((line) => line.slice(statusAt).startsWith('active ')),
        'the STATUS column starts at the same place on every line',
      );
      assert.ok(lines.at(-1)!.includes(`${'w'.repeat(39)}…`));
      assert.ok(lines[1]!.startsWith(`${bulkId(1)}  key 1 `));
    } finally {
      await pool.end();
      await database.drop();
    }
  });
});

/** The key_hash `insertBulk` gives key number `n`. */
function md5Pair(n: number): string {
  return `${md5(String(n))}${md5(`x${n}`)}`;
}

function md5(text: string): string {
  return createHash('md5').update(text).digest('hex');
}
