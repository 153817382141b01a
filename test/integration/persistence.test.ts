// The store across restarts: reference-format files, corrupt files refused, the CLI beside a running gateway, usage on disk.

import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, tempUserDirectory } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

/** A key file exactly as the Python reference wrote it (json.dump with indent=2, no role). */
const REFERENCE_KEY = 'comfy_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWpr';
const REFERENCE_KEYS_FILE = JSON.stringify(
  {
    q1w2e3r4t5y6u7i8o9p0aa: {
      key_id: 'q1w2e3r4t5y6u7i8o9p0aa',
      name: 'From the reference',
      key_hash: createHash('sha256').update(REFERENCE_KEY).digest('hex'),
      created_at: 1760000000.123456,
      last_used: null,
      rate_limit: 100,
      is_active: true,
      metadata: { owner: 'ops' },
    },
  },
  null,
  2,
);
const REFERENCE_USAGE_FILE = JSON.stringify(
  {
    records: [
      {
        key_id: 'q1w2e3r4t5y6u7i8o9p0aa',
        endpoint: '/api/prompt',
        timestamp: Date.now() / 1000 - 86400 * 2,
        duration: 0.5,
        success: true,
        metadata: { method: 'POST', status: 200 },
      },
      {
        key_id: 'q1w2e3r4t5y6u7i8o9p0aa',
        endpoint: '/api/prompt',
        timestamp: Date.now() / 1000 - 86400 * 2,
        duration: 0.25,
        success: false,
        metadata: { method: 'POST', status: 400 },
      },
    ],
  },
  null,
  2,
);

