// Job quotas through the management API, on JSON files and on PostgreSQL: set, read back, changed, cleared, kept across a restart, and bad values refused with nothing changed.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

interface Quotas {
  max_queued: number | null;
  max_running: number | null;
  daily_execution_seconds: number | null;
}

const NONE: Quotas = { max_queued: null, max_running: null, daily_execution_seconds: null };
const quotasOf = (key: Record<string, unknown>): Quotas => ({
  max_queued: key.max_queued as number | null,
  max_running: key.max_running as number | null,
  daily_execution_seconds: key.daily_execution_seconds as number | null,
});

interface Backend {
  name: string;
  /** Extra gateway arguments that pick the store. */
  args: string[];
  userDirectory: string;
  gateway: GatewayProcess;
  cleanup(): Promise<unknown>;
}

describe('job quotas through the management API', () => {
  let comfy: FakeComfyUI;
  const backends: Backend[] = [];

  before(async () => {
    comfy = await startFakeComfyUI();
    const files = await tempUserDirectory();
    backends.push({
      name: 'files',
      args: [],
      userDirectory: files.path,
      gateway: await startGateway({ upstream: comfy.url, userDirectory: files.path }),
      cleanup: files.remove,
    });
    const database = await freshPostgresDatabase();
    if ('skip' in database) {
      console.log(`# the PostgreSQL runs are skipped: ${database.skip}`);
      return;
    }
    const directory = await tempUserDirectory();
    const args = ['--database-url', (database as FreshDatabase).url];
    backends.push({
      name: 'postgres',
      args,
      userDirectory: directory.path,
      gateway: await startGateway({ upstream: comfy.url, userDirectory: directory.path, args }),
      cleanup: async () => {
        await directory.remove();
        await (database as FreshDatabase).drop();
      },
    });
  });
  after(async () => {
    for (const backend of backends) {
      await backend.gateway.stop();
      await backend.cleanup();
    }
    await comfy.close();
  });

  test('set on create, read back, changed one at a time, cleared with null, and kept across a restart', async () => {
    for (const backend of backends) {
      const url = (): string => backend.gateway.url;
      const created = await send(url(), '/api/keys', {
        method: 'POST',
        body: { name: 'capped', max_queued: 5, max_running: 2, daily_execution_seconds: 3600 },
      });
      assert.equal(created.status, 200, `${backend.name}: ${created.text}`);
      const keyId = created.json<{ key_id: string }>().key_id;
      assert.deepEqual(quotasOf(created.json()), { max_queued: 5, max_running: 2, daily_execution_seconds: 3600 }, `${backend.name}: the creation answer`);
      const plain = await createKey(url(), { name: 'plain', role: 'admin' });

      const shown = async (id: string): Promise<Quotas> => {
        const res = await send(url(), `/api/keys/${id}`);
        assert.equal(res.status, 200, res.text);
        return quotasOf(res.json());
      };
      assert.deepEqual(await shown(keyId), { max_queued: 5, max_running: 2, daily_execution_seconds: 3600 }, backend.name);
      assert.deepEqual(await shown(plain.key_id), NONE, `${backend.name}: a key made without quotas, admin or not, has none`);

      const patched = await send(url(), `/api/keys/${keyId}`, { method: 'PATCH', body: { max_running: 3 } });
      assert.equal(patched.status, 200, patched.text);
      assert.deepEqual(quotasOf(patched.json<{ key: Record<string, unknown> }>().key), { max_queued: 5, max_running: 3, daily_execution_seconds: 3600 });
      const cleared = await send(url(), `/api/keys/${keyId}`, { method: 'PATCH', body: { max_queued: null, daily_execution_seconds: null } });
      assert.equal(cleared.status, 200, cleared.text);
      const expected = { max_queued: null, max_running: 3, daily_execution_seconds: null };
      assert.deepEqual(await shown(keyId), expected, `${backend.name}: cleared with null`);

      const listed = (await send(url(), '/api/keys')).json<{ keys: Array<Record<string, unknown>> }>().keys;
      assert.deepEqual(quotasOf(listed.find((key) => key.key_id === keyId)!), expected, `${backend.name}: the listing`);

      const audit = (await send(url(), '/api/audit')).json<{ entries: Array<{ action: string; key_id?: string; details?: Record<string, unknown> }> }>()
        .entries;
      const ofKey = audit.filter((entry) => entry.key_id === keyId);
      assert.deepEqual(
        ofKey.map((entry) => [entry.action, entry.details]),
        [
          [
            'key.create',
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
          ],
          ['key.update', { max_running: 3 }],
          ['key.update', { max_queued: null, daily_execution_seconds: null }],
        ],
        `${backend.name}: the audit trail`,
      );

      assert.equal(await backend.gateway.stop(), 0);
      backend.gateway = await startGateway({ upstream: comfy.url, userDirectory: backend.userDirectory, args: backend.args });
      assert.deepEqual(await shown(keyId), expected, `${backend.name}: after a restart`);
      assert.deepEqual(await shown(plain.key_id), NONE);
    }
  });

  const badValues: Array<[string, unknown]> = [
    ['zero', 0],
    ['negative', -1],
    ['fractional', 1.5],
    ['over 1,000,000,000', 1_000_000_001],
    ['a string', '5'],
    ['"none"', 'none'],
    ['true', true],
    ['an object', {}],
  ];
  for (const field of ['max_queued', 'max_running', 'daily_execution_seconds']) {
    test(`${field} that is not a whole number from 1 to 1,000,000,000 or null gets 400 naming it, and nothing changes`, async () => {
      for (const backend of backends) {
        const url = backend.gateway.url;
        const key = await createKey(url, { name: `target of ${field}`, [field]: 7 });
        const state = async (): Promise<string> => {
          const listing = (await send(url, '/api/keys')).text;
          const audit = (await send(url, '/api/audit?limit=1000')).text;
          const read = (name: string) => readFile(join(backend.userDirectory, name), 'utf8').catch(() => '');
          return [listing, audit, await read('api_keys.json'), await read('api_keys.journal')].join('\0');
        };
        const before = await state();
        for (const [what, value] of badValues) {
          for (const [method, path, body] of [
            ['POST', '/api/keys', { name: 'refused', [field]: value }],
            ['PATCH', `/api/keys/${key.key_id}`, { [field]: value }],
            ['PATCH', `/api/keys/${key.key_id}`, { name: 'renamed', [field]: value }],
          ] as const) {
            const res = await send(url, path, { method, body });
            const where = `${backend.name}: ${method} ${path} with ${field} ${what}`;
            assert.equal(res.status, 400, `${where}: ${res.text}`);
            const answer = res.json<{ error: string; error_code: string; details: Array<{ field: string; problem: string }> }>();
            assert.equal(answer.error_code, 'INVALID_REQUEST', where);
            assert.deepEqual(
              answer.details.map((detail) => detail.field),
              [field],
              where,
            );
            assert.match(answer.error, new RegExp(`${field} must be a whole number from 1 to 1000000000 \\(.+\\), or null for no limit`), where);
          }
        }
        assert.equal(await state(), before, `${backend.name}: nothing changed`);
        const res = await send(url, `/api/keys/${key.key_id}`);
        assert.equal(res.json()[field], 7, backend.name);
      }
    });
  }
});
