// Browser sessions end for good (with their key's disabling, expiry, rotation and deletion, past the cap per key, also when the CLI changes the key while no gateway runs) and sign-ins count against limits, on JSON files and on PostgreSQL.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { freshPostgresDatabase } from '../contract/backends.js';

const MAX_SESSIONS_PER_KEY = 20;
/** How long the gateway may take to pick up a change the CLI wrote to api_keys.json. */
const CLI_PICKUP_MS = 2500;

const fresh = await freshPostgresDatabase();

/** The suite on one store: `storeArgs` name it, to the gateway and to the CLI alike. */
function sessionSuite(name: string, options: { storeArgs: string[]; skip?: string; cleanup?(): Promise<void> }): void {
  describe(`sessions end for good (${name})`, { skip: options.skip ?? false }, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let admin: string;
    let anonymous: TestResponse;

    /** Signs in with a key over JSON; resolves the Cookie header value and the cookie's Max-Age. */
    async function signIn(apiKey: string): Promise<{ cookie: string; maxAge: number }> {
      const res = await send(gateway.url, '/login', { method: 'POST', body: { api_key: apiKey } });
      assert.equal(res.status, 200, res.text);
      const setCookie = String(res.headers['set-cookie']);
      return { cookie: setCookie.split(';')[0]!, maxAge: Number(/Max-Age=(\d+)/.exec(setCookie)![1]) };
    }

    const withCookie = (cookie: string): Promise<TestResponse> => send(gateway.url, '/api/queue', { headers: { cookie } });

    /** The cookie gets exactly what a caller without one gets: 401 AUTH_REQUIRED in required mode. */
    async function assertAnonymous(cookie: string, what: string): Promise<void> {
      const res = await withCookie(cookie);
      assert.equal(res.status, anonymous.status, `${what}: status`);
      assert.equal(res.json().error_code, anonymous.json().error_code, `${what}: error_code`);
    }

    async function assertSignedIn(cookie: string, what: string): Promise<void> {
      const res = await withCookie(cookie);
      assert.equal(res.status, 200, `${what}: ${res.text}`);
    }

    const patch = (keyId: string, body: object): Promise<TestResponse> => send(gateway.url, `/api/keys/${keyId}`, { method: 'PATCH', key: admin, body });
    const rotate = (keyId: string, grace: number): Promise<TestResponse> =>
      send(gateway.url, `/api/keys/${keyId}/rotate`, { method: 'POST', key: admin, body: { grace_seconds: grace } });
    const userKey = (name: string, fields: object = {}): Promise<CreatedKey> => createKey(gateway.url, { name, rate_limit: 100_000, ...fields }, admin);

    before(async () => {
      comfy = await startFakeComfyUI();
      gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--trusted-proxy', '127.0.0.1', ...options.storeArgs] });
      admin = (await createKey(gateway.url, { name: 'admin', rate_limit: 100_000 })).api_key;
      anonymous = await send(gateway.url, '/api/queue');
      assert.equal(anonymous.status, 401);
      assert.equal(anonymous.json().error_code, 'AUTH_REQUIRED');
    });
    after(async () => {
      await gateway.stop();
      await comfy.close();
      await options.cleanup?.();
    });

    test('disabled, then enabled again: the session stays ended; a new sign-in works', async () => {
      const key = await userKey('disable-enable');
      const { cookie } = await signIn(key.api_key);
      await assertSignedIn(cookie, 'before');
      assert.equal((await patch(key.key_id, { is_active: false })).status, 200);
      assert.equal((await patch(key.key_id, { is_active: true })).status, 200);
      await assertAnonymous(cookie, 'after disable and enable');
      await assertSignedIn((await signIn(key.api_key)).cookie, 'a new sign-in');
    });

    test('disabled, used while disabled, then enabled: still ended', async () => {
      const key = await userKey('disable-use-enable');
      const { cookie } = await signIn(key.api_key);
      assert.equal((await patch(key.key_id, { is_active: false })).status, 200);
      await assertAnonymous(cookie, 'while disabled');
      assert.equal((await patch(key.key_id, { is_active: true })).status, 200);
      await assertAnonymous(cookie, 'after enable');
    });

    test('expires_at set in the past, then cleared: the session stays ended', async () => {
      const key = await userKey('expiry-set-cleared');
      const { cookie } = await signIn(key.api_key);
      await assertSignedIn(cookie, 'before');
      assert.equal((await patch(key.key_id, { expires_at: Math.floor(Date.now() / 1000) - 60 })).status, 200);
      assert.equal((await patch(key.key_id, { expires_at: null })).status, 200);
      await assertAnonymous(cookie, 'after expiry set and cleared');
      await assertSignedIn((await signIn(key.api_key)).cookie, 'a new sign-in');
    });

    test('an expiry that passes on its own ends the session for good, even if then cleared or moved on', async () => {
      const expiresAt = Math.floor(Date.now() / 1000) + 3;
      const key = await userKey('expiry-passes', { expires_at: expiresAt });
      const { cookie, maxAge } = await signIn(key.api_key);
      assert.ok(maxAge <= 3, `the cookie lasts no longer than the key (Max-Age ${maxAge})`);
      await assertSignedIn(cookie, 'before the expiry');
      const other = await signIn(key.api_key);
      await sleep(Math.max(0, expiresAt * 1000 - Date.now()) + 300);
      assert.equal((await patch(key.key_id, { expires_at: null })).status, 200);
      await assertAnonymous(cookie, 'expiry passed, then cleared');
      assert.equal((await patch(key.key_id, { expires_at: Math.floor(Date.now() / 1000) + 3600 })).status, 200);
      await assertAnonymous(other.cookie, 'expiry passed, then moved on');
    });

    test('rotated with no grace period: the session ends at once; the new secret signs in', async () => {
      const key = await userKey('rotate-now');
      const { cookie } = await signIn(key.api_key);
      await assertSignedIn(cookie, 'before');
      const rotated = await rotate(key.key_id, 0);
      assert.equal(rotated.status, 200, rotated.text);
      await assertAnonymous(cookie, 'after rotation');
      await assertSignedIn((await signIn(rotated.json<{ api_key: string }>().api_key)).cookie, 'the new secret');
    });

    test('rotated with a grace period: sessions of the old secret last until the grace period ends, then end', async () => {
      const key = await userKey('rotate-grace');
      const before = await signIn(key.api_key);
      const grace = 3;
      const rotated = await rotate(key.key_id, grace);
      assert.equal(rotated.status, 200, rotated.text);
      const { api_key: newSecret, previous_key_valid_until: graceEnds } = rotated.json<{ api_key: string; previous_key_valid_until: number }>();
      await assertSignedIn(before.cookie, 'made before the rotation, during the grace period');
      const during = await signIn(key.api_key);
      assert.ok(during.maxAge <= grace, `a sign-in with the old secret lasts to the end of the grace period (Max-Age ${during.maxAge})`);
      await assertSignedIn(during.cookie, 'made with the old secret during the grace period');
      const fresh = await signIn(newSecret);
      await sleep(Math.max(0, graceEnds * 1000 - Date.now()) + 300);
      await assertAnonymous(before.cookie, 'made before the rotation, after the grace period');
      await assertAnonymous(during.cookie, 'made with the old secret, after the grace period');
      await assertSignedIn(fresh.cookie, 'made with the new secret');
    });

    test('deleted: the session ends', async () => {
      const key = await userKey('delete');
      const { cookie } = await signIn(key.api_key);
      await assertSignedIn(cookie, 'before');
      assert.equal((await send(gateway.url, `/api/keys/${key.key_id}`, { method: 'DELETE', key: admin })).status, 200);
      await assertAnonymous(cookie, 'after deletion');
    });

    test(`a key holds at most ${MAX_SESSIONS_PER_KEY} sessions: the ${MAX_SESSIONS_PER_KEY + 1}st drops the oldest`, async () => {
      const key = await userKey('capped');
      const cookies: string[] = [];
      for (let i = 0; i < MAX_SESSIONS_PER_KEY + 1; i += 1) cookies.push((await signIn(key.api_key)).cookie);
      await assertAnonymous(cookies[0]!, 'the oldest');
      for (const [i, cookie] of cookies.slice(1).entries()) await assertSignedIn(cookie, `session ${i + 2}`);
    });

    test("a sign-in counts against the key's hourly rate limit: over it, 429 RATE_LIMIT_EXCEEDED and no session", async () => {
      const key = await userKey('limited', { rate_limit: 3 });
      const first = await send(gateway.url, '/login', { method: 'POST', body: { api_key: key.api_key } });
      assert.equal(first.status, 200);
      assert.equal(first.headers['x-ratelimit-limit'], '3');
      assert.equal(first.headers['x-ratelimit-remaining'], '2');
      assert.equal(
        (await send(gateway.url, '/api/queue', { key: key.api_key })).headers['x-ratelimit-remaining'],
        '1',
        'a sign-in and a request share the limit',
      );
      assert.equal((await send(gateway.url, '/login', { method: 'POST', body: { api_key: key.api_key } })).status, 200);
      const over = await send(gateway.url, '/login', { method: 'POST', body: { api_key: key.api_key } });
      assert.equal(over.status, 429);
      assert.equal(over.json().error_code, 'RATE_LIMIT_EXCEEDED');
      assert.equal(over.headers['x-ratelimit-remaining'], '0');
      assert.ok(Number(over.headers['retry-after']) > 0);
      assert.equal(over.headers['set-cookie'], undefined, 'no session');
      const form = await send(gateway.url, '/login', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ api_key: key.api_key, next: '/' }).toString(),
      });
      assert.equal(form.status, 429);
      assert.match(form.text, /Rate limit of 3 requests per hour exceeded/);
      assert.ok(Number(form.headers['retry-after']) > 0);
      assert.equal(form.headers['set-cookie'], undefined, 'no session');
    });

    test('an address blocked for failed authentications gets 429 TOO_MANY_AUTH_FAILURES on POST /login, before its key is checked', async () => {
      const key = await userKey('blocked-address');
      const attacker = { 'x-forwarded-for': '198.51.100.20' };
      for (let i = 0; i <= 20; i += 1) {
        const failed = await send(gateway.url, '/login', { method: 'POST', headers: attacker, body: { api_key: `comfy_${String(i).padStart(43, 'x')}` } });
        assert.equal(failed.status, 401, 'a wrong key at sign-in is a failure of the address');
      }
      const blocked = await send(gateway.url, '/login', { method: 'POST', headers: attacker, body: { api_key: key.api_key } });
      assert.equal(blocked.status, 429);
      assert.equal(blocked.json().error_code, 'TOO_MANY_AUTH_FAILURES');
      assert.ok(Number(blocked.headers['retry-after']) > 0);
      assert.equal(blocked.headers['set-cookie'], undefined, 'no session');
      assert.equal(blocked.headers['x-ratelimit-remaining'], undefined, 'the key was not checked, nor counted');
      assert.equal(
        (await send(gateway.url, '/login', { method: 'POST', headers: { 'x-forwarded-for': '198.51.100.21' }, body: { api_key: key.api_key } })).status,
        200,
        'another address signs in',
      );
    });

    /** Runs `comfy-gate keys COMMAND [flags] KEY_ID` on the gateway's store, then waits for the gateway to read the change. */
    async function cliChange(keyId: string, ...command: string[]): Promise<void> {
      assert.equal((await runCli(['keys', ...command, keyId, '--user-directory', gateway.userDirectory, ...options.storeArgs])).code, 0);
      await sleep(CLI_PICKUP_MS);
    }

    test('changes made with the CLI beside the gateway end sessions too: disable then enable, and rotation', async () => {
      const key = await userKey('cli');
      const { cookie } = await signIn(key.api_key);
      await cliChange(key.key_id, 'disable');
      await assertAnonymous(cookie, 'disabled by the CLI');
      await cliChange(key.key_id, 'enable');
      await assertAnonymous(cookie, 'enabled again by the CLI');
      const again = await signIn(key.api_key);
      await cliChange(key.key_id, 'rotate');
      await assertAnonymous(again.cookie, 'rotated by the CLI');
    });

    test('disabled with the CLI and enabled again before the session is used: it stays ended, as through the API', async () => {
      const key = await userKey('cli-unused');
      const { cookie } = await signIn(key.api_key);
      await cliChange(key.key_id, 'disable');
      await cliChange(key.key_id, 'enable');
      await assertAnonymous(cookie, 'disabled and enabled again by the CLI, unused meanwhile');
      const expiring = await signIn(key.api_key);
      await cliChange(key.key_id, 'update', '--expires-at', String(Math.floor(Date.now() / 1000) - 60));
      await cliChange(key.key_id, 'update', '--expires-at', 'never');
      await assertAnonymous(expiring.cookie, 'expired and cleared by the CLI, unused meanwhile');
      await assertSignedIn((await signIn(key.api_key)).cookie, 'a new sign-in');
    });
  });
}

