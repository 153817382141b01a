// Crash safety: the gateway under load is SIGKILLed at random moments and restarted on the same folder; and a full disk.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { inParallel, KeepAliveClient } from '../fault/keep-alive-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { assertStoreFilesParse, Ledger, type KeyState } from './ledger.js';
import { withTmpfs } from './tmpfs.js';

/** Gateway lives, each ended by SIGKILL. */
const LIVES = 60;
/** Every this many lives, one outlives the usage store's 5-second compaction check. */
const LONG_LIFE_EVERY = 8;
const MAX_KEYS = 400;
/** Request logs are off: a line per request would only slow the load down. */
const ARGS = ['--enable-api-auth', '--log-level', 'warn'];

const randomInt = (min: number, max: number): number => min + Math.floor(Math.random() * (max - min + 1));

function randomState(): KeyState {
  return {
    name: `key ${randomBytes(6).toString('base64url')}`,
    rate_limit: randomInt(1_000_000, 10_000_000),
    metadata: { note: randomBytes(randomInt(0, 450)).toString('base64'), n: randomInt(0, 1e9) },
  };
}

/** Load until halted: key creations, key updates (one in flight per key) and authenticated requests. */
function startLoad(client: KeepAliveClient, ledger: Ledger): { halt(): void; finished(): Promise<void> } {
  let running = true;
  const loop = async (step: () => Promise<void>): Promise<void> => {
    while (running) await step();
  };
  const workers = [
    loop(async () => {
      if (ledger.keys.size < MAX_KEYS) await ledger.create(client, randomState());
      await sleep(30);
    }),
    ...Array.from({ length: 2 }, () =>
      loop(async () => {
        const key = ledger.randomKey((k) => k.pending === null);
        if (key) await ledger.update(client, key, randomState());
        else await sleep(5);
      }),
    ),
    ...Array.from({ length: 6 }, () =>
      loop(async () => {
        const key = ledger.randomKey();
        if (key) await ledger.use(client, key);
        else await sleep(5);
      }),
    ),
  ];
  return {
    halt: () => (running = false),
    finished: async () => void (await Promise.all(workers)),
  };
}

async function listedIds(url: string): Promise<string[]> {
  return (await send(url, '/api/keys'))
    .json<{ keys: Array<{ key_id: string }> }>()
    .keys.map((key) => key.key_id)
    .sort();
}

const idsOf = (keys: CreatedKey[]): string[] => keys.map((key) => key.key_id).sort();

async function assertAuthenticate(url: string, keys: CreatedKey[]): Promise<void> {
  const statuses = await Promise.all(keys.map((key) => send(url, '/api/queue', { key: key.api_key }).then((res) => res.status)));
  assert.deepEqual(
    statuses,
    keys.map(() => 200),
    'every answered key authenticates',
  );
}

