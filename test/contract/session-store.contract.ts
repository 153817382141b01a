// The SessionStore contract: opaque ids, expiry, sign-out, the end of a key's sessions, the cap per key, durability across a restart.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_SESSIONS_PER_KEY, type SessionStore } from '../../src/store/types.js';
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
    const [ALICE_HASH, ALICE_OLD_HASH, BOB_HASH] = ['a'.repeat(64), 'c'.repeat(64), 'b'.repeat(64)];

    test('matches the interface', async () => {
      const store = await open();
      for (const method of ['open', 'create', 'find', 'delete', 'deleteForKey', 'close'] as const)
        assert.equal(typeof store[method], 'function', `${method} is a method`);
    });

    test('a session is found by its id until it expires; ids are opaque and new each time', async () => {
      const store = await open();
      const t = now();
      const { id, session } = await store.create('alice', ALICE_HASH, 60, t);
      const second = await store.create('alice', ALICE_HASH, 60, t);
      assert.match(id, /^[A-Za-z0-9_-]{43}$/);
      assert.notEqual(id, second.id);
      assert.deepEqual(session, { keyId: 'alice', keyHash: ALICE_HASH, createdAt: t, expiresAt: t + 60 });
      assert.deepEqual(store.find(id, t + 1), session);
      assert.equal(store.find(id, t + 60), undefined, 'expired at expiresAt');
      assert.equal(store.find('unknown', t), undefined);
    });

    test('sessions survive a restart; a deleted one does not', async () => {
      const store = await open();
      const t = now();
      const kept = await store.create('alice', ALICE_HASH, 600, t);
      const ended = await store.create('bob', BOB_HASH, 600, t);
      await store.delete(ended.id);
      await store.delete('never-existed');
      assert.equal(store.find(ended.id, t), undefined);
      const again = await reopen();
      assert.deepEqual(again.find(kept.id, t + 1), kept.session);
      assert.equal(again.find(ended.id, t + 1), undefined);
    });

    test(
      'sign-in and sign-out through one store reach another open on the same data',
      { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false },
      async () => {
        const withinMs = 'withinMs' in harness.sharedChanges ? harness.sharedChanges.withinMs : 0;
        const [writer, reader] = [await open(), await open()];
        const { id } = await writer.create('alice', ALICE_HASH, 600, now());
        await waitFor(() => reader.find(id, now()) !== undefined, withinMs, 'the new session');
        await writer.delete(id);
        await waitFor(() => reader.find(id, now()) === undefined, withinMs, 'the session ended');
        const [first, second] = [await writer.create('bob', BOB_HASH, 600, now()), await writer.create('bob', BOB_HASH, 600, now())];
        await waitFor(() => reader.find(second.id, now()) !== undefined, withinMs, 'the new sessions');
        await writer.deleteForKey('bob');
        await waitFor(() => reader.find(first.id, now()) === undefined && reader.find(second.id, now()) === undefined, withinMs, "the key's sessions ended");
      },
    );

    test("deleteForKey ends every session of that key, for good, and no other key's", async () => {
      const store = await open();
      const t = now();
      const alices = [await store.create('alice', ALICE_HASH, 600, t), await store.create('alice', ALICE_OLD_HASH, 600, t)];
      const bobs = await store.create('bob', BOB_HASH, 600, t);
      await store.deleteForKey('alice');
      await store.deleteForKey('nobody');
      for (const { id } of alices) assert.equal(store.find(id, t + 1), undefined);
      assert.deepEqual(store.find(bobs.id, t + 1), bobs.session);
      const again = await reopen();
      for (const { id } of alices) assert.equal(again.find(id, t + 1), undefined, 'still ended after a restart');
      assert.deepEqual(again.find(bobs.id, t + 1), bobs.session);
      const fresh = await again.create('alice', ALICE_HASH, 600, t + 2);
      assert.deepEqual(again.find(fresh.id, t + 3), fresh.session, 'the key can sign in again');
    });

    test(`a key holds at most ${MAX_SESSIONS_PER_KEY} sessions: each new one past that drops the oldest`, async () => {
      const store = await open();
      const t = now();
      const bobs = await store.create('bob', BOB_HASH, 600, t);
      const alices = [];
      for (let i = 0; i < MAX_SESSIONS_PER_KEY + 2; i += 1) alices.push(await store.create('alice', ALICE_HASH, 600, t + i));
      const at = t + MAX_SESSIONS_PER_KEY + 2;
      assert.equal(store.find(alices[0]!.id, at), undefined, 'the oldest was dropped');
      assert.equal(store.find(alices[1]!.id, at), undefined, 'then the next oldest');
      for (const { id, session } of alices.slice(2)) assert.deepEqual(store.find(id, at), session);
      assert.deepEqual(store.find(bobs.id, at), bobs.session, "another key's session stays");
      const again = await reopen();
      assert.equal(again.find(alices[1]!.id, at), undefined, 'still dropped after a restart');
      assert.equal(alices.slice(2).filter(({ id }) => again.find(id, at) !== undefined).length, MAX_SESSIONS_PER_KEY);
    });

    test('expired sessions do not count toward the cap', async () => {
      const store = await open();
      const t = now();
      const expiring = [];
      for (let i = 0; i < MAX_SESSIONS_PER_KEY; i += 1) expiring.push(await store.create('alice', ALICE_HASH, 10, t + i));
      const lasting = await store.create('alice', ALICE_HASH, 600, t + 0.5);
      const late = t + MAX_SESSIONS_PER_KEY + 10;
      const newest = await store.create('alice', ALICE_HASH, 600, late);
      assert.deepEqual(store.find(lasting.id, late), lasting.session, 'the oldest live session stays: the expired ones made room');
      assert.deepEqual(store.find(newest.id, late), newest.session);
    });
  });
}