sessionSuite('JSON files', { storeArgs: [] });
sessionSuite('PostgreSQL', 'skip' in fresh ? { storeArgs: [], skip: fresh.skip } : { storeArgs: ['--database-url', fresh.url], cleanup: fresh.drop });

const migrateTarget = await freshPostgresDatabase();
const cliTarget = await freshPostgresDatabase();

describe('the CLI ends the sessions of a key it disables or expires while no gateway runs', () => {
  let comfy: FakeComfyUI;
  let directory: { path: string; remove(): Promise<void> };
  /** Where the CLI and the gateways keep their data: the directory's files, or a database the test names. */
  let storeArgs: string[] = [];

  before(async () => {
    comfy = await startFakeComfyUI();
    directory = await tempUserDirectory();
  });
  after(async () => {
    await comfy.close();
    await directory.remove();
    if (!('skip' in migrateTarget)) await migrateTarget.drop();
    if (!('skip' in cliTarget)) await cliTarget.drop();
  });

  const start = (storeArgs: string[] = []): Promise<GatewayProcess> =>
    startGateway({ upstream: comfy.url, userDirectory: directory.path, args: ['--require-api-auth', ...storeArgs] });

  /** Signs in with `apiKey` on `gateway` and resolves the Cookie header value, checked to work there. */
  async function signIn(gateway: GatewayProcess, apiKey: string): Promise<string> {
    const res = await send(gateway.url, '/login', { method: 'POST', body: { api_key: apiKey } });
    assert.equal(res.status, 200, res.text);
    const cookie = String(res.headers['set-cookie']).split(';')[0]!;
    assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie } })).status, 200, 'signed in');
    return cookie;
  }

  async function assertRefused(gateway: GatewayProcess, cookie: string, what: string): Promise<void> {
    const res = await send(gateway.url, '/api/queue', { headers: { cookie } });
    assert.equal(res.status, 401, `${what}: ${res.text}`);
    assert.equal(res.json().error_code, 'AUTH_REQUIRED', what);
  }

  const cli = async (...args: string[]): Promise<string> => {
    const result = await runCli(['keys', ...args, '--user-directory', directory.path, ...storeArgs]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout;
  };

  /** Creates a key with the CLI and signs in with it on a gateway, then stops the gateway; resolves the key and its cookie. */
  async function signedInThenStopped(name: string): Promise<{ cookie: string; key: CreatedKey }> {
    const key = JSON.parse(await cli('create', '--name', name, '--rate-limit', '100000', '--json')) as CreatedKey;
    const gateway = await start(storeArgs);
    try {
      return { cookie: await signIn(gateway, key.api_key), key };
    } finally {
      await gateway.stop();
    }
  }

  test('disabled and enabled again, then expired and extended, with the gateway stopped: the old cookies are refused by the gateway started again', async () => {
    const disabled = await signedInThenStopped('cli-offline-disable');
    await cli('disable', disabled.key.key_id);
    await cli('enable', disabled.key.key_id);
    const expired = await signedInThenStopped('cli-offline-expire');
    await cli('update', expired.key.key_id, '--expires-at', String(Math.floor(Date.now() / 1000) - 60));
    await cli('update', expired.key.key_id, '--expires-at', 'never');
    const gateway = await start();
    try {
      await assertRefused(gateway, disabled.cookie, 'disabled and enabled again by the CLI while no gateway ran');
      await assertRefused(gateway, expired.cookie, 'expired and extended by the CLI while no gateway ran');
      await signIn(gateway, disabled.key.api_key);
      await signIn(gateway, expired.key.api_key);
    } finally {
      await gateway.stop();
    }
  });

  test(
    'disabled and enabled again with the gateway stopped, then copied into PostgreSQL: the old cookie is refused there',
    { skip: 'skip' in migrateTarget ? migrateTarget.skip : false },
    async () => {
      const { url } = migrateTarget as { url: string };
      const { cookie, key } = await signedInThenStopped('cli-offline-migrate');
      await cli('disable', key.key_id);
      await cli('enable', key.key_id);
      const migrated = await runCli(['migrate', '--from-user-directory', directory.path, '--database-url', url]);
      assert.equal(migrated.code, 0, migrated.stderr);
      const gateway = await start(['--database-url', url]);
      try {
        await assertRefused(gateway, cookie, 'copied into PostgreSQL after the CLI disabled and enabled the key');
        await signIn(gateway, key.api_key);
      } finally {
        await gateway.stop();
      }
    },
  );
  test(
    'on PostgreSQL: disabled and enabled again by the CLI while no gateway runs, the old cookie is refused by a gateway started on the database',
    { skip: 'skip' in cliTarget ? cliTarget.skip : false },
    async () => {
      storeArgs = ['--database-url', (cliTarget as { url: string }).url];
      try {
        const { cookie, key } = await signedInThenStopped('cli-offline-postgres');
        await cli('disable', key.key_id);
        await cli('enable', key.key_id);
        const gateway = await start(storeArgs);
        try {
          await assertRefused(gateway, cookie, 'disabled and enabled again by the CLI on the database while no gateway ran');
          await signIn(gateway, key.api_key);
        } finally {
          await gateway.stop();
        }
      } finally {
        storeArgs = [];
      }
    },
  );
});
