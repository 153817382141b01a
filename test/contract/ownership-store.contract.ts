// The OwnershipStore contract: first claim wins (also between stores on the same data), released claims, recent prompts, ComfyUI users, claims bounded by age, per key and in all.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClaimRetentionOptions } from '../../src/store/claim-retention.js';
import type { OwnershipStore } from '../../src/store/types.js';
import { isSkipped, lifecycle, waitFor, type HarnessOrSkip } from './harness.js';

/** The claim retention each store of the suite must be opened with: short, so that the suite can wait for it. */
export const CONTRACT_RETENTION = { retentionSeconds: 2, cap: 20, newestPromptsKept: 3, keyShare: 8 } satisfies ClaimRetentionOptions;

/** Runs the OwnershipStore contract against one adapter, whose stores are opened with `CONTRACT_RETENTION`. */
export function ownershipStoreContract(name: string, harness: HarnessOrSkip<OwnershipStore>): void {
  if (isSkipped(harness)) {
    describe(`${name} (OwnershipStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (OwnershipStore contract)`, () => {
    const { open, reopen } = lifecycle(harness);

    test('matches the interface', async () => {
      const store = await open();
      for (const method of ['open', 'ownerOf', 'claim', 'release', 'recentPrompts', 'markOutputsRecorded', 'comfyUserOf', 'setComfyUser', 'close'] as const) {
        assert.equal(typeof store[method], 'function', `${method} is a method`);
      }
    });

    test('the first claim wins; later claims resolve the owner; kinds are separate', async () => {
      const store = await open();
      assert.equal(store.ownerOf('prompt', 'p1'), undefined);
      assert.equal(await store.claim('prompt', 'p1', 'alice'), 'alice');
      assert.equal(await store.claim('prompt', 'p1', 'bob'), 'alice');
      assert.equal(store.ownerOf('prompt', 'p1'), 'alice');
      assert.equal(await store.claim('file', 'p1', 'bob'), 'bob', 'a file with the same id is another thing');
      assert.equal(await store.claim('client', 'c:1/weird id%', 'bob'), 'bob');
      const again = await reopen();
      assert.equal(again.ownerOf('prompt', 'p1'), 'alice');
      assert.equal(again.ownerOf('file', 'p1'), 'bob');
      assert.equal(again.ownerOf('client', 'c:1/weird id%'), 'bob');
    });

    test(
      'simultaneous claims through two stores on the same data agree on one owner',
      { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false },
      async () => {
        const [a, b] = [await open(), await open()];
        for (let round = 0; round < 5; round += 1) {
          const id = `race-${round}`;
          const owners = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).claim('client', id, `key${i}`)));
          assert.equal(new Set(owners).size, 1, `round ${round}: ${owners.join(',')}`);
        }
      },
    );

    test('file claims recorded before file ids were case-folded move to their folded id; of names that differ only by case the oldest keeps it', async () => {
      const store = await open();
      await store.claim('file', 'input//Bob-Photo.png', 'bob');
      await sleep(5);
      await store.claim('file', 'input//BOB-PHOTO.PNG', 'alice');
      await store.claim('file', 'output/Album/ComfyUI_00001_.png', 'bob');
      await store.claim('file', 'input//plain.png', 'carol');
      for (const opened of [await reopen(), await reopen()]) {
        assert.equal(opened.ownerOf('file', 'input//bob-photo.png'), 'bob');
        assert.equal(opened.ownerOf('file', 'input//Bob-Photo.png'), undefined, 'the id as recorded is gone');
        assert.equal(opened.ownerOf('file', 'input//BOB-PHOTO.PNG'), undefined);
        assert.equal(opened.ownerOf('file', 'output/album/comfyui_00001_.png'), 'bob');
        assert.equal(opened.ownerOf('file', 'input//plain.png'), 'carol');
        assert.equal(await opened.claim('file', 'input//bob-photo.png', 'alice'), 'bob');
      }
    });

    test("recent prompts are the key's own, newest first, with whether their outputs were recorded", async () => {
      const store = await open();
      for (const id of ['p1', 'p2', 'p3']) {
        await store.claim('prompt', id, 'alice');
        await sleep(5);
      }
      await store.claim('prompt', 'other', 'bob');
      await store.markOutputsRecorded('p2');
      await store.markOutputsRecorded('unknown');
      assert.deepEqual(store.recentPrompts('alice', 2), [
        { promptId: 'p3', outputsRecorded: false },
        { promptId: 'p2', outputsRecorded: true },
      ]);
      const again = await reopen();
      assert.deepEqual(
        again.recentPrompts('alice', 10).map((p) => [p.promptId, p.outputsRecorded]),
        [
          ['p3', false],
          ['p2', true],
          ['p1', false],
        ],
      );
      assert.deepEqual(again.recentPrompts('nobody', 10), []);
    });

    test('a released claim is gone for good; only its owner releases it', async () => {
      const store = await open();
      await store.claim('prompt', 'refused', 'alice');
      await store.claim('client', 'c-refused', 'alice');
      await store.release('prompt', 'refused', 'bob');
      assert.equal(store.ownerOf('prompt', 'refused'), 'alice', "another key's release changes nothing");
      await store.release('prompt', 'refused', 'alice');
      await store.release('client', 'c-refused', 'alice');
      await store.release('prompt', 'never-claimed', 'alice');
      assert.equal(store.ownerOf('prompt', 'refused'), undefined);
      assert.equal(store.ownerOf('client', 'c-refused'), undefined);
      assert.deepEqual(store.recentPrompts('alice', 10), []);
      const again = await reopen();
      assert.equal(again.ownerOf('prompt', 'refused'), undefined, 'after a restart');
      assert.equal(await again.claim('prompt', 'refused', 'bob'), 'bob', 'the id is free again');
    });

    test('claims are never pushed out by other keys: at the cap new ones are refused, though every key is within its share; only expired ones are forgotten', async () => {
      const { cap, retentionSeconds, newestPromptsKept, keyShare } = CONTRACT_RETENTION;
      /** The owner of claim `i`: three keys, none past its share. */
      const ownerOf = (i: number): string => ['alice', 'carol', 'dave'][i % 3]!;
      assert.ok(Math.ceil(cap / 3) < keyShare);
      const store = await open();
      await store.setComfyUser('alice', 'cg_alice');
      for (let i = 0; i < cap; i += 1) {
        await store.claim('prompt', `p${i}`, ownerOf(i));
        await store.claim('client', `c${i}`, ownerOf(i));
        await store.claim('file', `f${i}`, ownerOf(i));
        await sleep(2);
      }
      for (const kind of ['prompt', 'client'] as const) {
        await assert.rejects(store.claim(kind, 'one-more', 'bob'), { code: 'CLAIMS_FULL', status: 503 }, `${kind}: refused at the cap`);
        await assert.rejects(store.claim(kind, 'one-more', 'alice'), { code: 'CLAIMS_FULL', status: 503 }, `${kind}: refused to a key within its share`);
        assert.equal(store.ownerOf(kind, 'one-more'), undefined);
      }
      for (let i = 0; i < cap; i += 1)
        assert.ok(store.ownerOf('prompt', `p${i}`) === ownerOf(i) && store.ownerOf('client', `c${i}`) === ownerOf(i), `claim ${i} is kept`);
      assert.equal(await store.claim('prompt', 'p0', 'bob'), 'alice', 'a held claim still answers its owner');
      assert.equal(await store.claim('file', 'one-more', 'bob'), 'bob', 'file claims have no cap');
      await sleep(retentionSeconds * 1000 + 200);
      assert.equal(await store.claim('client', 'c1', 'carol'), 'carol', "the owner's use renews its clientId claim");
      const again = await reopen();
      assert.equal(await again.claim('prompt', 'new', 'bob'), 'bob', 'expired prompt claims make room');
      assert.equal(await again.claim('client', 'new', 'bob'), 'bob', 'expired clientId claims make room');
      const prompts = Array.from({ length: cap }, (_, i) => again.ownerOf('prompt', `p${i}`));
      assert.deepEqual(
        prompts.map((owner) => owner !== undefined),
        Array.from({ length: cap }, (_, i) => i >= cap - newestPromptsKept),
        'the newest prompts are kept, however old',
      );
      const clients = Array.from({ length: cap }, (_, i) => again.ownerOf('client', `c${i}`));
      assert.deepEqual(
        clients.map((owner) => owner !== undefined),
        Array.from({ length: cap }, (_, i) => i === 1),
        'only the renewed clientId claim is kept',
      );
      for (let i = 0; i < cap; i += 1) assert.equal(again.ownerOf('file', `f${i}`), ownerOf(i), `file f${i} is kept`);
      assert.equal(again.comfyUserOf('alice'), 'cg_alice', 'the ComfyUI user is kept');
      assert.deepEqual(
        again.recentPrompts('alice', cap).map((p) => p.promptId),
        prompts.flatMap((owner, i) => (owner === 'alice' ? [`p${i}`] : [])).reverse(),
        'recent prompts are the kept ones, newest first',
      );
    });

    test("a key past its share forgets its own oldest claims of that kind and keeps claiming, even at the cap; other keys' claims and the gateway's are kept", async () => {
      const { cap, keyShare } = CONTRACT_RETENTION;
      const extra = 4;
      const [store, other] = [await open(), await open()];
      const sharedChanges = harness.sharedChanges;
      /** Claims of `kind` by the gateway (past the share, for clientIds) or a third key, and by bob, both kept throughout. */
      const others = { prompt: { owner: 'carol', count: 4 }, client: { owner: ':gateway', count: keyShare + 1 } } as const;
      await Promise.all(Array.from({ length: keyShare + extra }, (_, i) => store.claim('file', `alice-${i}`, 'alice')));
      for (const kind of ['prompt', 'client'] as const) {
        await Promise.all(Array.from({ length: others[kind].count }, (_, i) => store.claim(kind, `${kind}-${others[kind].owner}-${i}`, others[kind].owner)));
        await Promise.all(Array.from({ length: 3 }, (_, i) => store.claim(kind, `${kind}-bob-${i}`, 'bob')));
        for (let i = 0; i < keyShare; i += 1) {
          await store.claim(kind, `${kind}-alice-${i}`, 'alice');
          await sleep(2);
        }
      }
      assert.equal(others.client.count + 3 + keyShare, cap, 'every clientId claim is held');
      await assert.rejects(store.claim('client', 'bob-one-more', 'bob'), { code: 'CLAIMS_FULL', status: 503 }, 'a key within its share is refused at the cap');
      await sleep(100);
      assert.equal(await store.claim('client', 'client-alice-0', 'alice'), 'alice', "the owner's use of its oldest clientId renews it");
      for (const kind of ['prompt', 'client'] as const) {
        for (let i = keyShare; i < keyShare + extra; i += 1) {
          assert.equal(await store.claim(kind, `${kind}-alice-${i}`, 'alice'), 'alice', `${kind} ${i}: past its share, alice still claims`);
          await sleep(2);
        }
      }
      /** Alice's claims of `kind` kept: her newest, and for clientIds the one renewed. */
      const kept = (kind: 'prompt' | 'client'): boolean[] =>
        Array.from({ length: keyShare + extra }, (_, i) => (kind === 'client' && i === 0) || i >= extra + (kind === 'client' ? 1 : 0));
      if (!('skip' in sharedChanges)) {
        await waitFor(() => other.ownerOf('client', 'client-alice-1') === undefined, sharedChanges.withinMs, 'the forgotten claim in another store');
        assert.equal(other.ownerOf('client', 'client-alice-0'), 'alice', 'the renewed claim is kept in another store');
      }
      for (const opened of [store, await reopen()]) {
        for (const kind of ['prompt', 'client'] as const) {
          assert.deepEqual(
            Array.from({ length: keyShare + extra }, (_, i) => opened.ownerOf(kind, `${kind}-alice-${i}`) === 'alice'),
            kept(kind),
            `${kind}: alice's oldest are forgotten, down to her share`,
          );
          for (let i = 0; i < others[kind].count; i += 1) assert.equal(opened.ownerOf(kind, `${kind}-${others[kind].owner}-${i}`), others[kind].owner);
          for (let i = 0; i < 3; i += 1) assert.equal(opened.ownerOf(kind, `${kind}-bob-${i}`), 'bob', `${kind}: bob's claims are kept`);
        }
        for (let i = 0; i < keyShare + extra; i += 1) assert.equal(opened.ownerOf('file', `alice-${i}`), 'alice', 'file claims are kept');
        assert.deepEqual(
          opened.recentPrompts('alice', 100).map((p) => p.promptId),
          Array.from({ length: keyShare }, (_, i) => `prompt-alice-${keyShare + extra - 1 - i}`),
          'her recent prompts are the kept ones',
        );
      }
      const again = await reopen();
      assert.equal(await again.claim('client', 'client-alice-1', 'alice'), 'alice', 'a forgotten clientId is claimed anew by its key, at the cap');
    });

    test('a key has one ComfyUI user, which can be replaced', async () => {
      const store = await open();
      assert.equal(store.comfyUserOf('alice'), undefined);
      await store.setComfyUser('alice', 'cg_alice_1');
      assert.equal(store.comfyUserOf('alice'), 'cg_alice_1');
      await store.setComfyUser('alice', 'cg_alice_2');
      const again = await reopen();
      assert.equal(again.comfyUserOf('alice'), 'cg_alice_2');
      assert.equal(again.comfyUserOf('bob'), undefined);
    });

    test(
      'claims made through one store reach another open on the same data',
      { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false },
      async () => {
        const withinMs = 'withinMs' in harness.sharedChanges ? harness.sharedChanges.withinMs : 0;
        const [writer, reader] = [await open(), await open()];
        await writer.claim('prompt', 'shared', 'alice');
        await writer.claim('file', `output/${'x'.repeat(9000)}.png`, 'alice');
        await writer.setComfyUser('alice', 'cg_alice');
        await waitFor(() => reader.ownerOf('prompt', 'shared') === 'alice', withinMs, 'the claimed prompt');
        await waitFor(() => reader.ownerOf('file', `output/${'x'.repeat(9000)}.png`) === 'alice', withinMs, 'a file id too long for a notification');
        await waitFor(() => reader.comfyUserOf('alice') === 'cg_alice', withinMs, 'the ComfyUI user');
        await writer.markOutputsRecorded('shared');
        await waitFor(() => reader.recentPrompts('alice', 1)[0]?.outputsRecorded === true, withinMs, 'outputs recorded');
        await writer.release('prompt', 'shared', 'alice');
        await waitFor(() => reader.ownerOf('prompt', 'shared') === undefined, withinMs, 'the released prompt');
      },
    );
  });
}
