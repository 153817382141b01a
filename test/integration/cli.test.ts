// The comfy-gate command line: keys, usage and audit, their JSON, tables and CSV, exit codes, and changes reaching a running gateway, on JSON files and on PostgreSQL.

import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, tempUserDirectory } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { adminPool, freshPostgresDatabase } from '../contract/backends.js';

const DAY = 86_400;
const CSV_HEADER = 'key_id,key_name,date,requests,successes,failures,total_duration_s,prompts,prompts_run,execution_seconds,outputs';

interface CliKey {
  key_id: string;
  api_key: string;
  name: string;
  rate_limit: number;
  role: string;
  expires_at: number | null;
  key_prefix: string;
}

interface ListedKey {
  key_id: string;
  name: string;
  rate_limit: number;
  role: string;
  status: string;
  is_active: boolean;
  expires_at: number | null;
  key_prefix: string | null;
  previous_key_valid_until: number | null;
}

interface AuditLine {
  ts: number;
  actor: string;
  action: string;
  key_id?: string;
  details?: Record<string, unknown>;
}

/** The database of each store made by `tempStore` on PostgreSQL, by its directory: COMFY_GATE_DATABASE_URL for the commands. */
const storeEnv = new Map<string, { COMFY_GATE_DATABASE_URL: string }>();

const probe = await freshPostgresDatabase();
/** Why the PostgreSQL runs are skipped, or false when the test server can be used. */
const postgresSkip = 'skip' in probe ? probe.skip : false;
if (!('skip' in probe)) await probe.drop();

/**
 * A store for one test: a fresh user directory and, with `database`, a fresh PostgreSQL database that
 * `cli` and `storeArgs` name for it; `remove` drops both.
 */
async function tempStore(database: boolean): Promise<{ path: string; remove(): Promise<void> }> {
  const dir = await tempUserDirectory();
  if (!database) return dir;
  const fresh = await freshPostgresDatabase();
  if ('skip' in fresh) throw new Error(fresh.skip);
  storeEnv.set(dir.path, { COMFY_GATE_DATABASE_URL: fresh.url });
  return {
    path: dir.path,
    async remove() {
      storeEnv.delete(dir.path);
      await fresh.drop();
      await dir.remove();
    },
  };
}

/** The flags that give a gateway the store of `dir`: none for the files, --database-url for its database. */
function storeArgs(dir: string): string[] {
  const env = storeEnv.get(dir);
  return env ? ['--database-url', env.COMFY_GATE_DATABASE_URL] : [];
}

/** Registers a test once per store: JSON files, and PostgreSQL (skipped, with the reason, when the test server cannot be reached). */
function storeTest(name: string, body: (database: boolean) => Promise<void>): void {
  test(`${name} (JSON files)`, () => body(false));
  test(`${name} (PostgreSQL)`, { skip: postgresSkip }, () => body(true));
}

/** Runs comfy-gate with `--user-directory dir` appended, on the database of `dir` when it has one. */
function cli(dir: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli([...args, '--user-directory', dir], storeEnv.get(dir));
}

/** Runs a command that must succeed and parses its JSON output. */
async function cliJson<T>(dir: string, ...args: string[]): Promise<T> {
  const result = await cli(dir, ...args, '--json');
  assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/** Asserts that a run ended with `code` and a `comfy-gate: ` message matching `message` on stderr. */
function assertFailed(result: { code: number; stdout: string; stderr: string }, code: number, message: RegExp, what: string): void {
  assert.equal(result.code, code, `${what}: exit code (stderr: ${result.stderr})`);
  assert.match(result.stderr, /^comfy-gate: /, what);
  assert.match(result.stderr, message, what);
}

/** Creates a key with the CLI and returns its JSON answer. */
function createWithCli(dir: string, ...args: string[]): Promise<CliKey> {
  return cliJson<CliKey>(dir, 'keys', 'create', ...args);
}

/** Every file of a directory with its bytes. */
async function directoryBytes(dir: string): Promise<Map<string, string>> {
  const names = (await readdir(dir)).sort();
  return new Map(await Promise.all(names.map(async (name) => [name, (await readFile(join(dir, name))).toString('base64')] as [string, string])));
}

/** Calls `probe` until `done` holds of its result or `ms` pass; resolves the last result. */
async function waitFor<T>(ms: number, probe: () => Promise<T>, done: (value: T) => boolean, intervalMs = 100): Promise<{ value: T; elapsed: number }> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    const elapsed = Date.now() - start;
    if (done(value) || elapsed > ms) return { value, elapsed };
    await sleep(intervalMs);
  }
}

