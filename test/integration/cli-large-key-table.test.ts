// The keys commands on a PostgreSQL database of many keys: each reads and writes only the rows it needs (of the keys and of their usage), and keys list pages through them by an index.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PAGE_ROWS } from '../../src/store/postgres/database.js';
import { CHANNELS } from '../../src/store/postgres/migrations.js';
import { LIVE_KEYS_OLDEST_FIRST } from '../../src/store/postgres/postgres-key-rows.js';
import { adminPool, freshPostgresDatabase, migratedDatabaseForFile, TEST_POSTGRES_URL, type MigratedDatabase } from '../contract/backends.js';
import { PostgresDatabase } from '../../src/store/postgres/index.js';
import { utcDay } from '../../src/usage/day.js';
import { runCli } from '../helpers/gateway-process.js';

/** Keys put in the table by SQL before the commands run. */
const BULK = 200_000;
/** Rows of `api_keys` a transaction of the commands' role may read; reading more fails the transaction. */
const READ_LIMIT = 100;
/** The bulk keys the commands below name: the only ones whose usage rows the commands' role may read. */
const SHOWN = 123_456;
const RENAMED = 54_321;
/** Days of usage (before today) that the key shown has besides today's. */
const SHOWN_EARLIER_DAYS = 5;

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
    // Every bulk key made one request today, in this hour; the key shown also one on each of the days before.
    const now = Date.now() / 1000;
    await admin.query(
      `INSERT INTO usage_daily (key_id, day, requests, successes, duration)
       SELECT 'bulk' || lpad(n::text, 7, '0'), $2, 1, 1, 0.5 FROM generate_series(1, $1::int) AS n`,
      [BULK, utcDay(now)],
    );
    await admin.query(
      `INSERT INTO usage_daily (key_id, day, requests, successes, duration)
       SELECT $1, to_char(to_timestamp($2::float8) AT TIME ZONE 'UTC' - make_interval(days => d), 'YYYY-MM-DD'), 1, 1, 0.5
       FROM generate_series(1, $3::int) AS d`,
      [bulkId(SHOWN), now, SHOWN_EARLIER_DAYS],
    );
    await admin.query(`INSERT INTO usage_hourly (key_id, hour, requests) SELECT 'bulk' || lpad(n::text, 7, '0'), $2, 1 FROM generate_series(1, $1::int) AS n`, [
      BULK,
      Math.floor(now / 3600),
    ]);
    await admin.query('ANALYZE usage_daily; ANALYZE usage_hourly');
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
      -- On the usage tables, reading a row of a key other than those the commands name fails: loading
      -- every key's usage, even a hundred rows of it, cannot pass.
      CREATE FUNCTION comfy_gate_test_usage_read(key text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
      BEGIN
        IF key <> ALL (ARRAY['${bulkId(SHOWN)}', '${bulkId(RENAMED)}']) THEN
          RAISE EXCEPTION 'read a usage row of %, a key no command named', key;
        END IF;
        RETURN true;
      END $$;
      CREATE POLICY comfy_gate_test_reads ON usage_daily USING (comfy_gate_test_usage_read(key_id)) WITH CHECK (true);
      ALTER TABLE usage_daily ENABLE ROW LEVEL SECURITY;
      CREATE POLICY comfy_gate_test_reads ON usage_hourly USING (comfy_gate_test_usage_read(key_id)) WITH CHECK (true);
      ALTER TABLE usage_hourly ENABLE ROW LEVEL SECURITY;
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

  test(`the role cannot read more than ${READ_LIMIT} keys in a transaction, nor the usage of keys not named (what the next test relies on)`, async () => {
    const asRole = adminPool(roleUrl());
    try {
      await assert.rejects(asRole.query('SELECT key_id FROM api_keys'), new RegExp(`read more than ${READ_LIMIT} rows`));
      const { rows } = await asRole.query<{ name: string }>('SELECT name FROM api_keys WHERE key_id = $1', [bulkId(7)]);
      assert.deepEqual(rows, [{ name: 'bulk key 7' }]);
      for (const table of ['usage_daily', 'usage_hourly']) {
        await assert.rejects(asRole.query(`SELECT key_id FROM ${table} LIMIT 10`), /a key no command named/, table);
        const named = await asRole.query(`SELECT key_id FROM ${table} WHERE key_id = $1`, [bulkId(RENAMED)]);
        assert.equal(named.rowCount, 1, table);
      }
    } finally {
      await asRole.end();
    }
  });

  test('keys list reads the live keys in the order of an index, without sorting the table', async () => {
    const client = await admin.connect();
    try {
      await client.query('BEGIN');
      // As PostgresDatabase.eachPage declares its cursor.
      await client.query('SET LOCAL cursor_tuple_fraction = 1');
      const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
        `EXPLAIN (FORMAT JSON) DECLARE paged NO SCROLL CURSOR FOR ${LIVE_KEYS_OLDEST_FIRST}`,
      );
      const nodes = planNodes(rows[0]!['QUERY PLAN'][0]!.Plan);
      const described = JSON.stringify(nodes);
      assert.deepEqual(
        nodes.map((node) => [node['Node Type'], node['Index Name']]),
        [['Index Scan', 'api_keys_listed']],
        described,
      );
    } finally {
      await client.query('ROLLBACK');
      client.release();
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

      const target = bulkId(SHOWN);
      const shown = await cli('keys', 'show', target, '--json');
      assert.equal(shown.code, 0, shown.stderr);
      const shownKey = JSON.parse(shown.stdout) as Record<string, unknown> & { usage_stats: { total_requests: number; requests_last_24h: number } };
      assert.deepEqual((({ key_id, name, status, created_at }) => ({ key_id, name, status, created_at }))(shownKey), {
        key_id: target,
        name: 'bulk key 123456',
        status: 'active',
        created_at: 1_700_123_456,
      });
      assert.deepEqual([shownKey.usage_stats.total_requests, shownKey.usage_stats.requests_last_24h], [1 + SHOWN_EARLIER_DAYS, 1]);
      const shownText = await cli('keys', 'show', target);
      assert.equal(shownText.code, 0, shownText.stderr);
      assert.match(shownText.stdout, new RegExp(`^requests: +${1 + SHOWN_EARLIER_DAYS}$`, 'm'));

      const disabled = await cli('keys', 'disable', target);
      assert.equal(disabled.code, 0, disabled.stderr);
      assert.match(disabled.stdout, /^Disabled key "bulk key 123456"/);
      await announcedFor(target);
      assert.equal((await admin.query('SELECT is_active FROM api_keys WHERE key_id = $1', [target])).rows[0].is_active, false);

      const other = bulkId(RENAMED);
      const updated = await cli('keys', 'update', other, '--rate-limit', '7', '--name', 'renamed');
      assert.equal(updated.code, 0, updated.stderr);
      const rotated = await cli('keys', 'rotate', other, '--grace', '1h', '--json');
      assert.equal(rotated.code, 0, rotated.stderr);
      const changed = await admin.query('SELECT name, rate_limit, previous_key_hash FROM api_keys WHERE key_id = $1', [other]);
      assert.deepEqual(changed.rows, [{ name: 'renamed', rate_limit: 7, previous_key_hash: md5Pair(54_321) }]);

      const usage = await cli('usage', '--key', other, '--json');
      assert.equal(usage.code, 0, usage.stderr);
      const [usageOfOther] = (JSON.parse(usage.stdout) as { keys: Array<{ key_name: string; usage_stats: { total_requests: number } }> }).keys;
      assert.deepEqual([usageOfOther!.key_name, usageOfOther!.usage_stats.total_requests], ['renamed', 1]);
      for (const format of ['table', 'csv']) {
        const printed = await cli('usage', '--key', other, '--format', format);
        assert.equal(printed.code, 0, printed.stderr);
        assert.match(printed.stdout, new RegExp(`^${other}`, 'm'), format);
      }

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
    await withFreshDatabase(async (database, pool) => {
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
    });
  });
});

