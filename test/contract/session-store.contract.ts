// The SessionStore contract: opaque ids, expiry, sign-out, durability across a restart.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SessionStore } from '../../src/store/types.js';
import { isSkipped, lifecycle, waitFor, type HarnessOrSkip } from './harness.js';

/** Runs the SessionStore contract against one adapter. */
export function sessionStoreContract(name: string, harness: HarnessOrSkip<SessionStore>): void {
  if (isSkipped(harness)) {
    describe(`${name} (SessionStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (SessionStore contract)`, () => {
    const { open, reopen } = lifecycle(harness);
    const now = (): number => Date.now() / 1000;

    test('matches the interface', async () => {
      const store = await open();
      for (const method of ['open', 'create', 'find', 'delete', 'close'] as const) assert.equal(typeof store[method], 'function', `${method} is a method`);
    });

    test('a session is found by its id until it expires; ids are opaque and new each time', async () => {
      const store = await open();
      const t = now();
      const { id, session } = await store.create('alice', 60, t);
      const second = await store.create('alice', 60, t);
      assert.match(id, /^[A-Za-z0-9_-]{43}$/);
      assert.notEqual(id, second.id);
      assert.deepEqual(session, { keyId: 'alice', createdAt: t, expiresAt: t + 60 });
      assert.deepEqual(store.find(id, t + 1), session);
      assert.equal(store.find(id, t + 60), undefined, 'expired at expiresAt');
      assert.equal(store.find('unknown', t), undefined);
    });

    test('sessions survive a restart; a deleted one does not', async () => {
      const store = await open();
      const t = now();
      const kept = await store.create('alice', 600, t);
      const ended = await store.create('bob', 600, t);
      await store.delete(ended.id);
      await store.delete('never-existed');
      assert.equal(store.find(ended.id, t), undefined);
      const again = await reopen();
      assert.deepEqual(again.find(kept.id, t + 1), kept.session);
      assert.equal(again.find(ended.id, t + 1), undefined);
    });

    test('sign-in and sign-out through one store reach another open on the same data', { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false }, async () => {
      const withinMs = 'withinMs' in harness.sharedChanges ? harness.sharedChanges.withinMs : 0;
      const [writer, reader] = [await open(), await open()];
      const { id } = await writer.create('alice', 600, now());
      await waitFor(() => reader.find(id, now()) !== undefined, withinMs, 'the new session');
      await writer.delete(id);
      await waitFor(() => reader.find(id, now()) === undefined, withinMs, 'the session ended');
    });
  });
}
