// Unit tests of FileKeyStore: durability, the reference's api_keys.json format, corrupt files, several writers, touch batching, compaction.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FileKeyStore, type FileKeyStoreOptions } from '../../src/store/file/file-key-store.js';
import { StoreCorruptError, type KeyRecord } from '../../src/store/types.js';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** A fresh key record and its plaintext, as the gateway makes them. */
function makeKey(overrides: Partial<KeyRecord> = {}): { record: KeyRecord; apiKey: string } {
  const apiKey = `comfy_${randomBytes(32).toString('base64url')}`;
  const record: KeyRecord = {
    key_id: randomBytes(16).toString('base64url'),
    name: 'Test Key',
    created_at: 1_714_000_000.25,
    last_used: null,
    rate_limit: 100,
    is_active: true,
    metadata: {},
    role: 'user',
    expires_at: null,
    key_prefix: apiKey.slice(0, 12),
    key_hash: sha256(apiKey),
    previous_key_hash: null,
    previous_key_valid_until: null,
    max_queued: null,
    max_running: null,
    daily_execution_seconds: null,
    policy: null,
    webhook_url: null,
    ...overrides,
  };
  return { record, apiKey };
}

/** Resolves once `condition` holds, or fails after `timeoutMs`. */
async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

const ids = (store: FileKeyStore): string[] =>
  store
    .list()
    .map((r) => r.key_id)
    .sort();

