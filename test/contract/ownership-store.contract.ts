// The OwnershipStore contract: first claim wins (also between stores on the same data), recent prompts, ComfyUI users, bounded claims.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OwnershipStore } from '../../src/store/types.js';
import { isSkipped, lifecycle, waitFor, type HarnessOrSkip } from './harness.js';

/** Prompt and clientId claims each store of the suite keeps (it must be opened with this `claimsKept`). */
export const CONTRACT_CLAIMS_KEPT = 20;

/** Runs the OwnershipStore contract against one adapter, whose stores keep `CONTRACT_CLAIMS_KEPT` claims of each bounded kind. */
export function ownershipStoreContract(name: string, harness: HarnessOrSkip<OwnershipStore>): void {
  if (isSkipped(harness)) {
    describe(`${name} (OwnershipStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (OwnershipStore contract)`, () => {
    const { open, reopen } = lifecycle(harness);

    test('matches the interface', async () => {
      const store = await open();
      for (const method of ['open', 'ownerOf', 'claim', 'recentPrompts', 'markOutputsRecorded', 'comfyUserOf', 'setComfyUser', 'close'] as const) {
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

    test('simultaneous claims through two stores on the same data agree on one owner', { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false }, async () => {
      const [a, b] = [await open(), await open()];
      for (let round = 0; round < 5; round += 1) {
        const id = `race-${round}`;
        const owners = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).claim('client', id, `key${i}`)));
        assert.equal(new Set(owners).size, 1, `round ${round}: ${owners.join(',')}`);
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
      assert.deepEqual(again.recentPrompts('alice', 10).map((p) => [p.promptId, p.outputsRecorded]), [['p3', false], ['p2', true], ['p1', false]]);
      assert.deepEqual(again.recentPrompts('nobody', 10), []);
    });

    test('only the newest prompt and clientId claims are kept; files and ComfyUI users always are', async () => {
      const store = await open();
      await store.setComfyUser('alice', 'cg_alice');
      const total = CONTRACT_CLAIMS_KEPT * 2;
      for (let i = 0; i < total; i += 1) {
        await store.claim('prompt', `p${i}`, 'alice');
        await store.claim('client', `c${i}`, 'alice');
        await store.claim('file', `f${i}`, 'alice');
      }
      const check = (s: OwnershipStore, when: string): void => {
        for (const kind of ['prompt', 'client'] as const) {
          const kept = Array.from({ length: total }, (_, i) => s.ownerOf(kind, `${kind[0]}${i}`) !== undefined);
          const firstKept = kept.indexOf(true);
          assert.ok(kept.slice(firstKept).every(Boolean), `${when}: the ${kind} claims kept are the newest ones`);
          const count = total - firstKept;
          assert.ok(count >= CONTRACT_CLAIMS_KEPT && count <= CONTRACT_CLAIMS_KEPT * 1.1 + 1, `${when}: ${count} ${kind} claims kept`);
        }
        assert.equal(s.recentPrompts('alice', total).length, total - Array.from({ length: total }, (_, i) => s.ownerOf('prompt', `p${i}`)).indexOf('alice'), `${when}: recent prompts are the kept ones`);
        for (let i = 0; i < total; i += 1) assert.equal(s.ownerOf('file', `f${i}`), 'alice', `${when}: file f${i} is still owned`);
        assert.equal(s.comfyUserOf('alice'), 'cg_alice', `${when}: the ComfyUI user is kept`);
      };
      check(store, 'while open');
      const again = await reopen();
      check(again, 'after a restart');
      assert.equal(await again.claim('prompt', 'p0', 'bob'), 'bob', 'a forgotten prompt id can be claimed anew');
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

    test('claims made through one store reach another open on the same data', { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false }, async () => {
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
    });
  });
}
