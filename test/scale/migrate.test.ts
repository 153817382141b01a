// comfy-gate migrate: a JSON store made by a real gateway, copied into PostgreSQL twice (the second run copies nothing), then served from it.

import assert from 'node:assert/strict';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { queuePrompt, waitForHistory } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, tempUserDirectory } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';

const fresh = await freshPostgresDatabase();

interface Copied {
  source: string;
  database: string;
  copied: Record<string, { found: number; copied: number }>;
}

describe('comfy-gate migrate', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  let comfy: FakeComfyUI;
  const cleanups: Array<() => Promise<unknown>> = [];
  before(async () => {
    comfy = await startFakeComfyUI();
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await comfy.close();
    await database.drop();
  });

  test('copies keys, usage, ownership, sessions and audit; a second run copies nothing; a gateway on PostgreSQL serves them', async () => {
    const directory = await tempUserDirectory();
    cleanups.push(directory.remove);
    const fileGateway = await startGateway({ upstream: comfy.url, userDirectory: directory.path, args: ['--require-api-auth'] });
    const admin = await createKey(fileGateway.url, { name: 'admin' });
    const user = await createKey(
      fileGateway.url,
      {
        name: 'user',
        rate_limit: 500,
        metadata: { team: 'vfx' },
        max_queued: 4,
        daily_execution_seconds: 7200,
        policy: { max_steps: 40, deny_nodes: ['*Upscale*'] },
      },
      admin.api_key,
    );
    await send(fileGateway.url, `/api/keys/${user.key_id}`, { method: 'PATCH', key: admin.api_key, body: { name: 'renamed user' } });
    const doomed = await createKey(fileGateway.url, { name: 'doomed' }, admin.api_key);
    await send(fileGateway.url, `/api/keys/${doomed.key_id}`, { method: 'DELETE', key: admin.api_key });
    const promptId = await queuePrompt(fileGateway.url, user.api_key, { client_id: 'user-tab' });
    await waitForHistory(fileGateway.url, user.api_key, promptId);
    for (let i = 0; i < 5; i += 1) await send(fileGateway.url, '/api/system_stats', { key: user.api_key });
    const login = await send(fileGateway.url, '/login', { method: 'POST', body: { api_key: user.api_key } });
    assert.equal(login.status, 200);
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    const usageBefore = (await send(fileGateway.url, '/api/usage', { key: user.api_key })).json<{ usage_stats: Record<string, unknown> }>().usage_stats;
    // Numbers JavaScript would write otherwise: they must be copied as written.
    const workflow = {
      prompt: '{"3":{"class_type":"KSampler","inputs":{"seed":18446744073709551615,"cfg":7.0}}}',
      inputs: '{"seed":{"node":"3","input":"seed","type":"integer","max":18446744073709551615}}',
    };
    const workflowBody = `{"prompt":${workflow.prompt},"inputs":${workflow.inputs}}`;
    const registered = await send(fileGateway.url, '/api/gateway/workflows/kept', {
      method: 'PUT',
      key: admin.api_key,
      body: workflowBody,
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(registered.status, 201);
    const auditBefore = (await send(fileGateway.url, '/api/audit', { key: admin.api_key })).json<{ entries: unknown[] }>().entries;
    assert.equal(await fileGateway.stop(), 0);

    const args = ['migrate', '--from-user-directory', directory.path, '--database-url', database.url, '--json'];
    const first = await runCli(args);
    assert.equal(first.code, 0, first.stderr);
    const report = JSON.parse(first.stdout) as Copied;
    assert.equal(report.source, directory.path);
    const copied = Object.fromEntries(Object.entries(report.copied).map(([kind, c]) => [kind, c.copied]));
    const found = Object.fromEntries(Object.entries(report.copied).map(([kind, c]) => [kind, c.found]));
    assert.deepEqual(copied, found, 'the first run copies everything it finds');
    assert.equal(copied.keys, 2, 'the two live keys (the deleted one is gone from the JSON store)');
    assert.ok(copied.usage_records! >= 10, `usage records: ${copied.usage_records}`);
    assert.ok(copied.daily_totals! >= 2);
    assert.ok(copied.ownership! >= 2, 'the client id, the output file');
    assert.ok(copied.jobs! >= 1, "the prompt's job");
    assert.equal(copied.sessions, 1);
    assert.equal(copied.audit_entries, auditBefore.length + 0, 'every audit entry (the sign-in included)');
    assert.equal(copied.workflows, 1);

    const second = await runCli(args);
    assert.equal(second.code, 0, second.stderr);
    const again = JSON.parse(second.stdout) as Copied;
    assert.ok(
      Object.values(again.copied).every((c) => c.copied === 0),
      `the second run copies nothing: ${second.stdout}`,
    );
    assert.deepEqual(Object.fromEntries(Object.entries(again.copied).map(([kind, c]) => [kind, c.found])), found);
    const human = await runCli(args.slice(0, -1));
    assert.equal(human.code, 0);
    assert.match(human.stdout, /nothing new/);
    assert.match(human.stdout, /usage records\s+0\s+\d+/);

    const emptyDirectory = await tempUserDirectory();
    cleanups.push(emptyDirectory.remove);
    const pgGateway = await startGateway({
      upstream: comfy.url,
      userDirectory: emptyDirectory.path,
      args: ['--require-api-auth', '--database-url', database.url],
    });
    cleanups.push(() => pgGateway.stop());
    assert.match(pgGateway.output().stdout, /\(2 keys\)/);
    const listed = (await send(pgGateway.url, '/api/keys', { key: admin.api_key })).json<{
      keys: Array<Record<string, unknown> & { key_id: string; name: string }>;
    }>().keys;
    assert.deepEqual(
      listed.map((k) => [k.key_id, k.name]).sort(),
      [
        [admin.key_id, 'admin'],
        [user.key_id, 'renamed user'],
      ].sort(),
    );
    const copiedUser = listed.find((k) => k.key_id === user.key_id)!;
    assert.deepEqual(copiedUser.metadata, { team: 'vfx' });
    assert.deepEqual([copiedUser.max_queued, copiedUser.max_running, copiedUser.daily_execution_seconds], [4, null, 7200], 'job quotas copied');
    assert.deepEqual(copiedUser.policy, { deny_nodes: ['*Upscale*'], max_steps: 40 }, 'prompt policy copied');
    const copiedAdmin = listed.find((k) => k.key_id === admin.key_id)!;
    assert.deepEqual([copiedAdmin.max_queued, copiedAdmin.max_running, copiedAdmin.daily_execution_seconds, copiedAdmin.policy], [null, null, null, null]);
    const usageAfter = (await send(pgGateway.url, '/api/usage', { key: user.api_key })).json<{ usage_stats: Record<string, number> }>().usage_stats;
    assert.equal(usageAfter.total_requests, (usageBefore.total_requests as number) + 1, 'the usage read before stopping was itself counted');
    assert.equal(usageAfter.requests_last_24h, (usageBefore.requests_last_24h as number) + 1);
    const kept = (await send(pgGateway.url, '/api/gateway/workflows/kept', { key: admin.api_key })).text;
    assert.ok(kept.includes(`"inputs":${workflow.inputs}`) && kept.includes(`"prompt":${workflow.prompt}`), `the workflow copied as written: ${kept}`);
    const auditAfter = (await send(pgGateway.url, '/api/audit', { key: admin.api_key })).json<{ entries: unknown[] }>().entries;
    assert.deepEqual(auditAfter, auditBefore);
    const viaCookie = await send(pgGateway.url, '/api/usage', { headers: { cookie } });
    assert.equal(viaCookie.status, 200, 'the browser session still signs in');
    const history = (await send(pgGateway.url, `/api/history/${promptId}`, { key: user.api_key })).json<Record<string, unknown>>();
    assert.ok(history[promptId], 'the user still sees its own prompt (ownership copied)');
    const foreign = (await send(pgGateway.url, `/api/history/${promptId}`, { key: admin.api_key })).json<Record<string, unknown>>();
    assert.ok(foreign[promptId], 'and the admin sees everything');
    const removed = await send(pgGateway.url, '/api/system_stats', { key: doomed.api_key });
    assert.equal(removed.status, 401, 'the deleted key stays deleted');
  });

  test('bad arguments exit with 2, an unreachable database with 1', async () => {
    const directory = await tempUserDirectory();
    cleanups.push(directory.remove);
    const cases: Array<[string[], RegExp]> = [
      [['migrate', '--database-url', database.url], /--from-user-directory/],
      [['migrate', '--from-user-directory', directory.path], /--database-url/],
      [['migrate', '--from-user-directory', directory.path, '--database-url', 'mysql://x/y'], /postgres:\/\//],
      [['migrate', '--from-user-directory', `${directory.path}/missing`, '--database-url', database.url], /not a directory/],
      [['migrate', '--from-user-directory', directory.path, '--database-url', database.url, '--bogus'], /bogus/],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
    const unreachable = await runCli(['migrate', '--from-user-directory', directory.path, '--database-url', 'postgres://postgres:secret@127.0.0.1:1/none']);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot use the database at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/none/);
    await chmod(directory.path, 0o777);
    const unsafe = await runCli(['migrate', '--from-user-directory', directory.path, '--database-url', database.url]);
    assert.equal(unsafe.code, 2, unsafe.stderr);
    assert.ok(unsafe.stderr.includes(`run chmod 700 ${directory.path}`), unsafe.stderr);
    await chmod(directory.path, 0o700);
    const urlFile = join(directory.path, '..', `${directory.path.split('/').pop()}.url`);
    cleanups.push(() => rm(urlFile, { force: true }));
    await writeFile(urlFile, `${database.url}\n`, { mode: 0o600 });
    const fromFile = await runCli(['migrate', '--from-user-directory', directory.path, '--json'], { COMFY_GATE_DATABASE_URL_FILE: urlFile });
    assert.equal(fromFile.code, 0, fromFile.stderr);
    const both = await runCli(['migrate', '--from-user-directory', directory.path, '--database-url', database.url, '--database-url-file', urlFile]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--database-url and --database-url-file are both given/);
    const help = await runCli(['migrate', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--from-user-directory DIR/);
  });
});