describe('FileKeyStore', () => {
  let dir: string;
  let keysPath: string;
  let journalPath: string;
  let opened: FileKeyStore[];

  /** Opens a store on the test directory; it is closed after the test. */
  async function openStore(options: Partial<FileKeyStoreOptions> = {}): Promise<FileKeyStore> {
    const store = new FileKeyStore({ directory: dir, pollIntervalMs: 100, ...options });
    await store.open();
    opened.push(store);
    return store;
  }

  /** Closes every store opened so far, as a stopped process would. */
  async function closeAll(): Promise<void> {
    await Promise.all(opened.splice(0).map((s) => s.close()));
  }

  /** Closes the open stores and opens a fresh one, as a restarted process would. */
  async function reopen(): Promise<FileKeyStore> {
    await closeAll();
    return openStore();
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-keys-'));
    keysPath = join(dir, 'api_keys.json');
    journalPath = join(dir, 'api_keys.journal');
    opened = [];
  });

  afterEach(async () => {
    await Promise.all(opened.map((s) => s.close().catch(() => undefined)));
    await rm(dir, { recursive: true, force: true });
  });

  test('the first create writes api_keys.json in the reference format', async () => {
    const store = await openStore();
    await assert.rejects(stat(keysPath), { code: 'ENOENT' }, 'no file before the first key');
    const { record } = makeKey({ name: 'My First Key', metadata: { team: 'a' } });
    assert.equal(await store.create(record), true);

    const onDisk = JSON.parse(await readFile(keysPath, 'utf8')) as Record<string, Record<string, unknown>>;
    assert.deepEqual(Object.keys(onDisk), [record.key_id]);
    const stored = onDisk[record.key_id]!;
    for (const field of ['key_id', 'name', 'key_hash', 'created_at', 'last_used', 'rate_limit', 'is_active', 'metadata']) {
      assert.ok(field in stored, `${field} is stored`);
    }
    assert.match(String(stored.key_hash), /^[0-9a-f]{64}$/);
    assert.equal(stored.key_hash, record.key_hash);
    assert.equal(stored.name, 'My First Key');
    assert.equal(stored.created_at, record.created_at);
    assert.equal(stored.last_used, null);
    assert.equal(stored.rate_limit, 100);
    assert.equal(stored.is_active, true);
    assert.deepEqual(stored.metadata, { team: 'a' });
    for (const field of ['max_queued', 'max_running', 'daily_execution_seconds']) assert.equal(stored[field], null, `${field} is written as null`);
  });

  test('create, update and delete are durable: a new instance sees them', async () => {
    const store = await openStore();
    const kept = makeKey().record;
    const removed = makeKey().record;
    await store.create(kept);
    await store.create(removed);
    const updated = await store.update(kept.key_id, { name: 'Renamed', rate_limit: 5, is_active: false });
    assert.equal(updated?.name, 'Renamed');
    assert.equal(await store.delete(removed.key_id), true);
    assert.equal(await store.update('no-such-key', { name: 'x' }), undefined);
    assert.equal(await store.delete('no-such-key'), false);

    const fresh = await reopen();
    assert.deepEqual(ids(fresh), [kept.key_id]);
    assert.deepEqual(fresh.get(kept.key_id), { ...kept, name: 'Renamed', rate_limit: 5, is_active: false });
    assert.equal(fresh.findByHash(kept.key_hash)?.key_id, kept.key_id);
    assert.equal(fresh.findByHash(removed.key_hash), undefined);
    assert.equal(fresh.get(removed.key_id), undefined);
  });

  test('a keys file written by the reference loads, and its keys keep working', async () => {
    const apiKey = `comfy_${'AbC-_9xYz'.repeat(5).slice(0, 43)}`;
    assert.match(apiKey, /^comfy_[A-Za-z0-9_-]{43}$/);
    const keyId = 'Zm9vYmFyYmF6cXV4MTIzNA';
    const reference = {
      [keyId]: {
        key_id: keyId,
        name: 'My First Key',
        key_hash: sha256(apiKey),
        created_at: 1712345678.123456,
        last_used: 1712349999.5,
        rate_limit: 100,
        is_active: true,
        metadata: { purpose: 'testing' },
      },
    };
    await writeFile(keysPath, JSON.stringify(reference, null, 2));

    const store = await openStore();
    const found = store.findByHash(sha256(apiKey));
    assert.ok(found, 'the key is found by the hash of its plaintext');
    assert.equal(found.key_id, keyId);
    assert.equal(found.role, 'user');
    assert.equal(found.name, 'My First Key');
    assert.equal(found.last_used, 1712349999.5);
    assert.deepEqual(found.metadata, { purpose: 'testing' });
    assert.deepEqual([found.max_queued, found.max_running, found.daily_execution_seconds], [null, null, null], 'no job quotas');

    await store.create(makeKey().record);
    const fresh = await reopen();
    assert.equal(fresh.size(), 2);
    assert.equal(fresh.findByHash(sha256(apiKey))?.key_id, keyId, 'still works after a change and a restart');
  });

  for (const [what, content] of [
    ['not JSON', '{"abc": {"key_id": '],
    ['a key with a bad hash', JSON.stringify({ k: { ...makeKey().record, key_hash: 'not-a-hash' } })],
  ] as const) {
    test(`a snapshot that is ${what} makes open() reject, and the file is left unchanged`, async () => {
      await writeFile(keysPath, content);
      const store = new FileKeyStore({ directory: dir, pollIntervalMs: 100 });
      await assert.rejects(store.open(), (error: unknown) => {
        assert.ok(error instanceof StoreCorruptError);
        assert.ok(error.message.includes(keysPath), `the message names the file: ${error.message}`);
        assert.equal(error.file, keysPath);
        return true;
      });
      await store.close();
      assert.equal(await readFile(keysPath, 'utf8'), content);
    });
  }

  const badFields: Array<[string, unknown, RegExp]> = [
    ['is_active', 0, /is_active must be true or false, not 0/],
    ['is_active', null, /is_active must be true or false, not null/],
    ['is_active', 'false', /is_active must be true or false, not "false"/],
    ['is_active', undefined, /is_active must be true or false, not missing/],
    ['rate_limit', '100', /rate_limit must be a whole number of at least 1, not "100"/],
    ['rate_limit', 2.5, /rate_limit must be a whole number/],
    ['rate_limit', 0, /rate_limit must be a whole number/],
    ['created_at', '1712345678', /created_at must be a number/],
    ['last_used', true, /last_used must be a number/],
    ['name', 42, /name must be a string, not 42/],
    ['metadata', 'x', /metadata must be an object/],
    ['role', 'root', /role must be "user" or "admin", not "root"/],
    ['expires_at', 'never', /expires_at must be a number/],
    ['key_prefix', 7, /key_prefix must be a string or null/],
    ['max_queued', 0, /max_queued must be a whole number from 1 to 1000000000 or null, not 0/],
    ['max_running', '2', /max_running must be a whole number from 1 to 1000000000 or null, not "2"/],
    ['daily_execution_seconds', 1.5, /daily_execution_seconds must be a whole number/],
    ['daily_execution_seconds', 1e10, /daily_execution_seconds must be a whole number/],
  ];
  for (const [field, value, message] of badFields) {
    test(`a key whose ${field} is ${value === undefined ? 'missing' : JSON.stringify(value)} is refused, naming the key and the field, in a small file, a large indexed one and the journal`, async () => {
      const { record } = makeKey();
      const bad: Record<string, unknown> = { ...record, [field]: value };
      if (value === undefined) delete bad[field];
      const others = Array.from({ length: 50 }, () => makeKey().record);
      const expectRefusal = async (file: string, options: Partial<FileKeyStoreOptions> = {}): Promise<void> => {
        const store = new FileKeyStore({ directory: dir, pollIntervalMs: 100, ...options });
        await assert.rejects(store.open(), (error: unknown) => {
          assert.ok(error instanceof StoreCorruptError, String(error));
          assert.equal(error.file, file);
          assert.ok(error.message.includes(`record ${JSON.stringify(record.key_id)}`), error.message);
          assert.match(error.message, message);
          return true;
        });
        await store.close();
      };
      const snapshot = JSON.stringify(Object.fromEntries([...others, bad].map((key) => [key.key_id, key])), null, 2);
      await writeFile(keysPath, snapshot);
      await expectRefusal(keysPath);
      const byLine = '{\n' + [...others, bad].map((key) => `${JSON.stringify(key.key_id)}: ${JSON.stringify(key)}`).join(',\n') + '\n}\n';
      await writeFile(keysPath, byLine);
      await expectRefusal(keysPath, { index: { minBytes: 1, threads: 2 } });
      assert.equal(await readFile(keysPath, 'utf8'), byLine, 'the file is left unchanged');
      await rm(keysPath);
      await writeFile(journalPath, JSON.stringify({ op: 'put', id: record.key_id, value: bad }) + '\n');
      await expectRefusal(journalPath);
    });
  }

  test('temporary files a crash left mid-rewrite are removed at open; others are kept', async () => {
    const leftovers = ['.api_keys.json.1a2b3c.tmp', '.api_keys.journal.4d5e6f.tmp'];
    for (const name of [...leftovers, 'notes.tmp']) await writeFile(join(dir, name), 'partial');
    await openStore();
    for (const name of leftovers) await assert.rejects(stat(join(dir, name)), { code: 'ENOENT' });
    assert.equal(await readFile(join(dir, 'notes.tmp'), 'utf8'), 'partial');
  });

  test('a torn last journal line is tolerated; the next change works and is durable', async () => {
    const store = await openStore();
    const first = makeKey().record;
    const second = makeKey().record;
    await store.create(first);
    await store.create(second);
    await closeAll();
    assert.ok((await stat(journalPath)).size > 0, 'the second key sits in the journal');
    await appendFile(journalPath, '{"op":"put","key":{"key_');

    const recovered = await openStore();
    assert.deepEqual(ids(recovered), [first.key_id, second.key_id].sort());
    const third = makeKey().record;
    assert.equal(await recovered.create(third), true);

    const fresh = await reopen();
    assert.deepEqual(ids(fresh), [first.key_id, second.key_id, third.key_id].sort());
    const lines = (await readFile(journalPath, 'utf8')).split('\n').filter(Boolean);
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `journal line is JSON: ${line}`);
  });

  test('a line torn by another process dying mid-append does not corrupt the next change', async () => {
    const gateway = await openStore();
    const first = makeKey().record;
    await gateway.create(first);
    await gateway.update(first.key_id, { name: 'in the journal' });
    await appendFile(journalPath, '{"op":"put","key":{"key_');

    const second = makeKey().record;
    assert.equal(await gateway.create(second), true);
    const fresh = await reopen();
    assert.deepEqual(ids(fresh), [first.key_id, second.key_id].sort());
    assert.equal(fresh.get(first.key_id)?.name, 'in the journal');
  });

  test('a change made by one instance is visible in another within a second', async () => {
    const gateway = await openStore();
    const cli = await openStore();
    const { record } = makeKey();
    const started = Date.now();
    await cli.create(record);
    await waitFor(() => gateway.findByHash(record.key_hash) !== undefined, 1000, 'the new key');
    assert.ok(Date.now() - started < 1000);

    await cli.update(record.key_id, { is_active: false });
    await waitFor(() => gateway.get(record.key_id)?.is_active === false, 1000, 'the deactivation');
    await cli.delete(record.key_id);
    await waitFor(() => gateway.findByHash(record.key_hash) === undefined, 1000, 'the deletion');
  });

  test('20 interleaved concurrent creates from two instances all survive', async () => {
    const a = await openStore();
    const b = await openStore();
    const records = Array.from({ length: 20 }, () => makeKey().record);
    const results = await Promise.all(records.map((r, i) => (i % 2 === 0 ? a : b).create(r)));
    assert.deepEqual(results, Array(20).fill(true));
    const third = new FileKeyStore({ directory: dir });
    await third.open();
    opened.push(third);
    assert.deepEqual(ids(third), records.map((r) => r.key_id).sort());
    for (const r of records) assert.equal(third.findByHash(r.key_hash)?.key_id, r.key_id);
  });

  test('create with onlyIfPristine, 10 times concurrently across two instances, succeeds exactly once', async () => {
    const a = await openStore();
    const b = await openStore();
    assert.equal(a.isPristine(), true);
    const attempts = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).create(makeKey().record, { onlyIfPristine: true }));
    const results = await Promise.all(attempts);
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(a.size(), 1);
    assert.equal(a.isPristine(), false);
    const fresh = await reopen();
    assert.equal(fresh.size(), 1);
  });

  test('a store whose keys were all deleted is not pristine again', async () => {
    const store = await openStore();
    const { record } = makeKey();
    await store.create(record);
    await store.delete(record.key_id);
    assert.equal(store.size(), 0);
    assert.equal(store.isPristine(), false);
    assert.equal(await store.create(makeKey().record, { onlyIfPristine: true }), false);
    const fresh = await reopen();
    assert.equal(fresh.isPristine(), false);
    assert.equal(await fresh.create(makeKey().record, { onlyIfPristine: true }), false);
    assert.equal(fresh.size(), 0);
  });

  test('touch() updates last_used in memory at once, writes nothing on the spot, and is durable after close()', async () => {
    const store = await openStore({ touchFlushMs: 60_000 });
    const { record } = makeKey();
    await store.create(record);
    const journalBefore = (await stat(journalPath)).size;

    store.touch(record.key_id, 1_714_000_100.5);
    store.touch(record.key_id, 1_714_000_200.5);
    store.touch('no-such-key', 1_714_000_300);
    assert.equal(store.get(record.key_id)?.last_used, 1_714_000_200.5);
    assert.equal(store.findByHash(record.key_hash)?.last_used, 1_714_000_200.5);
    assert.equal((await stat(journalPath)).size, journalBefore, 'no write per request');

    const fresh = await reopen();
    assert.equal(fresh.get(record.key_id)?.last_used, 1_714_000_200.5);
    assert.equal(fresh.get('no-such-key'), undefined);
  });

  test('batched touches are written by the timer: one put per touched key, not one per use', async () => {
    const store = await openStore({ touchFlushMs: 50 });
    const keys = [makeKey().record, makeKey().record];
    for (const k of keys) await store.create(k);
    const journalBefore = (await stat(journalPath)).size;
    for (let use = 0; use < 50; use += 1) for (const [i, k] of keys.entries()) store.touch(k.key_id, 1_714_000_450 + use + i);

    const other = await openStore();
    await waitFor(() => other.get(keys[1]!.key_id)?.last_used === 1_714_000_500, 1000, 'the flushed touches');
    assert.equal(other.get(keys[0]!.key_id)?.last_used, 1_714_000_499);
    const appended = (await readFile(journalPath, 'utf8')).slice(journalBefore).split('\n').filter(Boolean);
    assert.deepEqual(
      appended.map((line) => (JSON.parse(line) as { op: string; id: string }).id).sort(),
      keys.map((k) => k.key_id).sort(),
      'one line per touched key for the whole batch',
    );
  });

  test('a pending touch survives an update made meanwhile by another instance', async () => {
    const gateway = await openStore({ touchFlushMs: 60_000 });
    const cli = await openStore();
    const { record } = makeKey();
    await gateway.create(record);
    await waitFor(() => cli.get(record.key_id) !== undefined, 1000, 'the key in the CLI');
    gateway.touch(record.key_id, 1_714_000_900);
    await cli.update(record.key_id, { name: 'Renamed by CLI' });
    await waitFor(() => gateway.get(record.key_id)?.name === 'Renamed by CLI', 1000, 'the rename');
    assert.equal(gateway.get(record.key_id)?.last_used, 1_714_000_900);

    const fresh = await reopen();
    assert.equal(fresh.get(record.key_id)?.name, 'Renamed by CLI');
    assert.equal(fresh.get(record.key_id)?.last_used, 1_714_000_900);
  });

  test('once the journal passes 256 KiB, api_keys.json is rewritten and the journal emptied', async () => {
    const store = await openStore();
    const watcher = await openStore();
    const keys = [makeKey().record, makeKey().record];
    for (const k of keys) await store.create(k);
    const snapshotIno = (await stat(keysPath)).ino;
    const filler = 'x'.repeat(20 * 1024);
    let previousSize = (await stat(journalPath)).size;
    let compactedAt = -1;
    for (let i = 0; i < 40 && compactedAt < 0; i += 1) {
      await store.update(keys[0]!.key_id, { metadata: { round: i, filler } });
      const size = (await stat(journalPath)).size;
      if (size < previousSize) compactedAt = i;
      else previousSize = size;
    }
    assert.ok(compactedAt >= 0, 'the journal was compacted');
    assert.ok(previousSize <= 256 * 1024 && previousSize > 256 * 1024 - 25 * 1024, `compacted just past 256 KiB (was ${previousSize})`);
    assert.equal((await stat(journalPath)).size, 0);
    assert.notEqual((await stat(keysPath)).ino, snapshotIno, 'the snapshot was replaced');
    const onDisk = JSON.parse(await readFile(keysPath, 'utf8')) as Record<string, KeyRecord>;
    assert.deepEqual(onDisk[keys[0]!.key_id]!.metadata, { round: compactedAt, filler });

    const expected = store.list().sort((x, y) => x.key_id.localeCompare(y.key_id));
    await waitFor(() => watcher.get(keys[0]!.key_id)?.metadata.round === compactedAt, 1000, 'the other instance to reload');
    await store.update(keys[1]!.key_id, { name: 'after compaction' });
    const fresh = await reopen();
    assert.deepEqual(
      fresh.list().sort((x, y) => x.key_id.localeCompare(y.key_id)),
      expected.map((k) => (k.key_id === keys[1]!.key_id ? { ...k, name: 'after compaction' } : k)),
    );
  });

  test('checkWritable() resolves on a writable directory', async () => {
    const store = await openStore();
    await store.checkWritable();
    await assert.rejects(stat(join(dir, '.api_keys.lock')), { code: 'ENOENT' }, 'the lock is released');
  });
});
