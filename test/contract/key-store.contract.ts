// The KeyStore contract: what every key store (JSON files, PostgreSQL) must do, written once and run per adapter.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { KeyRecord, KeyStore } from '../../src/store/types.js';
import { isSkipped, lifecycle, waitFor, type HarnessOrSkip } from './harness.js';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** A fresh key record and its plaintext, as the gateway makes them. */
export function makeKey(overrides: Partial<KeyRecord> = {}): { record: KeyRecord; apiKey: string } {
  const apiKey = `comfy_${randomBytes(32).toString('base64url')}`;
  const record: KeyRecord = {
    key_id: randomBytes(16).toString('base64url'),
    name: 'Test Key',
    created_at: 1_714_000_000.25,
    last_used: null,
    rate_limit: 100,
    is_active: true,
    metadata: { team: 'vfx', nested: { list: [1, 2.5, 'three'], flag: false } },
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

/**
 * Runs the KeyStore contract against one adapter.
 * @example keyStoreContract('FileKeyStore', { open: ..., reset: ..., sharedChanges: { withinMs: 2000 } });
 */
export function keyStoreContract(name: string, harness: HarnessOrSkip<KeyStore>): void {
  if (isSkipped(harness)) {
    describe(`${name} (KeyStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (KeyStore contract)`, () => {
    const { open, reopen } = lifecycle(harness);
    const ids = (store: KeyStore): string[] =>
      store
        .list()
        .map((r) => r.key_id)
        .sort();

    test('matches the interface', async () => {
      const store = await open();
      for (const method of [
        'open',
        'findByHash',
        'get',
        'list',
        'size',
        'isPristine',
        'create',
        'update',
        'delete',
        'touch',
        'checkWritable',
        'close',
      ] as const) {
        assert.equal(typeof store[method], 'function', `${method} is a method`);
      }
    });

    test('a created key reads back field for field, by id, by hash and in the list', async () => {
      const store = await open();
      const { record } = makeKey({ expires_at: 1_900_000_000.5, role: 'admin', rate_limit: 10_000_000 });
      assert.equal(await store.create(record), true);
      assert.deepEqual(store.get(record.key_id), record);
      assert.deepEqual(store.findByHash(record.key_hash), record);
      assert.deepEqual(ids(store), [record.key_id]);
      assert.equal(store.size(), 1);
      assert.equal(store.findByHash(sha256('not a key')), undefined);
      assert.equal(store.get('no-such-id'), undefined);
      const again = await reopen();
      assert.deepEqual(again.get(record.key_id), record, 'durable once create resolved');
    });

    test('pristine until the first key, and never again, even after every key is deleted', async () => {
      let store = await open();
      assert.equal(store.isPristine(), true);
      const { record } = makeKey();
      await store.create(record);
      assert.equal(store.isPristine(), false);
      assert.equal(await store.delete(record.key_id), true);
      assert.equal(store.size(), 0);
      assert.equal(store.isPristine(), false);
      store = await reopen();
      assert.equal(store.isPristine(), false);
      assert.equal(await store.create(makeKey().record, { onlyIfPristine: true }), false);
    });

    test('onlyIfPristine: of 20 simultaneous first keys through two stores, exactly one is created', async () => {
      const [a, b] = [await open(), await open()];
      const attempts = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).create(makeKey({ role: 'admin' }).record, { onlyIfPristine: true }));
      const results = await Promise.all(attempts);
      assert.equal(results.filter(Boolean).length, 1);
      const store = await reopen();
      assert.equal(store.size(), 1);
    });

    test('update changes only the patched fields and resolves the record; unknown ids resolve undefined', async () => {
      const store = await open();
      const { record } = makeKey();
      await store.create(record);
      const updated = await store.update(record.key_id, { name: 'Renamed', rate_limit: 7, is_active: false, metadata: { a: 1 }, expires_at: 1_800_000_000 });
      assert.deepEqual(updated, { ...record, name: 'Renamed', rate_limit: 7, is_active: false, metadata: { a: 1 }, expires_at: 1_800_000_000 });
      assert.deepEqual(store.get(record.key_id), updated);
      assert.equal(await store.update('no-such-id', { name: 'x' }), undefined);
      const again = await reopen();
      assert.deepEqual(again.get(record.key_id), updated);
    });

    test('job quotas are stored, changed one at a time and cleared with null, durably', async () => {
      const store = await open();
      const { record } = makeKey({ max_queued: 5, max_running: 2, daily_execution_seconds: 1_000_000_000 });
      await store.create(record);
      assert.deepEqual(store.get(record.key_id), record);
      const raised = await store.update(record.key_id, { max_running: 3 });
      assert.deepEqual(raised, { ...record, max_running: 3 });
      const cleared = await store.update(record.key_id, { max_queued: null, daily_execution_seconds: null });
      assert.deepEqual(cleared, { ...record, max_queued: null, max_running: 3, daily_execution_seconds: null });
      const again = await reopen();
      assert.deepEqual(again.get(record.key_id), cleared);
    });

    test('a prompt policy is stored, replaced and cleared with null, durably, with every field as given', async () => {
      const store = await open();
      const policy = {
        allow_nodes: ['KSampler*', 'Empty*Latent*', 'SaveImage'],
        deny_nodes: ['*Upscale*'],
        max_width: 2048,
        max_height: 1536,
        max_batch_size: 4,
        max_steps: 60,
        max_frames: 121,
        max_prompt_bytes: 1_000_000,
        max_execution_seconds: 600,
        workflows_only: false,
      };
      const { record } = makeKey({ policy });
      const plain = makeKey().record;
      await store.create(record);
      await store.create(plain);
      assert.deepEqual(store.get(record.key_id), record);
      assert.equal(store.get(plain.key_id)?.policy, null, 'a key made without a policy has none');
      const replaced = await store.update(record.key_id, { policy: { workflows_only: true } });
      assert.deepEqual(replaced, { ...record, policy: { workflows_only: true } });
      const reopened = await reopen();
      assert.deepEqual(reopened.get(record.key_id), replaced, 'the replaced policy after a reopen');
      const cleared = await reopened.update(record.key_id, { policy: null, name: 'No policy' });
      assert.deepEqual(cleared, { ...record, name: 'No policy', policy: null });
      const again = await reopen();
      assert.deepEqual(again.get(record.key_id), cleared);
      assert.equal(again.get(plain.key_id)?.policy, null);
    });

    test('delete removes the key everywhere; a second delete resolves false', async () => {
      const store = await open();
      const { record } = makeKey();
      const other = makeKey().record;
      await store.create(record);
      await store.create(other);
      assert.equal(await store.delete(record.key_id), true);
      assert.equal(await store.delete(record.key_id), false);
      assert.equal(store.get(record.key_id), undefined);
      assert.equal(store.findByHash(record.key_hash), undefined);
      assert.deepEqual(ids(store), [other.key_id]);
      const again = await reopen();
      assert.deepEqual(ids(again), [other.key_id]);
      assert.equal(await again.update(record.key_id, { name: 'back?' }), undefined, 'a deleted key cannot be updated back');
    });

    test('rotation: the previous hash finds the key until it is cleared', async () => {
      const store = await open();
      const { record } = makeKey();
      await store.create(record);
      const next = makeKey().record.key_hash;
      await store.update(record.key_id, { key_hash: next, previous_key_hash: record.key_hash, previous_key_valid_until: 1_900_000_000 });
      assert.equal(store.findByHash(next)?.key_id, record.key_id);
      assert.equal(store.findByHash(record.key_hash)?.key_id, record.key_id);
      await store.update(record.key_id, { previous_key_hash: null, previous_key_valid_until: null });
      assert.equal(store.findByHash(record.key_hash), undefined);
      assert.equal(store.findByHash(next)?.key_id, record.key_id);
    });

    test('touch shows last_used at once and is written by close', async () => {
      const store = await open();
      const { record } = makeKey();
      await store.create(record);
      store.touch(record.key_id, 1_714_000_100.5);
      store.touch('no-such-id', 1);
      assert.equal(store.get(record.key_id)?.last_used, 1_714_000_100.5);
      const again = await reopen();
      assert.equal(again.get(record.key_id)?.last_used, 1_714_000_100.5);
    });

    test('checkWritable resolves while the store can take writes', async () => {
      const store = await open();
      await store.checkWritable();
    });

    test(
      'changes made through one store reach another open on the same data',
      { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false },
      async () => {
        const withinMs = 'withinMs' in harness.sharedChanges ? harness.sharedChanges.withinMs : 0;
        const [writer, reader] = [await open(), await open()];
        const { record } = makeKey();
        await writer.create(record);
        await waitFor(() => reader.findByHash(record.key_hash) !== undefined, withinMs, 'the new key');
        assert.equal(reader.isPristine(), false);
        await writer.update(record.key_id, { is_active: false });
        await waitFor(() => reader.get(record.key_id)?.is_active === false, withinMs, 'the key disabled');
        await writer.update(record.key_id, { rate_limit: 3, is_active: true });
        await waitFor(() => reader.get(record.key_id)?.rate_limit === 3 && reader.get(record.key_id)?.is_active === true, withinMs, 'the new limit');
        await writer.delete(record.key_id);
        await waitFor(() => reader.findByHash(record.key_hash) === undefined && reader.size() === 0, withinMs, 'the key deleted');
      },
    );
  });
}