describe('crash safety', () => {
  let comfy: FakeComfyUI;
  before(async () => {
    comfy = await startFakeComfyUI();
  });
  after(async () => {
    await comfy.close();
  });

  test(`${LIVES} SIGKILLs under load: answered keys, changes and usage survive every restart`, async (t) => {
    const dir = await tempUserDirectory();
    const ledger = new Ledger();
    let requestsSent = 0;
    try {
      for (let life = 0; life < LIVES; life += 1) {
        const gateway = await startGateway({ upstream: comfy.url, args: ARGS, userDirectory: dir.path });
        const startedAt = Date.now();
        const client = new KeepAliveClient(gateway.url, 32);
        try {
          ledger.beginLife();
          await ledger.verifyRestart(client, dir.path);
          await inParallel([...ledger.keys.values()], 32, (key) => ledger.use(client, key));
          assert.deepEqual(ledger.violations, [], `life ${life}: every answered key authenticates`);
          const lifetime = life % LONG_LIFE_EVERY === LONG_LIFE_EVERY - 1 ? randomInt(5000, 6500) : randomInt(300, 3000);
          const load = startLoad(client, ledger);
          await sleep(Math.max(100, lifetime - (Date.now() - startedAt)));
          load.halt();
          ledger.markKill(Date.now());
          await gateway.stop('SIGKILL');
          await load.finished();
          ledger.settleLife();
          assert.deepEqual(ledger.violations, [], `life ${life}: the live gateway answered every request`);
        } finally {
          client.close();
          await gateway.stop('SIGKILL');
        }
      }
      const gateway = await startGateway({ upstream: comfy.url, args: ARGS, userDirectory: dir.path });
      const client = new KeepAliveClient(gateway.url);
      try {
        await ledger.verifyRestart(client, dir.path);
      } finally {
        client.close();
        assert.equal(await gateway.stop('SIGTERM'), 0);
      }
      for (const key of ledger.keys.values()) requestsSent += key.mayCount;
      const leftovers = readdirSync(dir.path).filter((name) => name.endsWith('.tmp'));
      t.diagnostic(
        `${LIVES} kills; ${ledger.keys.size} keys; ${requestsSent} authenticated requests; ` +
          `${ledger.unannounced.size} keys from unanswered creations (of ${ledger.unansweredCreations}); ` +
          `api_usage.json ${(statSync(join(dir.path, 'api_usage.json')).size / 2 ** 20).toFixed(1)} MiB; ` +
          `${leftovers.length} temporary files left by kills mid-write`,
      );
    } finally {
      await dir.remove();
    }
  });

  test('a full disk: files stay intact, writes answer clear errors, nothing answered is lost, and it recovers', (t) =>
    withTmpfs(t, 2 * 1024 * 1024, async (disk) => {
      const dir = join(disk.path, 'user');
      const keysFile = join(dir, 'api_keys.json');
      let gateway = await startGateway({ upstream: comfy.url, args: ARGS, userDirectory: dir });
      const fillers: Array<() => void> = [];
      const freeSpace = (): void => fillers.splice(0).forEach((remove) => remove());
      try {
        const url = gateway.url;
        const first = await createKey(url, { name: 'before the disk filled' });
        const answered: CreatedKey[] = [first];
        let used = 0;
        const useMany = async (count: number): Promise<void> => {
          const answers = await Promise.all(Array.from({ length: count }, () => send(url, '/api/queue', { key: first.api_key })));
          assert.deepEqual(
            answers.map((res) => res.status),
            answers.map(() => 200),
            'requests are served while the disk is full',
          );
          used += count;
        };
        await useMany(5);
        await sleep(400);

        // Two pages left: the journal append of a new key runs out of space part-way.
        const keysBefore = readFileSync(keysFile);
        fillers.push(disk.fill(2));
        assert.equal(disk.freeBytes(), 2 * 4096);
        let refused: TestResponse | undefined;
        for (let i = 0; i < 6 && !refused; i += 1) {
          const res = await send(url, '/api/keys', { method: 'POST', body: { name: `while filling ${i}`, metadata: { blob: 'x'.repeat(3000) } } });
          if (res.status === 200) answered.push(res.json<CreatedKey>());
          else refused = res;
        }
        assert.ok(refused, 'a key creation is refused once the disk is full');
        assert.equal(refused.status, 500, refused.text);
        assert.equal(refused.json().error_code, 'KEY_CREATION_FAILED');
        assert.deepEqual(await listedIds(url), idsOf(answered), 'a refused creation created nothing');

        // No space at all: changes are refused, requests are still served, /readyz says why.
        fillers.push(disk.fill(0));
        for (const method of ['PATCH', 'DELETE']) {
          const res = await send(url, `/api/keys/${first.key_id}`, { method, ...(method === 'PATCH' ? { body: { name: 'never' } } : {}) });
          assert.equal(res.status, 503, `${method}: ${res.text}`);
          assert.equal(res.json().error_code, 'STORE_UNAVAILABLE');
        }
        await useMany(40);
        await sleep(400);
        const ready = await send(url, '/readyz');
        assert.equal(ready.status, 503, ready.text);
        assert.match(ready.text, /ENOSPC|no space/i);
        assert.equal((await send(url, '/healthz')).status, 200);
        assert.deepEqual(readFileSync(keysFile), keysBefore, 'api_keys.json is untouched');
        assertStoreFilesParse(dir, true);
        assert.equal((await send(url, `/api/keys/${first.key_id}`)).json().name, 'before the disk filled', 'a refused update changed nothing');

        // Space again: everything works, and no torn write was left in the files.
        freeSpace();
        const readyBy = Date.now() + 3000;
        while ((await send(url, '/readyz')).status !== 200) {
          assert.ok(Date.now() < readyBy, '/readyz is 200 again within 3 s of freeing space');
          await sleep(100);
        }
        answered.push(await createKey(url, { name: 'after the disk was freed' }));
        assert.equal((await send(url, `/api/keys/${first.key_id}`, { method: 'PATCH', body: { name: 'renamed' } })).status, 200);
        await useMany(5);
        await sleep(400);
        assertStoreFilesParse(dir, true);

        // Killed and restarted: every answered key and change is there, and the usage of the full period too.
        await gateway.stop('SIGKILL');
        gateway = await startGateway({ upstream: comfy.url, args: ARGS, userDirectory: dir });
        assertStoreFilesParse(dir, true);
        assert.deepEqual(await listedIds(gateway.url), idsOf(answered));
        assert.equal((await send(gateway.url, `/api/keys/${first.key_id}`)).json().name, 'renamed');
        await assertAuthenticate(gateway.url, answered);
        const total = (await send(gateway.url, '/api/usage', { key: first.api_key })).json<{ usage_stats: { total_requests: number } }>().usage_stats
          .total_requests;
        assert.ok(total >= used, `usage recorded while the disk was full is kept: ${total} of ${used}`);
      } finally {
        freeSpace();
        await gateway.stop('SIGKILL');
      }
    }));

  test('the first key on a nearly full disk: the answer agrees with what was stored, before and after a restart', (t) =>
    withTmpfs(t, 1024 * 1024, async (disk) => {
      const dir = join(disk.path, 'user');
      let gateway = await startGateway({ upstream: comfy.url, args: ARGS, userDirectory: dir });
      try {
        // Room for the journal line of the first key, not for the api_keys.json written with it.
        const removeFiller = disk.fill(2);
        const res = await send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'first' } });
        const answered = res.status === 200 ? [res.json<CreatedKey>()] : [];
        if (res.status !== 200) assert.equal(res.json().error_code, 'KEY_CREATION_FAILED', res.text);
        assert.deepEqual(await listedIds(gateway.url), idsOf(answered), `answered ${res.status}: the listing agrees`);
        removeFiller();
        await gateway.stop('SIGKILL');
        gateway = await startGateway({ upstream: comfy.url, args: ARGS, userDirectory: dir });
        assert.deepEqual(await listedIds(gateway.url), idsOf(answered), `answered ${res.status}: the restarted gateway agrees`);
        await assertAuthenticate(gateway.url, answered);
      } finally {
        await gateway.stop('SIGKILL');
      }
    }));
});