describe('the comfy-gate CLI', () => {
  storeTest('keys create, list and show: a table by default, --json for scripts', async (database) => {
    const dir = await tempStore(database);
    try {
      const ops = await createWithCli(dir.path, '--name', 'ops', '--admin');
      const farm = await createWithCli(dir.path, '--name', 'farm', '--rate-limit', '5', '--expires-at', '2020-01-01T00:00:00Z');
      const later = await createWithCli(dir.path, '--name', 'later', '--expires-at', '2999-01-01');
      assert.equal(ops.role, 'admin');
      assert.equal(farm.expires_at, 1577836800);
      assert.equal(later.expires_at, Date.UTC(2999, 0, 1) / 1000);
      assert.match(farm.api_key, /^comfy_[A-Za-z0-9_-]{43}$/);
      assert.equal(farm.key_prefix, farm.api_key.slice(0, 12));

      const listedJson = await cli(dir.path, 'keys', 'list', '--json');
      assert.doesNotMatch(listedJson.stdout, /key_hash|comfy_[A-Za-z0-9_-]{43}/, 'no hashes and no secrets');
      const listed = (JSON.parse(listedJson.stdout) as { keys: ListedKey[] }).keys;
      assert.deepEqual(
        listed.map((k) => [k.key_id, k.name, k.role, k.status, k.rate_limit]),
        [
          [ops.key_id, 'ops', 'admin', 'active', 100],
          [farm.key_id, 'farm', 'user', 'expired', 5],
          [later.key_id, 'later', 'user', 'active', 100],
        ],
      );

      const fromEnv = await runCli(['keys', 'list', '--json'], { COMFY_GATE_USER_DIRECTORY: dir.path, ...storeEnv.get(dir.path) });
      assert.equal(fromEnv.code, 0);
      assert.equal((JSON.parse(fromEnv.stdout) as { keys: unknown[] }).keys.length, 3, 'COMFY_GATE_USER_DIRECTORY names the store');

      const tableRun = await cli(dir.path, 'keys', 'list');
      assert.equal(tableRun.code, 0);
      const lines = tableRun.stdout.trimEnd().split('\n');
      assert.match(lines[0]!, /^KEY_ID\s+NAME\s+PREFIX\s+ROLE\s+STATUS\s+RATE LIMIT\s+LAST USED\s+EXPIRES$/);
      assert.equal(lines.length, 4);
      const farmLine = lines.find((line) => line.startsWith(farm.key_id))!;
      for (const cell of ['farm', farm.key_prefix, 'user', 'expired', '5/h', 'never', '2020-01-01T00:00:00Z'])
        assert.ok(farmLine.includes(cell), `${cell} in ${farmLine}`);
      assert.match(
        lines.find((line) => line.startsWith(ops.key_id))!,
        /\badmin\s+active\s+100\/h\s+never\s+never$/,
      );

      const shown = await cliJson<ListedKey & { usage_stats: { total_requests: number; requests_per_day: object } }>(dir.path, 'keys', 'show', farm.key_id);
      assert.equal(shown.key_id, farm.key_id);
      assert.equal(shown.status, 'expired');
      assert.equal(shown.usage_stats.total_requests, 0);
      assert.ok(!('key_hash' in shown));
      const shownText = await cli(dir.path, 'keys', 'show', farm.key_id);
      assert.equal(shownText.code, 0);
      assert.match(shownText.stdout, /^key_id:\s+\S+/m);
      assert.match(shownText.stdout, /^status:\s+expired$/m);
      assert.match(shownText.stdout, /^rate limit:\s+5 requests\/hour$/m);
      assert.match(shownText.stdout, /Usage, last 30 days \(UTC\):\nrequests:\s+0/);

      const empty = await tempStore(database);
      const none = await cli(empty.path, 'keys', 'list');
      assert.equal(none.code, 0);
      assert.match(none.stdout, /No keys in /);
      assert.deepEqual(await cliJson(empty.path, 'keys', 'list'), { keys: [] });
      await empty.remove();
    } finally {
      await dir.remove();
    }
  });

  test('keys update checks its values as PATCH /api/keys does: exit 2 and nothing changed; an unknown key_id exits 1', async () => {
    const dir = await tempUserDirectory();
    try {
      const key = await createWithCli(dir.path, '--name', 'farm');
      const updated = await cliJson<{ message: string; key: ListedKey }>(
        dir.path,
        'keys',
        'update',
        key.key_id,
        '--rate-limit',
        '3',
        '--name',
        'Farm 2',
        '--role',
        'admin',
        '--expires-at',
        '2030-01-01T02:00:00+02:00',
      );
      assert.equal(updated.message, 'API key updated.');
      assert.deepEqual(
        [updated.key.rate_limit, updated.key.name, updated.key.role, updated.key.expires_at],
        [3, 'Farm 2', 'admin', Date.UTC(2030, 0, 1) / 1000],
      );

      const text = await cli(dir.path, 'keys', 'update', key.key_id, '--rate-limit', '7', '--expires-at', 'never');
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^Updated key "Farm 2"/);
      assert.match(text.stdout, /rate_limit: 3\/h -> 7\/h/);
      assert.match(text.stdout, /expires_at: 2030-01-01T00:00:00Z -> never/);

      const bad: Array<[string[], RegExp]> = [
        [['--rate-limit', '0'], /--rate-limit must be a whole number from 1 to 10000000/],
        [['--rate-limit', '10000001'], /--rate-limit must be a whole number from 1 to 10000000/],
        [['--rate-limit', 'abc'], /--rate-limit must be a whole number/],
        [['--role', 'boss'], /--role must be "user" or "admin"/],
        [['--name', 'x'.repeat(201)], /--name must be at most 200 characters/],
        [['--name', ''], /--name needs a value/],
        [['--name', ' '], /--name must be a non-empty string/],
        [['--expires-at', 'tomorrow'], /--expires-at must be Unix seconds or an ISO 8601 time/],
        [['--expires-at', '2025-02-30'], /--expires-at must be Unix seconds or an ISO 8601 time/],
        [['--expires-at', '999999999999'], /--expires-at must be a Unix time/],
        [[], /needs at least one of --name, --rate-limit, --role, --expires-at/],
        [['--is-active', 'false'], /Unknown option '--is-active'/],
        [['--rate-limit'], /--rate-limit/],
      ];
      for (const [args, message] of bad) {
        const result = await cli(dir.path, 'keys', 'update', key.key_id, ...args);
        assertFailed(result, 2, message, args.join(' ') || '(no flags)');
        assert.match(result.stderr, /Run comfy-gate keys update --help for the options\./);
      }
      const [after] = (await cliJson<{ keys: ListedKey[] }>(dir.path, 'keys', 'list')).keys;
      assert.deepEqual([after!.rate_limit, after!.name, after!.role, after!.expires_at], [7, 'Farm 2', 'admin', null], 'refused updates change nothing');

      for (const command of ['show', 'update', 'disable', 'enable', 'rotate', 'delete']) {
        const extra = command === 'update' ? ['--rate-limit', '3'] : command === 'delete' ? ['--yes'] : [];
        assertFailed(await cli(dir.path, 'keys', command, 'nope', ...extra), 1, /no key has key_id nope/, `keys ${command} nope`);
      }
    } finally {
      await dir.remove();
    }
  });

  storeTest('job quotas: set by keys create and keys update, cleared with none, shown, audited; a bad value exits 2 and changes nothing', async (database) => {
    const dir = await tempStore(database);
    try {
      const quotas = (key: Record<string, unknown>): unknown[] => [key.max_queued, key.max_running, key.daily_execution_seconds];
      const plain = await createWithCli(dir.path, '--name', 'plain');
      assert.deepEqual(quotas(plain as unknown as Record<string, unknown>), [null, null, null]);
      const capped = await createWithCli(dir.path, '--name', 'capped', '--max-queued', '5', '--max-running', '2', '--daily-execution-seconds', '3600');
      assert.deepEqual(quotas(capped as unknown as Record<string, unknown>), [5, 2, 3600]);
      const createdText = await cli(dir.path, 'keys', 'create', '--name', 'text', '--max-queued', '4', '--daily-execution-seconds', 'none');
      assert.equal(createdText.code, 0, createdText.stderr);
      assert.match(createdText.stdout, /100 requests\/hour, max_queued 4\) in /);

      const shown = await cli(dir.path, 'keys', 'show', capped.key_id);
      assert.match(shown.stdout, /^max queued:\s+5 jobs held, queued or running$/m);
      assert.match(shown.stdout, /^max running:\s+2 jobs running$/m);
      assert.match(shown.stdout, /^daily execution:\s+3600 seconds per UTC day$/m);
      assert.match((await cli(dir.path, 'keys', 'show', plain.key_id)).stdout, /^max queued:\s+no limit$/m);

      const updated = await cliJson<{ key: Record<string, unknown> }>(dir.path, 'keys', 'update', capped.key_id, '--max-running', '3', '--max-queued', 'none');
      assert.deepEqual(quotas(updated.key), [null, 3, 3600]);
      const text = await cli(dir.path, 'keys', 'update', capped.key_id, '--daily-execution-seconds', 'NONE', '--max-queued', '9');
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /max_queued: none -> 9/);
      assert.match(text.stdout, /daily_execution_seconds: 3600 s\/day -> none/);
      const shownJson = await cliJson<Record<string, unknown>>(dir.path, 'keys', 'show', capped.key_id);
      assert.deepEqual(quotas(shownJson), [9, 3, null]);

      const before = await directoryBytes(dir.path);
      for (const flag of ['--max-queued', '--max-running', '--daily-execution-seconds']) {
        const message = new RegExp(`${flag} must be a whole number from 1 to 1000000000, or none for no limit`);
        const bad: Array<[string, RegExp]> = [
          ['0', message],
          ['1.5', message],
          ['1000000001', message],
          ['abc', message],
          ['null', message],
          ['', new RegExp(`${flag} needs a value`)],
          ['-1', new RegExp(`'${flag}' argument is ambiguous`)],
        ];
        for (const [value, expected] of bad) {
          for (const command of [
            ['keys', 'update', capped.key_id, flag, value],
            ['keys', 'create', '--name', 'refused', flag, value],
          ]) {
            assertFailed(await cli(dir.path, ...command), 2, expected, command.join(' '));
          }
        }
      }
      assert.deepEqual(await directoryBytes(dir.path), before, 'refused commands change no file');

      const { entries } = await cliJson<{ entries: AuditLine[] }>(dir.path, 'audit');
      const ofCapped = entries.filter((e) => e.key_id === capped.key_id).map((e) => e.details);
      assert.deepEqual(ofCapped, [
        {
          name: 'capped',
          role: 'user',
          rate_limit: 100,
          expires_at: null,
          max_queued: 5,
          max_running: 2,
          daily_execution_seconds: 3600,
          policy: null,
          webhook_url: null,
        },
        { max_running: 3, max_queued: null },
        { max_queued: 9, daily_execution_seconds: null },
      ]);
    } finally {
      await dir.remove();
    }
  });

  storeTest('disable, enable, rotate and delete; each change is in the audit trail with actor "cli"', async (database) => {
    const dir = await tempStore(database);
    try {
      const key = await createWithCli(dir.path, '--name', 'farm');
      const disabled = await cliJson<{ key: ListedKey }>(dir.path, 'keys', 'disable', key.key_id);
      assert.deepEqual([disabled.key.is_active, disabled.key.status], [false, 'disabled']);
      const again = await cli(dir.path, 'keys', 'disable', key.key_id);
      assert.equal(again.code, 0);
      assert.match(again.stdout, /already disabled; nothing changed/);
      const enabledText = await cli(dir.path, 'keys', 'enable', key.key_id);
      assert.equal(enabledText.code, 0);
      assert.match(enabledText.stdout, /^Enabled key "farm" .*status now active/);

      const before = Date.now() / 1000;
      const rotated = await cliJson<CliKey & { previous_key_valid_until: number; message: string }>(dir.path, 'keys', 'rotate', key.key_id, '--grace', '1h');
      assert.equal(rotated.key_id, key.key_id);
      assert.notEqual(rotated.api_key, key.api_key);
      assert.match(rotated.api_key, /^comfy_[A-Za-z0-9_-]{43}$/);
      assert.equal(rotated.key_prefix, rotated.api_key.slice(0, 12));
      assert.ok(rotated.previous_key_valid_until >= before + 3600 && rotated.previous_key_valid_until <= Date.now() / 1000 + 3600);
      const rotatedText = await cli(dir.path, 'keys', 'rotate', key.key_id);
      assert.equal(rotatedText.code, 0);
      assert.match(rotatedText.stdout, /The old secret no longer works\.\nNew API key \(shown only this once, save it now\): comfy_[A-Za-z0-9_-]{43}\n$/);
      const [listed] = (await cliJson<{ keys: ListedKey[] }>(dir.path, 'keys', 'list')).keys;
      assert.equal(listed!.previous_key_valid_until, null, 'a rotation without --grace ends the old secret at once');
      for (const grace of ['-1', '31d', '1w', 'abc', '']) {
        assertFailed(await cli(dir.path, 'keys', 'rotate', key.key_id, '--grace', grace), 2, /--grace/, `--grace ${grace}`);
      }

      const refused = await cli(dir.path, 'keys', 'delete', key.key_id);
      assertFailed(refused, 2, /needs --yes/, 'delete without --yes and without a terminal');
      assert.equal((await cliJson<{ keys: unknown[] }>(dir.path, 'keys', 'list')).keys.length, 1, 'the key is still there');
      assert.deepEqual(await cliJson(dir.path, 'keys', 'delete', key.key_id, '--yes'), { message: 'API key deleted.', key_id: key.key_id });
      assert.deepEqual(await cliJson(dir.path, 'keys', 'list'), { keys: [] });
      assertFailed(await cli(dir.path, 'keys', 'show', key.key_id), 1, new RegExp(`no key has key_id ${key.key_id}`), 'show after delete');

      const { entries } = await cliJson<{ entries: AuditLine[] }>(dir.path, 'audit');
      assert.deepEqual(
        entries.map((e) => e.action),
        ['key.create', 'key.disable', 'key.enable', 'key.rotate', 'key.rotate', 'key.delete'],
      );
      assert.ok(entries.every((e) => e.actor === 'cli' && e.key_id === key.key_id));
      assert.deepEqual(entries[1]!.details, { is_active: false });
      assert.deepEqual(entries[3]!.details, { grace_seconds: 3600 });
      assert.deepEqual(entries[4]!.details, { grace_seconds: 0 });

      const auditText = await cli(dir.path, 'audit');
      assert.equal(auditText.code, 0);
      const auditLines = auditText.stdout.trimEnd().split('\n');
      assert.match(auditLines[0]!, /^TIME \(UTC\)\s+ACTOR\s+ACTION\s+KEY_ID\s+IP\s+DETAILS$/);
      assert.equal(auditLines.length, 7);
      assert.match(
        auditLines[2]!,
        new RegExp(`^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z\\s+cli\\s+key\\.disable\\s+${key.key_id}\\s+-\\s+\\{"is_active":false\\}$`),
      );

      const lastTwo = await cliJson<{ entries: AuditLine[] }>(dir.path, 'audit', '--limit', '2');
      assert.deepEqual(
        lastTwo.entries.map((e) => e.action),
        ['key.rotate', 'key.delete'],
        '--limit keeps the most recent entries',
      );
      assert.deepEqual(await cliJson(dir.path, 'audit', '--since', '2999-01-01'), { entries: [] });
      const sinceRotation = await cliJson<{ entries: AuditLine[] }>(dir.path, 'audit', '--since', String(entries[3]!.ts));
      assert.deepEqual(
        sinceRotation.entries.map((e) => e.action),
        ['key.rotate', 'key.rotate', 'key.delete'],
      );
      const sinceIso = await cliJson<{ entries: AuditLine[] }>(dir.path, 'audit', '--since', new Date((entries[0]!.ts - 60) * 1000).toISOString());
      assert.equal(sinceIso.entries.length, 6);
      for (const args of [['--limit', '0'], ['--limit', 'x'], ['--since', 'yesterday'], ['--bogus']]) {
        assertFailed(await cli(dir.path, 'audit', ...args), 2, /comfy-gate: /, `audit ${args.join(' ')}`);
      }
    } finally {
      await dir.remove();
    }
  });

  storeTest(
    'keys update shows the values it replaced without their control characters: a stored name or policy cannot drive the terminal',
    async (database) => {
      const dir = await tempStore(database);
      try {
        // C1 controls (CSI is U+009B) pass the name check, as the API's: only what is printed is cleaned.
        const csi = '\u009b';
        const key = await createWithCli(dir.path, `--name=red${csi}31m`, '--policy', JSON.stringify({ deny_nodes: [`Node${csi}2J`] }));
        const updated = await cli(dir.path, 'keys', 'update', key.key_id, '--name', 'plain', '--policy', 'none');
        assert.equal(updated.code, 0, updated.stderr);
        assert.match(updated.stdout, /name: "red\?31m" -> "plain"/);
        assert.match(updated.stdout, /policy: \{"deny_nodes":\["Node\?2J"\]\} -> none/);
        assert.doesNotMatch(updated.stdout, /[\u0080-\u009f]/);
      } finally {
        await dir.remove();
      }
    },
  );

  test('usage CSV: a cell a spreadsheet would run as a formula starts with a quote', async () => {
    const dir = await tempUserDirectory();
    try {
      const names = ['=HYPERLINK("https://example.com/x","Click")', '+1', '-2+3', '@SUM(A1)', 'plain', 'a=b'];
      const keys: CliKey[] = [];
      for (const name of names) keys.push(await createWithCli(dir.path, `--name=${name}`));
      const now = Math.floor(Date.now() / 1000);
      // A usage file can name any key_id: a deleted key's id is written as it is read.
      const record = {
        key_id: '=cmd|"/c calc"!A0',
        endpoint: '/api/prompt',
        timestamp: now - 60,
        duration: 1,
        success: true,
        metadata: { method: 'POST', status: 200 },
      };
      await writeFile(join(dir.path, 'api_usage.json'), JSON.stringify({ records: [record] }));
      const csv = await cli(dir.path, 'usage', '--format', 'csv', '--days', '1');
      assert.equal(csv.code, 0, csv.stderr);
      const today = new Date(now * 1000).toISOString().slice(0, 10);
      // A generated key_id may itself start with "-" (base64url).
      const id = (i: number): string => (keys[i]!.key_id.startsWith('-') ? `"'${keys[i]!.key_id}"` : keys[i]!.key_id);
      assert.deepEqual(csv.stdout.trimEnd().split('\n'), [
        CSV_HEADER,
        `${id(0)},"'=HYPERLINK(""https://example.com/x"",""Click"")",${today},0,0,0,0,0,0,0,0`,
        `${id(1)},"'+1",${today},0,0,0,0,0,0,0,0`,
        `${id(2)},"'-2+3",${today},0,0,0,0,0,0,0,0`,
        `${id(3)},"'@SUM(A1)",${today},0,0,0,0,0,0,0,0`,
        `${id(4)},plain,${today},0,0,0,0,0,0,0,0`,
        `${id(5)},a=b,${today},0,0,0,0,0,0,0,0`,
        `"'=cmd|""/c calc""!A0",,${today},1,1,0,1,0,0,0,0`,
      ]);
    } finally {
      await dir.remove();
    }
  });

  test('usage: a table, JSON and a CSV billing export with one row per key per UTC day, without writing to the usage files', async () => {
    const dir = await tempUserDirectory();
    try {
      const north = await createWithCli(dir.path, '--name', 'Farm, "north"');
      const south = await createWithCli(dir.path, '--name', 'south');
      const today = Math.floor(Date.now() / 1000 / DAY) * DAY;
      const [todayDate, yesterdayDate] = [today, today - DAY].map((t) => new Date(t * 1000).toISOString().slice(0, 10)) as [string, string];
      const record = (keyId: string, timestamp: number, status: number, duration: number): Record<string, unknown> => ({
        key_id: keyId,
        endpoint: '/api/prompt',
        timestamp,
        duration,
        success: status < 400,
        metadata: { method: 'POST', status },
      });
      // The reference's file layout, a journal with a 429, two prompts, a job and a line torn by a writer still appending, and a deleted key's usage.
      await writeFile(
        join(dir.path, 'api_usage.json'),
        JSON.stringify(
          {
            records: [
              record(north.key_id, today - 3600, 200, 1),
              record(north.key_id, today + 1, 200, 0.25),
              record(north.key_id, today + 2, 500, 0.5),
              record('deleted-key', today + 3, 200, 2),
            ],
          },
          null,
          2,
        ),
      );
      await writeFile(
        join(dir.path, 'api_usage.journal'),
        [
          JSON.stringify({ journal_id: 'j1' }),
          JSON.stringify(record(north.key_id, today + 4, 201, 0.125)),
          JSON.stringify({ rate_limited: true, key_id: north.key_id, timestamp: today + 5 }),
          JSON.stringify({ prompt_admitted: true, key_id: north.key_id, timestamp: today + 6 }),
          JSON.stringify({ prompt_admitted: true, key_id: north.key_id, timestamp: today + 7 }),
          JSON.stringify({ job_run: true, key_id: north.key_id, timestamp: today + 8, execution_seconds: 95.25, outputs: 4 }),
          '{"key_id":"' + south.key_id + '","endpoint":"/api/pro',
        ].join('\n'),
      );
      await writeFile(
        join(dir.path, 'api_usage.journal.compacting'),
        JSON.stringify({ journal_id: 'j0' }) + '\n' + JSON.stringify(record(south.key_id, today + 6, 200, 3)) + '\n',
      );
      const before = await directoryBytes(dir.path);

      const csv = await cli(dir.path, 'usage', '--format', 'csv', '--days', '2');
      assert.equal(csv.code, 0, csv.stderr);
      assert.deepEqual(csv.stdout.trimEnd().split('\n'), [
        CSV_HEADER,
        `${north.key_id},"Farm, ""north""",${yesterdayDate},1,1,0,1,0,0,0,0`,
        `${north.key_id},"Farm, ""north""",${todayDate},3,2,1,0.875,2,1,95.25,4`,
        `${south.key_id},south,${yesterdayDate},0,0,0,0,0,0,0,0`,
        `${south.key_id},south,${todayDate},1,1,0,3,0,0,0,0`,
        `deleted-key,,${yesterdayDate},0,0,0,0,0,0,0,0`,
        `deleted-key,,${todayDate},1,1,0,2,0,0,0,0`,
      ]);
      const oneKey = await cli(dir.path, 'usage', '--format', 'csv', '--key', south.key_id, '--days', '7');
      const oneKeyLines = oneKey.stdout.trimEnd().split('\n');
      assert.equal(oneKeyLines.length, 1 + 7, 'every day of the period, quiet days included');
      assert.ok(oneKeyLines.slice(1).every((line) => line.startsWith(`${south.key_id},south,`)));

      interface UsageJson {
        days: number;
        from: string;
        to: string;
        keys: Array<{
          key_id: string;
          key_name: string | null;
          usage_stats: { total_requests: number; failed_requests: number; rate_limited_requests: number; execution_seconds: number; prompts: number };
          daily: Array<{ date: string; requests: number }>;
        }>;
        daily_total: Array<{ date: string; requests: number }>;
      }
      const json = await cliJson<UsageJson>(dir.path, 'usage', '--days', '2');
      assert.deepEqual([json.days, json.from, json.to], [2, yesterdayDate, todayDate]);
      assert.deepEqual(
        json.keys.map((k) => [k.key_id, k.key_name, k.usage_stats.total_requests]),
        [
          [north.key_id, 'Farm, "north"', 4],
          [south.key_id, 'south', 1],
          ['deleted-key', null, 1],
        ],
      );
      assert.equal(json.keys[0]!.usage_stats.failed_requests, 1);
      assert.equal(json.keys[0]!.usage_stats.rate_limited_requests, 1);
      assert.deepEqual([json.keys[0]!.usage_stats.prompts, json.keys[0]!.usage_stats.execution_seconds], [2, 95.25]);
      assert.deepEqual(
        json.daily_total.map((d) => [d.date, d.requests]),
        [
          [yesterdayDate, 1],
          [todayDate, 5],
        ],
      );
      assert.deepEqual(await cliJson(dir.path, 'usage', '--format', 'json', '--days', '2'), json);

      const tableRun = await cli(dir.path, 'usage', '--days', '2');
      assert.equal(tableRun.code, 0);
      assert.match(tableRun.stdout, new RegExp(`^Usage from ${yesterdayDate} to ${todayDate} \\(UTC, 2 days\\):`));
      assert.match(
        tableRun.stdout,
        /^KEY_ID\s+NAME\s+REQUESTS\s+SUCCESSES\s+FAILURES\s+REFUSED \(429\)\s+DURATION \(S\)\s+PROMPTS\s+RUN\s+EXECUTION \(S\)\s+OUTPUTS$/m,
      );
      assert.match(tableRun.stdout, new RegExp(`^${north.key_id}\\s+Farm, "north"\\s+4\\s+3\\s+1\\s+1\\s+1\\.875\\s+2\\s+1\\s+95\\.25\\s+4$`, 'm'));
      assert.match(tableRun.stdout, /^deleted-key\s+\(deleted\)\s+1\s+1\s+0\s+0\s+2\s+0\s+0\s+0\s+0$/m);
      assert.match(tableRun.stdout, /^TOTAL\s+6\s+5\s+1\s+1\s+6\.875\s+2\s+1\s+95\.25\s+4$/m);
      const byDay = await cli(dir.path, 'usage', '--key', north.key_id, '--days', '2');
      assert.match(byDay.stdout, new RegExp(`^${todayDate}\\s+3\\s+2\\s+1\\s+1\\s+0\\.875\\s+2\\s+1\\s+95\\.25\\s+4$`, 'm'));

      const shown = await cliJson<{ usage_stats: { total_requests: number; requests_per_day: Record<string, number> } }>(
        dir.path,
        'keys',
        'show',
        north.key_id,
      );
      assert.equal(shown.usage_stats.total_requests, 4);
      assert.deepEqual(shown.usage_stats.requests_per_day, { [yesterdayDate]: 1, [todayDate]: 3 });

      assertFailed(await cli(dir.path, 'usage', '--key', 'nope'), 1, /no key has key_id nope/, 'usage --key nope');
      for (const args of [['--days', '0'], ['--days', '366'], ['--days', 'x'], ['--format', 'xml'], ['--json', '--format', 'csv'], ['extra']]) {
        assertFailed(await cli(dir.path, 'usage', ...args), 2, /comfy-gate: /, `usage ${args.join(' ')}`);
      }
      assert.deepEqual(await directoryBytes(dir.path), before, 'reading usage wrote nothing: the torn line and the aside journal are left to the gateway');
    } finally {
      await dir.remove();
    }
  });

  test('exit code 2 for bad arguments, 1 for failures; --help on every command', async () => {
    const dir = await tempUserDirectory();
    try {
      const usageErrors: Array<[string[], RegExp]> = [
        [['keys'], /keys needs a command first: one of list, create, show, update, disable, enable, rotate, delete/],
        [['keys', 'frob'], /unknown keys command "frob"/],
        [['frob'], /unknown command "frob"/],
        [['keys', 'show'], /keys show needs a KEY_ID/],
        [['keys', 'rotate'], /keys rotate needs a KEY_ID/],
        [['keys', 'show', 'a', 'b'], /unexpected argument "b"/],
        [['keys', 'list', 'extra'], /unexpected argument "extra"/],
        [['keys', 'list', '--bogus'], /Unknown option '--bogus'/],
        [['keys', 'create', '--expires-at', 'soon'], /--expires-at must be/],
        [['keys', 'disable', 'x', '--yes'], /Unknown option '--yes'/],
        [['usage', '--bogus'], /Unknown option/],
        [['audit', '--bogus'], /Unknown option/],
      ];
      for (const [args, message] of usageErrors) assertFailed(await cli(dir.path, ...args), 2, message, args.join(' '));

      const missing = join(dir.path, 'not-here');
      for (const args of [['keys', 'list'], ['keys', 'show', 'x'], ['usage'], ['audit']]) {
        assertFailed(await cli(missing, ...args), 1, /not-here does not exist/, `${args.join(' ')} on a missing directory`);
      }
      await writeFile(join(dir.path, 'api_keys.json'), '{"broken": ');
      assertFailed(await cli(dir.path, 'keys', 'list'), 1, /api_keys\.json cannot be read .* never overwrites/, 'a corrupt key file');
      assert.equal(await readFile(join(dir.path, 'api_keys.json'), 'utf8'), '{"broken": ');
      await writeFile(join(dir.path, 'api_keys.json'), '{}');
      await writeFile(join(dir.path, 'api_usage.json'), '{"records": [');
      assertFailed(await cli(dir.path, 'usage'), 1, /api_usage\.json cannot be read/, 'a corrupt usage file');
      await writeFile(join(dir.path, 'audit.jsonl'), 'not json\n');
      assertFailed(await cli(dir.path, 'audit'), 1, /audit\.jsonl cannot be read/, 'a corrupt audit trail');

      const helps: Array<[string[], RegExp[]]> = [
        [
          ['keys', '--help'],
          [/comfy-gate keys COMMAND/, /rotate KEY_ID/, /delete KEY_ID/],
        ],
        [
          ['keys', 'list', '--help'],
          [/comfy-gate keys list/, /--user-directory DIR/],
        ],
        [
          ['keys', 'create', '-h'],
          [/--rate-limit N/, /--admin/, /--expires-at/],
        ],
        [['keys', 'show', '--help'], [/comfy-gate keys show KEY_ID/]],
        [
          ['keys', 'update', '--help'],
          [/--role/, /--expires-at/, /never/],
        ],
        [['keys', 'disable', '--help'], [/KEY_DISABLED/]],
        [['keys', 'enable', '--help'], [/comfy-gate keys enable KEY_ID/]],
        [
          ['keys', 'rotate', '--help'],
          [/--grace DURATION/, /5m, 1h, 1d/],
        ],
        [['keys', 'delete', '--help'], [/--yes/]],
        [
          ['usage', '--help'],
          [/--format/, new RegExp(CSV_HEADER)],
        ],
        [
          ['audit', '--help'],
          [/--since/, /--limit/],
        ],
        [
          ['--help'],
          [
            /keys list/,
            /keys create/,
            /keys show/,
            /keys update/,
            /keys disable/,
            /keys enable/,
            /keys rotate/,
            /keys delete/,
            /comfy-gate usage/,
            /comfy-gate audit/,
            /--require-api-auth/,
          ],
        ],
      ];
      for (const [args, patterns] of helps) {
        const result = await runCli(args);
        assert.equal(result.code, 0, args.join(' '));
        for (const pattern of patterns) assert.match(result.stdout, pattern, `${args.join(' ')} mentions ${pattern}`);
      }
    } finally {
      await dir.remove();
    }
  });

  describe('beside a running gateway (--require-api-auth)', () => {
    let comfy: FakeComfyUI;
    before(async () => {
      comfy = await startFakeComfyUI();
    });
    after(async () => {
      await comfy.close();
    });

    storeTest('disable, rotate and update take effect within 2 s; usage made through the gateway shows in the CSV', async (database) => {
      const dir = await tempStore(database);
      const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', ...storeArgs(dir.path)], userDirectory: dir.path });
      try {
        const admin = await createKey(gateway.url, { name: 'admin', rate_limit: 100_000 });
        const [toDisable, toRotate, toLimit, toBill] = await Promise.all(
          ['disable me', 'rotate me', 'limit me', 'bill me'].map((name) => createWithCli(dir.path, '--name', name)),
        );
        // Known to the gateway? Asked with the admin key, so that no failed authentication is counted.
        for (const key of [toDisable!, toRotate!, toLimit!, toBill!]) {
          const known = await waitFor(
            2000,
            () => send(gateway.url, `/api/keys/${key.key_id}`, { key: admin.api_key }),
            (res) => res.status === 200,
          );
          assert.equal(known.value.status, 200, `the gateway accepts ${key.name} within 2 s`);
        }
        const queue = (apiKey: string): Promise<TestResponse> => send(gateway.url, '/api/queue', { key: apiKey });

        assert.equal((await queue(toDisable!.api_key)).status, 200);
        const disabling = await cli(dir.path, 'keys', 'disable', toDisable!.key_id);
        assert.equal(disabling.code, 0, disabling.stderr);
        const refused = await waitFor(
          2000,
          () => queue(toDisable!.api_key),
          (res) => res.status === 401,
        );
        assert.equal(refused.value.status, 401, `refused within 2 s (${refused.elapsed} ms)`);
        assert.equal(refused.value.json().error_code, 'KEY_DISABLED');

        const rotation = await cliJson<CliKey>(dir.path, 'keys', 'rotate', toRotate!.key_id, '--grace', '1h');
        const rotated = await waitFor(
          2000,
          () => send(gateway.url, `/api/keys/${toRotate!.key_id}`, { key: admin.api_key }),
          (res) => res.json().key_prefix === rotation.key_prefix,
        );
        assert.equal(rotated.value.json().key_prefix, rotation.key_prefix, `the gateway has the new secret within 2 s (${rotated.elapsed} ms)`);
        assert.equal((await queue(rotation.api_key)).status, 200, 'the new secret works');
        assert.equal((await queue(toRotate!.api_key)).status, 200, 'the old secret works during the grace period');

        const first = await queue(toLimit!.api_key);
        assert.equal(first.headers['x-ratelimit-limit'], '100');
        const limiting = await cli(dir.path, 'keys', 'update', toLimit!.key_id, '--rate-limit', '3');
        assert.equal(limiting.code, 0, limiting.stderr);
        const limited = await waitFor(
          2000,
          () => queue(toLimit!.api_key),
          (res) => res.headers['x-ratelimit-limit'] === '3',
          150,
        );
        assert.equal(limited.value.headers['x-ratelimit-limit'], '3', `X-RateLimit-Limit is 3 within 2 s (${limited.elapsed} ms)`);

        let billed = 0;
        for (let i = 0; i < 5; i += 1) if ((await queue(toBill!.api_key)).status === 200) billed += 1;
        assert.equal(billed, 5);
        await sleep(1100);
        const csv = await cli(dir.path, 'usage', '--format', 'csv', '--key', toBill!.key_id, '--days', '2');
        assert.equal(csv.code, 0, csv.stderr);
        const [header, ...rows] = csv.stdout.trimEnd().split('\n');
        assert.equal(header, CSV_HEADER);
        assert.equal(rows.length, 2);
        const cells = rows.map((row) => row.split(','));
        assert.ok(cells.every((c) => c[0] === toBill!.key_id && c[1] === 'bill me'));
        assert.equal(
          cells.reduce((sum, c) => sum + Number(c[3]), 0),
          5,
          'requests',
        );
        assert.equal(
          cells.reduce((sum, c) => sum + Number(c[4]), 0),
          5,
          'successes',
        );
        assert.equal(
          cells.reduce((sum, c) => sum + Number(c[5]), 0),
          0,
          'failures',
        );

        // The gateway keeps recording while the CLI reads, and the next read has every request.
        for (let i = 0; i < 3; i += 1) assert.equal((await queue(toBill!.api_key)).status, 200);
        await sleep(1100);
        const again = await cliJson<{ keys: Array<{ usage_stats: { total_requests: number } }> }>(dir.path, 'usage', '--key', toBill!.key_id);
        assert.equal(again.keys[0]!.usage_stats.total_requests, 8);

        const { entries } = await cliJson<{ entries: AuditLine[] }>(dir.path, 'audit');
        const byCli = entries.filter((e) => e.actor === 'cli').map((e) => `${e.action} ${e.key_id}`);
        for (const expected of [
          `key.disable ${toDisable!.key_id}`,
          `key.rotate ${toRotate!.key_id}`,
          `key.update ${toLimit!.key_id}`,
          `key.create ${toBill!.key_id}`,
        ]) {
          assert.ok(byCli.includes(expected), `${expected} in the audit trail`);
        }
        assert.ok(entries.some((e) => e.actor === 'bootstrap' && e.action === 'key.create' && e.key_id === admin.key_id));
        assert.equal(await gateway.stop(), 0);
        if (database) {
          // The report is read from the daily totals: never from the records of every key's requests (a gateway's last hour of them).
          const pool = adminPool(storeEnv.get(dir.path)!.COMFY_GATE_DATABASE_URL);
          try {
            await pool.query('ALTER TABLE usage_records RENAME TO usage_records_aside');
          } finally {
            await pool.end();
          }
          const fromTotals = await cliJson<{ keys: Array<{ usage_stats: { total_requests: number } }> }>(dir.path, 'usage', '--key', toBill!.key_id);
          assert.equal(fromTotals.keys[0]!.usage_stats.total_requests, 8);
          return;
        }
        const journal = await readFile(join(dir.path, 'api_usage.journal'), 'utf8');
        assert.ok(journal.endsWith('\n'));
        for (const line of journal.split('\n').filter(Boolean)) JSON.parse(line);
      } finally {
        await gateway.stop();
        await dir.remove();
      }
    });
  });
});

