// The store folder: created private, refused at start-up when another user could change it, and never written through a symbolic link.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, chown, readdir, readFile, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkStoreDirectory } from '../../src/store/file/store-permissions.js';
import { createStores } from '../../src/store/index.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, tempUserDirectory } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

/** Makes `name` in `dir` writable by others and back: the folder check must refuse it meanwhile, naming it. */
async function assertCheckedWhenWritable(dir: string, name: string): Promise<void> {
  const path = join(dir, name);
  await chmod(path, 0o666);
  await assert.rejects(
    checkStoreDirectory(dir, { warn: () => undefined }),
    (error: Error) => error.message.includes(`${path} is writable by group and others`),
    name,
  );
  await chmod(path, 0o600);
}

describe('store folder permissions', () => {
  let comfy: FakeComfyUI;
  const folders: Array<{ remove(): Promise<void> }> = [];

  before(async () => {
    comfy = await startFakeComfyUI();
  });

  after(async () => {
    await comfy.close();
    await Promise.all(folders.map((folder) => folder.remove()));
  });

  async function folder(): Promise<string> {
    const dir = await tempUserDirectory();
    folders.push(dir);
    return dir.path;
  }

  /** Starts a gateway on `dir`; resolves its output when it refused to start, or fails the test when it started. */
  async function refusal(dir: string, args: string[] = []): Promise<string> {
    const outcome = await startGateway({ upstream: comfy.url, userDirectory: dir, args }).then(
      async (gateway) => {
        await gateway.stop();
        return null;
      },
      (error: Error) => error.message,
    );
    assert.ok(outcome !== null, 'the gateway started on an unsafe store folder');
    return outcome;
  }

  test('a folder writable by others is refused at start-up, naming the folder and the fix', async () => {
    const dir = await folder();
    await chmod(dir, 0o777);
    const message = await refusal(dir);
    assert.match(message, /exited with 2/);
    assert.ok(message.includes(`${dir} is writable by group and others (mode 0777): run chmod 700 ${dir}`), message);
    assert.match(message, /--allow-unsafe-store-permissions/);
    assert.deepEqual(await readdir(dir), [], 'nothing was written');
  });

  test('--allow-unsafe-store-permissions (or its environment variable) starts anyway, with a warning in the log', async () => {
    for (const start of [{ args: ['--allow-unsafe-store-permissions'] }, { env: { COMFY_GATE_ALLOW_UNSAFE_STORE_PERMISSIONS: 'true' } }]) {
      const dir = await folder();
      await chmod(dir, 0o770);
      const gateway = await startGateway({ upstream: comfy.url, userDirectory: dir, ...start });
      try {
        const { stdout, stderr } = gateway.output();
        assert.match(stdout + stderr, /not safe \(started anyway.*writable by group \(mode 0770\): run chmod 700/);
        await createKey(gateway.url, { role: 'admin' });
      } finally {
        await gateway.stop();
      }
    }
  });

  test('a store file writable by others is refused', async () => {
    const dir = await folder();
    const keysPath = join(dir, 'api_keys.json');
    await writeFile(keysPath, '{}\n');
    await chmod(keysPath, 0o666);
    const message = await refusal(dir);
    assert.ok(message.includes(`${keysPath} is writable by group and others (mode 0666): run chmod 600 ${keysPath}`), message);
    assert.equal(await readFile(keysPath, 'utf8'), '{}\n');
  });

  test('a workflows.json writable by others is refused by the gateway and by the workflows commands', async () => {
    const dir = await folder();
    const workflowsPath = join(dir, 'workflows.json');
    await writeFile(workflowsPath, '{"workflows":{}}\n');
    await chmod(workflowsPath, 0o666);
    const fix = `${workflowsPath} is writable by group and others (mode 0666): run chmod 600 ${workflowsPath}`;
    const message = await refusal(dir);
    assert.ok(message.includes(fix), message);
    const listed = await runCli(['workflows', 'list', '--user-directory', dir]);
    assert.equal(listed.code, 2, listed.stderr);
    assert.ok(listed.stderr.includes(fix), listed.stderr);
    assert.equal(await readFile(workflowsPath, 'utf8'), '{"workflows":{}}\n');
  });

  test('a store file owned by another user is refused', { skip: process.getuid?.() !== 0 && 'needs root to give a file away' }, async () => {
    const dir = await folder();
    const journalPath = join(dir, 'api_keys.journal');
    await writeFile(journalPath, '', { mode: 0o600 });
    await chown(journalPath, 65534, 65534);
    const message = await refusal(dir);
    assert.ok(message.includes(`${journalPath} is owned by uid 65534, not by this process's uid 0: run chown 0 ${journalPath}`), message);
  });

  for (const name of ['api_keys.json', 'api_keys.journal', 'audit.jsonl', 'jobs.journal', 'webhook-deliveries.journal']) {
    test(`a symbolic link in place of ${name} is refused, even with --allow-unsafe-store-permissions, and nothing is written through it`, async () => {
      const dir = await folder();
      const outside = await folder();
      const target = join(outside, 'target');
      await writeFile(target, name === 'api_keys.json' ? '{}\n' : '');
      await symlink(target, join(dir, name));
      const message = await refusal(dir, ['--allow-unsafe-store-permissions']);
      assert.match(message, /exited with 2/);
      assert.ok(message.includes(`${join(dir, name)} is a symbolic link, which the store never follows: replace it with the file itself`), message);
      assert.equal(await readFile(target, 'utf8'), name === 'api_keys.json' ? '{}\n' : '');
    });
  }

  test('a journal replaced by a symbolic link while the gateway runs is not written through', async () => {
    const dir = await folder();
    const outside = await folder();
    const gateway = await startGateway({ upstream: comfy.url, userDirectory: dir });
    try {
      const admin = await createKey(gateway.url, { role: 'admin' });
      const target = join(outside, 'target');
      await writeFile(target, '');
      await unlink(join(dir, 'api_keys.journal')).catch(() => undefined);
      await symlink(target, join(dir, 'api_keys.journal'));
      const res = await send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'through a link' }, key: admin.api_key });
      assert.notEqual(res.status, 200, 'a key was created through the link');
      assert.equal(await readFile(target, 'utf8'), '', 'the link target was written');
    } finally {
      await gateway.stop();
    }
  });

  test('a new folder is created 0700 and its files 0600, even under umask 000', async () => {
    const dir = join(await folder(), 'new', 'user');
    const previous = process.umask(0);
    try {
      const stores = await createStores({ userDirectory: dir, usageRetentionDays: 90 });
      try {
        const now = Date.now() / 1000;
        await stores.keys.create({
          key_id: randomBytes(16).toString('base64url'),
          name: 'k',
          created_at: now,
          last_used: null,
          rate_limit: 10,
          is_active: true,
          metadata: {},
          role: 'admin',
          expires_at: null,
          key_prefix: null,
          key_hash: randomBytes(32).toString('hex'),
          previous_key_hash: null,
          previous_key_valid_until: null,
          max_queued: null,
          max_running: null,
          daily_execution_seconds: null,
          policy: null,
          webhook_url: null,
        });
        await stores.usage.ensureCreated();
        await stores.audit.append({ ts: now, actor: 'test', action: 'key.create' });
        await stores.jobs.create({
          id: 'job-1',
          key_id: 'k',
          client_id: null,
          backend: 'default',
          upstream_id: null,
          status: 'held',
          admitted_at: now,
          forwarded_at: null,
          started_at: null,
          finished_at: null,
          execution_seconds: null,
          outputs: [],
          error: null,
          request: { prompt: {} },
          front: false,
          webhook: null,
        });
        await stores.webhooks.enqueue({
          id: 'whd_1',
          job_id: 'job-1',
          key_id: 'k',
          event: 'job.succeeded',
          url: 'https://hooks.example.com/',
          body: '{}',
          state: 'pending',
          created_at: now,
          next_attempt_at: now,
          attempts: [],
        });
        await stores.workflows.put({ name: 'w', prompt: {}, description: null, inputs: {} }, now);
      } finally {
        await Promise.all([
          stores.keys.close(),
          stores.usage.close(),
          stores.ownership.close(),
          stores.sessions.close(),
          stores.jobs.close(),
          stores.webhooks.close(),
        ]);
      }
    } finally {
      process.umask(previous);
    }
    assert.equal((await modeOf(dir)).toString(8), '700');
    const files = await readdir(dir);
    assert.ok(
      [
        'api_keys.journal',
        'api_usage.json',
        'audit.jsonl',
        'jobs.json',
        'jobs.journal',
        'webhook-deliveries.json',
        'webhook-deliveries.journal',
        'workflows.json',
      ].every((name) => files.includes(name)),
      files.join(', '),
    );
    for (const file of files) assert.equal((await modeOf(join(dir, file))).toString(8), '600', file);
    for (const file of files) await assertCheckedWhenWritable(dir, file);
  });

  test('the lock, next-journal, set-aside and temporary files of every store are checked as well', async () => {
    const dir = await folder();
    const names = ['api_keys', 'ownership', 'sessions', 'jobs', 'webhook-deliveries', 'workflows'].flatMap((store) => [
      `.${store}.lock`,
      `.${store}.json.0a1b2c3d4e5f.tmp`,
    ]);
    names.push('api_usage.journal.compacting', '.api_usage.json.0a1b2c3d4e5f.tmp', 'sessions.journal.next', 'jobs.journal.next');
    for (const name of names) {
      await writeFile(join(dir, name), '', { mode: 0o600 });
      await assertCheckedWhenWritable(dir, name);
      await unlink(join(dir, name));
    }
  });

  test('the CLI applies the same check to the folder it reads', async () => {
    const dir = await folder();
    assert.equal((await runCli(['keys', 'create', '--admin', '--user-directory', dir])).code, 0);
    await chmod(dir, 0o777);
    const refused = await runCli(['keys', 'list', '--user-directory', dir]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.ok(refused.stderr.includes(`run chmod 700 ${dir}`), refused.stderr);
    const allowed = await runCli(['keys', 'list', '--user-directory', dir, '--allow-unsafe-store-permissions']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stderr, /warning: the store folder .* is not safe/);
    const target = join(await folder(), 'target');
    await writeFile(target, '');
    await rm(join(dir, 'api_keys.journal'));
    await symlink(target, join(dir, 'api_keys.journal'));
    const linked = await runCli(['keys', 'create', '--user-directory', dir, '--allow-unsafe-store-permissions']);
    assert.equal(linked.code, 2, linked.stderr);
    assert.match(linked.stderr, /is a symbolic link/);
    assert.equal(await readFile(target, 'utf8'), '');
  });
});