describe('store persistence', () => {
  let comfy: FakeComfyUI;
  before(async () => {
    comfy = await startFakeComfyUI();
  });
  after(async () => {
    await comfy.close();
  });

  test('files written by the reference load unchanged and their key works in required mode', async () => {
    const dir = await tempUserDirectory();
    await writeFile(join(dir.path, 'api_keys.json'), REFERENCE_KEYS_FILE);
    await writeFile(join(dir.path, 'api_usage.json'), REFERENCE_USAGE_FILE);
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'], userDirectory: dir.path });
    try {
      assert.match(gateway.output().stdout, /\(1 key\)/);
      const res = await send(gateway.url, '/api/prompt', { key: REFERENCE_KEY });
      assert.equal(res.status, 200);
      const own = await send(gateway.url, '/api/keys/q1w2e3r4t5y6u7i8o9p0aa', { key: REFERENCE_KEY });
      assert.equal(own.status, 200);
      assert.equal(own.json().role, 'user', 'reference keys had no role; they become user keys');
      const stats = own.json<{ usage_stats: { total_requests: number; failed_requests: number; total_duration: number } }>().usage_stats;
      assert.equal(stats.total_requests, 3);
      assert.equal(stats.failed_requests, 1);
      assert.equal(await readFile(join(dir.path, 'api_keys.json'), 'utf8'), REFERENCE_KEYS_FILE, 'loading does not rewrite the file');
    } finally {
      await gateway.stop();
      await dir.remove();
    }
  });

  for (const file of ['api_keys.json', 'api_usage.json']) {
    test(`a ${file} that does not parse is refused at start-up and never overwritten`, async () => {
      const dir = await tempUserDirectory();
      const broken = '{"records": [ {"key_id": "x", ';
      await writeFile(join(dir.path, file), broken);
      try {
        const started = await startGateway({ upstream: comfy.url, userDirectory: dir.path }).then(
          () => 'started',
          (error: Error) => error.message,
        );
        assert.match(started, /exited with 1/);
        assert.match(started, new RegExp(file.replace('.', '\\.')));
        assert.match(started, /never overwrites/);
        assert.equal(await readFile(join(dir.path, file), 'utf8'), broken);
      } finally {
        await dir.remove();
      }
    });
  }

  test('keys, changes and usage survive SIGTERM', async () => {
    const dir = await tempUserDirectory();
    let gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'], userDirectory: dir.path });
    const key = await createKey(gateway.url, { name: 'durable' });
    await send(gateway.url, `/api/keys/${key.key_id}`, { method: 'PATCH', body: { rate_limit: 77, name: 'renamed' } });
    await send(gateway.url, '/api/queue', { key: key.api_key });
    assert.equal(await gateway.stop('SIGTERM'), 0);
    gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'], userDirectory: dir.path });
    try {
      const shown = (await send(gateway.url, `/api/keys/${key.key_id}`)).json<{
        name: string;
        rate_limit: number;
        last_used: number | null;
        usage_stats: { total_requests: number };
      }>();
      assert.equal(shown.name, 'renamed');
      assert.equal(shown.rate_limit, 77);
      assert.ok(shown.last_used !== null);
      assert.equal(shown.usage_stats.total_requests, 1);
    } finally {
      await gateway.stop();
      await dir.remove();
    }
  });

  test('requests do not rewrite the keys file (last_used is batched into the journal)', async () => {
    const dir = await tempUserDirectory();
    const gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'], userDirectory: dir.path });
    try {
      const key = await createKey(gateway.url, { name: 'busy' });
      const keysFile = join(dir.path, 'api_keys.json');
      const before = await readFile(keysFile, 'utf8');
      await Promise.all(Array.from({ length: 200 }, () => send(gateway.url, '/api/queue', { key: key.api_key })));
      await sleep(2500);
      assert.equal(await readFile(keysFile, 'utf8'), before);
      const journal = await readFile(join(dir.path, 'api_keys.journal'), 'utf8');
      const writesOfKey = journal.split('\n').filter((line) => line.includes(key.key_id)).length;
      assert.ok(writesOfKey <= 4, `the creation and at most one batched last_used per 2 s flush, not ${writesOfKey}`);
    } finally {
      await gateway.stop();
      await dir.remove();
    }
  });

  test('/readyz reports a store that cannot be written', async () => {
    const dir = await tempUserDirectory();
    const gateway = await startGateway({ upstream: comfy.url, userDirectory: dir.path });
    try {
      assert.equal((await send(gateway.url, '/readyz')).status, 200);
      await dir.remove();
      const res = await send(gateway.url, '/readyz');
      assert.equal(res.status, 503);
      assert.match(String(res.json().store), /not writable/);
    } finally {
      await gateway.stop();
    }
  });

  test('usage reaches disk within 1 second (survives SIGKILL after that)', async () => {
    const dir = await tempUserDirectory();
    let gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'], userDirectory: dir.path });
    const key = await createKey(gateway.url, { name: 'usage' });
    for (let i = 0; i < 5; i += 1) await send(gateway.url, '/api/queue', { key: key.api_key });
    await sleep(1000);
    await gateway.stop('SIGKILL');
    gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth'], userDirectory: dir.path });
    try {
      const stats = (await send(gateway.url, '/api/usage', { key: key.api_key })).json<{ usage_stats: { total_requests: number } }>().usage_stats;
      assert.equal(stats.total_requests, 5);
    } finally {
      await gateway.stop();
      await dir.remove();
    }
  });

  test('comfy-gate keys create beside a running gateway: accepted within 2 s, nothing lost', async () => {
    const dir = await tempUserDirectory();
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'], userDirectory: dir.path });
    try {
      const admin = await createKey(gateway.url, { name: 'admin' });
      const [cli, ...viaHttp] = await Promise.all([
        runCli(['keys', 'create', '--user-directory', dir.path, '--name', 'from the shell', '--rate-limit', '7', '--json']),
        ...Array.from({ length: 5 }, (_, i) => createKey(gateway.url, { name: `http ${i}` }, admin.api_key)),
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      const created = JSON.parse(cli.stdout) as { key_id: string; api_key: string; rate_limit: number; role: string; name: string };
      assert.equal(created.rate_limit, 7);
      assert.equal(created.role, 'user');
      const deadline = Date.now() + 2000;
      let status = 0;
      while (Date.now() < deadline && status !== 200) {
        status = (await send(gateway.url, '/api/queue', { key: created.api_key })).status;
        if (status !== 200) await sleep(50);
      }
      assert.equal(status, 200, 'the running gateway accepts the new key within 2 s');
      const names = (await send(gateway.url, '/api/keys', { key: admin.api_key })).json<{ keys: Array<{ name: string }> }>().keys.map((k) => k.name);
      assert.deepEqual(names.sort(), ['admin', 'from the shell', ...viaHttp.map((_, i) => `http ${i}`)].sort());
    } finally {
      await gateway.stop();
      await dir.remove();
    }
  });

  test("lock files naming the gateway's own pid, left by an earlier process that had it (a restarted container's), are taken over", async () => {
    const dir = await tempUserDirectory();
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'], userDirectory: dir.path });
    try {
      const admin = await createKey(gateway.url, { name: 'admin' });
      const user = await createKey(gateway.url, { name: 'user' }, admin.api_key);
      const locks = ['.sessions.lock', '.api_keys.lock'].map((name) => join(dir.path, name));
      for (const lock of locks) await writeFile(lock, String(gateway.pid));
      const signIn = await send(gateway.url, '/login', { method: 'POST', body: { api_key: user.api_key } });
      assert.equal(signIn.status, 200, `a sign-in writes the sessions: ${signIn.text}`);
      const changed = await send(gateway.url, `/api/keys/${user.key_id}`, { method: 'PATCH', key: admin.api_key, body: { rate_limit: 42 } });
      assert.equal(changed.status, 200, `a key change writes the keys: ${changed.text}`);
      for (const lock of locks) await assert.rejects(stat(lock), { code: 'ENOENT' }, `${lock} is released`);
    } finally {
      await gateway.stop();
      await dir.remove();
    }
  });

  test(
    'a lock file naming a live process that started at another time (its pid reused after a reboot, or after its writer died) is taken over; one naming a live process as it started, or a pid of another namespace, is waited for',
    { skip: existsSync('/proc/self/stat') ? false : 'needs Linux /proc' },
    async () => {
      const dir = await tempUserDirectory();
      const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'], userDirectory: dir.path });
      try {
        const admin = await createKey(gateway.url, { name: 'admin' });
        const user = await createKey(gateway.url, { name: 'user' }, admin.api_key);
        const lock = join(dir.path, '.sessions.lock');
        const signIn = (): Promise<TestResponse> => send(gateway.url, '/login', { method: 'POST', body: { api_key: user.api_key } });
        // This test's process is alive: a lock file may name it as it started, or as an earlier process of its pid.
        const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
        const namespace = await readlink('/proc/self/ns/pid');
        const ticks = (await readFile('/proc/self/stat', 'utf8')).split(') ')[1]!.split(' ')[19]!;
        for (const [what, start] of [
          ['before a reboot', `${randomUUID()}/${namespace}/${ticks}`],
          ['by a process of this pid that died', `${boot}/${namespace}/1`],
        ]) {
          await writeFile(lock, `${process.pid} ${start}`);
          const res = await signIn();
          assert.equal(res.status, 200, `a lock taken ${what}: ${res.text}`);
          await assert.rejects(stat(lock), { code: 'ENOENT' }, `a lock taken ${what} is released`);
        }
        for (const [what, start] of [
          ['by the live process', `${boot}/${namespace}/${ticks}`],
          ['in another pid namespace (a container beside the host), whose pids tell nothing here', `${boot}/pid:[1]/1`],
        ]) {
          const held = `${process.pid} ${start}`;
          await writeFile(lock, held);
          const waited = await signIn();
          assert.equal(waited.status, 503, `a lock taken ${what}: ${waited.text}`);
          assert.equal(waited.json().error_code, 'STORE_UNAVAILABLE');
          assert.match(waited.json<{ error: string }>().error, /session store/, 'the store named is the one that could not be written');
          assert.equal(await readFile(lock, 'utf8'), held, `a lock taken ${what} is left in place`);
        }
      } finally {
        await gateway.stop();
        await dir.remove();
      }
    },
  );

  test('the CLI: --admin, a readable default output, and exit code 2 for bad arguments', async () => {
    const dir = await tempUserDirectory();
    try {
      const made = await runCli(['keys', 'create', '--user-directory', dir.path, '--name', 'ops', '--admin']);
      assert.equal(made.code, 0);
      assert.match(made.stdout, /Created admin key "ops"/);
      assert.match(made.stdout, /comfy_[A-Za-z0-9_-]{43}/);
      const keysFile = JSON.parse(await readFile(join(dir.path, 'api_keys.json'), 'utf8')) as Record<string, { role: string }>;
      assert.deepEqual(
        Object.values(keysFile).map((k) => k.role),
        ['admin'],
      );
      for (const args of [['--rate-limit', 'abc'], ['--rate-limit', '0'], ['--bogus'], ['--name', '']]) {
        const bad = await runCli(['keys', 'create', '--user-directory', dir.path, ...args]);
        assert.equal(bad.code, 2, args.join(' '));
        assert.match(bad.stderr, /comfy-gate: /);
      }
      assert.equal((await runCli(['--port', 'x'])).code, 2);
      const help = await runCli(['--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /--require-api-auth/);
      assert.match(help.stdout, /COMFY_GATE_REQUIRE_API_AUTH/);
      assert.equal((await runCli(['--upstream', 'ftp://x'])).code, 2);
    } finally {
      await dir.remove();
    }
  });
});