describe('the commands and a database URL', () => {
  test('a database that cannot be used exits 1 naming it without its password; a URL that is not postgres:// exits 2; neither touches the folder', async () => {
    const dir = await tempUserDirectory();
    try {
      // Port 1 on loopback: nothing listens there.
      const unreachable = 'postgres://gate:s3cret-pw@127.0.0.1:1/comfy';
      const named = /cannot use the database at postgres:\/\/gate:\*\*\*@127\.0\.0\.1:1\/comfy/;
      // PostgreSQL's client also takes the password as a query parameter.
      const inQuery = 'postgres://gate@127.0.0.1:1/comfy?sslmode=disable&password=s3cret-pw&sslpassword=s3cret-pw';
      const namedInQuery = /cannot use the database at postgres:\/\/gate@127\.0\.0\.1:1\/comfy\?sslmode=disable&password=\*\*\*&sslpassword=\*\*\*/;
      for (const [args, env, expected] of [
        [['keys', 'list', '--user-directory', dir.path], { COMFY_GATE_DATABASE_URL: unreachable }, named],
        [['keys', 'create', '--name', 'x', '--database-url', unreachable, '--user-directory', dir.path], {}, named],
        [['usage', '--database-url', unreachable], {}, named],
        [['audit'], { COMFY_GATE_DATABASE_URL: unreachable }, named],
        [['workflows', 'list', '--database-url', unreachable], {}, named],
        [['keys', 'list', '--user-directory', dir.path], { COMFY_GATE_DATABASE_URL: inQuery }, namedInQuery],
        [['migrate', '--from-user-directory', dir.path], { COMFY_GATE_DATABASE_URL: inQuery }, namedInQuery],
      ] as const) {
        const result = await runCli([...args], { ...env });
        assertFailed(result, 1, expected, args.join(' '));
        assert.doesNotMatch(result.stderr + result.stdout, /s3cret-pw/, `${args.join(' ')}: no password`);
      }
      for (const args of [
        ['keys', 'list', '--database-url', 'mysql://x/y'],
        ['audit', '--database-url-file', join(dir.path, 'missing')],
      ]) {
        assertFailed(await runCli(args), 2, /database-url/, args.join(' '));
      }
      assert.deepEqual(await readdir(dir.path), [], 'nothing was written to the folder');
    } finally {
      await dir.remove();
    }
  });
});