describe('usage of every key on PostgreSQL', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  test('pages through the keys, then the keys gone that have usage: JSON as one document, CSV, and a table with its TOTAL', async () => {
    await withFreshDatabase(async (database, pool) => {
      const count = PAGE_ROWS + 10;
      await insertBulk(pool, count, `'key ' || n`);
      await pool.query('UPDATE api_keys SET deleted = true WHERE key_id = $1', [bulkId(2)]);
      const now = Date.now() / 1000;
      const [today, yesterday] = [utcDay(now), utcDay(now - 86_400)];
      // Usage of a key on each page, of the deleted key, of a key that is in no table (imported usage), and one of an old day only.
      const used: Array<[string, string, number]> = [
        [bulkId(1), today, 2],
        [bulkId(count), yesterday, 3],
        [bulkId(2), today, 4],
        ['zz-gone', yesterday, 5],
        ['aa-long-gone', '2001-01-01', 6],
      ];
      for (const [keyId, day, requests] of used)
        await pool.query('INSERT INTO usage_daily (key_id, day, requests, successes) VALUES ($1, $2, $3, $3)', [keyId, day, requests]);
      const live = Array.from({ length: count }, (_, i) => i + 1)
        .filter((n) => n !== 2)
        .map(bulkId);
      const reported = [...live, 'aa-long-gone', bulkId(2), 'zz-gone'];

      const json = await runCli(['usage', '--json', '--days', '2', '--database-url', database.url]);
      assert.equal(json.code, 0, json.stderr);
      const document = JSON.parse(json.stdout) as {
        days: number;
        keys: Array<{ key_id: string; key_name: string | null; usage_stats: { total_requests: number } }>;
        daily_total: Array<{ date: string; requests: number }>;
      };
      assert.equal(json.stdout, `${JSON.stringify(document, null, 2)}\n`, 'the text printJson prints for the whole report');
      assert.deepEqual(
        document.keys.map((key) => key.key_id),
        reported,
      );
      const requestsOf = new Map(document.keys.map((key) => [key.key_id, key.usage_stats.total_requests]));
      assert.deepEqual(
        [bulkId(1), bulkId(count), bulkId(2), 'zz-gone', 'aa-long-gone', bulkId(3)].map((keyId) => requestsOf.get(keyId)),
        [2, 3, 4, 5, 0, 0],
      );
      assert.deepEqual(
        document.keys.filter((key) => key.key_name === null).map((key) => key.key_id),
        ['aa-long-gone', bulkId(2), 'zz-gone'],
      );
      assert.deepEqual(
        document.daily_total.map((day) => [day.date, day.requests]),
        [
          [yesterday, 8],
          [today, 6],
        ],
      );

      const csv = await runCli(['usage', '--format', 'csv', '--days', '1', '--database-url', database.url]);
      assert.equal(csv.code, 0, csv.stderr);
      const lines = csv.stdout.trimEnd().split('\n');
      assert.deepEqual(
        lines.slice(1).map((line) => line.split(',')[0]),
        reported,
      );
      assert.ok(lines[1]!.startsWith(`${bulkId(1)},key 1,${today},2,2,0,`));

      const table = await runCli(['usage', '--days', '2', '--database-url', database.url]);
      assert.equal(table.code, 0, table.stderr);
      const rows = table.stdout.trimEnd().split('\n').slice(2);
      assert.equal(rows.length, 1 + reported.length + 1, 'the header, a line per key, the TOTAL');
      assert.match(rows.at(-1)!, /^TOTAL +14 +14 /);
      assert.match(rows.at(-2)!, /^zz-gone +\(deleted\) +5 /);
      const requestsAt = rows[0]!.indexOf('REQUESTS') + 'REQUESTS'.length;
      assert.ok(
        rows.every((row) => row[requestsAt] === ' ' && row[requestsAt - 1] !== ' '),
        'the REQUESTS column ends at the same place on every line',
      );
    });
  });
});

/** Runs `run` on a new migrated database, dropped after it. */
async function withFreshDatabase(run: (database: { url: string }, pool: pg.Pool) => Promise<void>): Promise<void> {
  const database = await freshPostgresDatabase();
  if ('skip' in database) throw new Error(database.skip);
  const pool = adminPool(database.url);
  try {
    await (await PostgresDatabase.open({ url: database.url })).close();
    await run(database, pool);
  } finally {
    await pool.end();
    await database.drop();
  }
}

/** A node of a plan EXPLAIN (FORMAT JSON) gives. */
interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

/** The nodes of a plan, the top one first. */
function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

/** The key_hash `insertBulk` gives key number `n`. */
function md5Pair(n: number): string {
  return `${md5(String(n))}${md5(`x${n}`)}`;
}

function md5(text: string): string {
  return createHash('md5').update(text).digest('hex');
}
