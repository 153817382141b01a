// The WebhookDeliveryStore contract: ids enqueued once, due deliveries claimed by one holder at a time and shared among keys, claims given back, attempts recorded durably, pages newest first, retention.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClaimShares, DeliveryAttempt, DeliveryClaim, WebhookDelivery, WebhookDeliveryStore } from '../../src/store/types.js';
import { isSkipped, lifecycle, type HarnessOrSkip } from './harness.js';

/** The retention each store of the suite must be opened with: an hour, looked at every 50 ms. */
export const CONTRACT_DELIVERY_RETENTION = { retentionSeconds: 3600, sweepIntervalMs: 50 };

const NOW = Date.now() / 1000;

/** A pending delivery created `ago` seconds before the suite started, due then. */
function delivery(id: string, ago: number, fields: Partial<WebhookDelivery> = {}): WebhookDelivery {
  const at = NOW - ago;
  return {
    id,
    job_id: `job-of-${id}`,
    key_id: 'alice',
    event: 'job.succeeded',
    url: 'https://hooks.example.com/in',
    body: JSON.stringify({ id, type: 'job.succeeded', created: Math.floor(at), data: { job: { id: `job-of-${id}`, note: 'ünïcode ✓' } } }),
    state: 'pending',
    created_at: at,
    next_attempt_at: at,
    attempts: [],
    ...fields,
  };
}

const failure = (at: number): DeliveryAttempt => ({ at, status: 500, error: null, duration_ms: 12.5 });
const ids = (deliveries: WebhookDelivery[]): string[] => deliveries.map((d) => d.id);

/** Runs the contract against one adapter, whose stores are opened with `CONTRACT_DELIVERY_RETENTION`. */
export function webhookStoreContract(name: string, harness: HarnessOrSkip<WebhookDeliveryStore>): void {
  if (isSkipped(harness)) {
    describe(`${name} (WebhookDeliveryStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (WebhookDeliveryStore contract)`, () => {
    const { open, reopen } = lifecycle(harness);

    test('a delivery is enqueued once: a second enqueue of its id changes nothing; it is durable', async () => {
      const store = await open();
      const first = delivery('d1', 10);
      assert.equal(await store.enqueue(first), true);
      assert.equal(await store.enqueue(delivery('d1', 5, { url: 'https://other.example.com/' })), false);
      assert.deepEqual(await store.get('d1'), first);
      assert.deepEqual(await store.existing(['d1', 'd2']), new Set(['d1']));
      assert.equal(await store.get('d2'), undefined);
      const again = await reopen();
      assert.deepEqual(await again.get('d1'), first, 'the same after a restart');
    });

    test('claimDue hands out due pending deliveries, oldest due first, each to one holder until its lease ends', async () => {
      const store = await open();
      await store.enqueue(delivery('late', 5));
      await store.enqueue(delivery('early', 20));
      await store.enqueue(delivery('future', 30, { next_attempt_at: NOW + 600 }));
      await store.enqueue(delivery('done', 40, { state: 'delivered', next_attempt_at: null }));
      const claims = await store.claimDue(NOW, 10, 60);
      assert.deepEqual(
        claims.map((c) => c.delivery.id),
        ['early', 'late'],
      );
      assert.deepEqual(await store.claimDue(NOW + 30, 10, 60), [], 'leased deliveries are not handed out again');
      const later = await store.claimDue(NOW + 61, 1, 60);
      assert.deepEqual(
        later.map((c) => c.delivery.id),
        ['early'],
        'once the lease ran out, the delivery is due again, `limit` at a time',
      );
      assert.equal(await store.recordAttempt(claims[0]!, failure(NOW), { state: 'pending', next_attempt_at: NOW + 10 }), false, 'a lost claim records nothing');
      assert.equal(await store.recordAttempt(later[0]!, failure(NOW), { state: 'pending', next_attempt_at: NOW + 10 }), true);
      assert.equal((await store.get('early'))!.attempts.length, 1);
    });

    test('claimDue shares its room among keys: round robin by key, oldest due first within a key', async () => {
      const store = await open();
      for (let i = 0; i < 6; i += 1) await store.enqueue(delivery(`a${i}`, 100 - i, { key_id: 'a' }));
      await store.enqueue(delivery('b0', 50, { key_id: 'b' }));
      await store.enqueue(delivery('b1', 10, { key_id: 'b' }));
      await store.enqueue(delivery('c0', 5, { key_id: 'c' }));
      const claimed = async (limit: number, shares?: ClaimShares): Promise<string[]> =>
        (await store.claimDue(NOW, limit, 60, shares)).map((c) => c.delivery.id);
      assert.deepEqual(await claimed(4), ['a0', 'b0', 'c0', 'a1'], "each key's oldest, oldest first, then each key's next");
      assert.deepEqual(
        await claimed(3, { perKey: 10, held: new Map([['a', 2]]) }),
        ['b1', 'a2', 'a3'],
        'a key holding attempts already takes its turn after those holding fewer',
      );
      assert.deepEqual(await claimed(10), ['a4', 'a5'], 'with one key due, it takes the whole room');
    });

    test('claimDue with a per-key cap skips keys whose caller holds that many attempts, while others are due', async () => {
      const store = await open();
      for (let i = 0; i < 10; i += 1) await store.enqueue(delivery(`a${i}`, 100 - i, { key_id: 'a' }));
      for (let i = 0; i < 2; i += 1) await store.enqueue(delivery(`b${i}`, 10 - i, { key_id: 'b' }));
      const claimed = async (held: Array<[string, number]>): Promise<string[]> =>
        (await store.claimDue(NOW, 16, 60, { perKey: 4, held: new Map(held) })).map((c) => c.delivery.id);
      assert.deepEqual(await claimed([]), ['a0', 'b0', 'a1', 'b1', 'a2', 'a3'], 'at most 4 of a key, however much room is left');
      assert.deepEqual(await claimed([['a', 4]]), [], 'a key at its cap gets nothing, though it has due deliveries');
      assert.deepEqual(await claimed([['a', 1]]), ['a4', 'a5', 'a6'], 'a key gets what its cap leaves');
      await store.enqueue(delivery('c0', 1, { key_id: 'c' }));
      assert.deepEqual(await claimed([['a', 4]]), ['c0'], 'another key is served while the capped key waits');
    });

    test('a claim given back makes its delivery due again at once, unattempted; a lost claim gives back nothing', async () => {
      const store = await open();
      await store.enqueue(delivery('d1', 10));
      const [claim] = await store.claimDue(NOW, 10, 60);
      await store.releaseClaim(claim!);
      const [again] = await store.claimDue(NOW, 10, 60);
      assert.equal(again?.delivery.id, 'd1', 'claimed again before its lease would have run out');
      assert.deepEqual((await store.get('d1'))!.attempts, [], 'giving back records no attempt');
      await store.releaseClaim(claim!);
      assert.deepEqual(await store.claimDue(NOW, 10, 60), [], "an old claim's holder cannot free the new holder's claim");
      assert.equal(await store.recordAttempt(claim!, failure(NOW), { state: 'pending', next_attempt_at: NOW + 10 }), false, 'nor record with it');
      assert.equal(await store.recordAttempt(again!, failure(NOW), { state: 'pending', next_attempt_at: NOW + 10 }), true);
    });

    test('attempts are recorded in order with the state they lead to, durably', async () => {
      const store = await open();
      await store.enqueue(delivery('d1', 100));
      const [first] = await store.claimDue(NOW, 10, 60);
      assert.equal(await store.recordAttempt(first!, failure(NOW - 50), { state: 'pending', next_attempt_at: NOW - 40 }), true);
      const [second] = await store.claimDue(NOW, 10, 60);
      assert.ok(second, 'due again at next_attempt_at');
      const ok: DeliveryAttempt = { at: NOW - 30, status: 204, error: null, duration_ms: 3 };
      assert.equal(await store.recordAttempt(second, ok, { state: 'delivered', next_attempt_at: null }), true);
      assert.deepEqual(await store.claimDue(NOW + 3600, 10, 60), [], 'a delivered delivery is never due');
      const expected = { ...delivery('d1', 100), state: 'delivered', next_attempt_at: null, attempts: [failure(NOW - 50), ok] };
      assert.deepEqual(await store.get('d1'), expected);
      assert.deepEqual(await (await reopen()).get('d1'), expected, 'the same after a restart');
    });

    test('a restart frees every claim: pending deliveries are due again', async () => {
      const store = await open();
      await store.enqueue(delivery('d1', 10));
      assert.equal((await store.claimDue(NOW, 10, 1)).length, 1);
      const again = await reopen();
      const claims = await again.claimDue(NOW + 2, 10, 60);
      assert.deepEqual(
        claims.map((c) => c.delivery.id),
        ['d1'],
      );
    });

    test('list: newest first, filtered by job and state, paged with has_more', async () => {
      const store = await open();
      for (let i = 0; i < 6; i += 1) {
        await store.enqueue(
          delivery(`d${i}`, 100 - i, { job_id: i % 2 === 0 ? 'even' : 'odd', ...(i >= 4 ? { state: 'failed', next_attempt_at: null } : {}) }),
        );
      }
      const all = await store.list({ offset: 0, limit: 10 });
      assert.deepEqual(ids(all.deliveries), ['d5', 'd4', 'd3', 'd2', 'd1', 'd0']);
      assert.equal(all.hasMore, false);
      const page = await store.list({ offset: 1, limit: 2 });
      assert.deepEqual(ids(page.deliveries), ['d4', 'd3']);
      assert.equal(page.hasMore, true);
      const last = await store.list({ offset: 4, limit: 2 });
      assert.deepEqual(ids(last.deliveries), ['d1', 'd0']);
      assert.equal(last.hasMore, false);
      assert.deepEqual(ids((await store.list({ jobId: 'even', offset: 0, limit: 10 })).deliveries), ['d4', 'd2', 'd0']);
      assert.deepEqual(ids((await store.list({ state: 'failed', offset: 0, limit: 10 })).deliveries), ['d5', 'd4']);
      assert.deepEqual(ids((await store.list({ state: 'pending', jobId: 'odd', offset: 0, limit: 10 })).deliveries), ['d3', 'd1']);
      assert.deepEqual(ids((await store.list({ state: 'delivered', offset: 0, limit: 10 })).deliveries), []);
    });

    test('retention: delivered and failed deliveries older than it are forgotten; pending ones are kept', async () => {
      const store = await open();
      await store.enqueue(delivery('old-delivered', 7200, { state: 'delivered', next_attempt_at: null }));
      await store.enqueue(delivery('old-failed', 7200, { state: 'failed', next_attempt_at: null }));
      await store.enqueue(delivery('old-pending', 7200));
      await store.enqueue(delivery('recent', 60, { state: 'delivered', next_attempt_at: null }));
      const deadline = Date.now() + 5000;
      while ((await store.existing(['old-delivered', 'old-failed'])).size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(await store.existing(['old-delivered', 'old-failed', 'old-pending', 'recent']), new Set(['old-pending', 'recent']));
      const again = await reopen();
      assert.deepEqual(await again.existing(['old-delivered', 'old-failed', 'old-pending', 'recent']), new Set(['old-pending', 'recent']));
    });

    test(
      'replicas: two stores on the same data never hold the same delivery at once',
      { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false },
      async () => {
        const [a, b] = [await open(), await open()];
        for (let i = 0; i < 20; i += 1) await a.enqueue(delivery(`d${i}`, 100 - i));
        const [fromA, fromB] = await Promise.all([a.claimDue(NOW, 15, 60), b.claimDue(NOW, 15, 60)]);
        const taken = [...fromA, ...fromB].map((c) => c.delivery.id);
        assert.equal(taken.length, 20, 'every due delivery was handed out');
        assert.equal(new Set(taken).size, 20, 'to one store each');
        const claim = fromA[0]!;
        assert.equal(await b.recordAttempt({ ...claim, token: fromB[0]?.token ?? 'another' }, failure(NOW), { state: 'failed', next_attempt_at: null }), false);
        assert.equal(await a.recordAttempt(claim, failure(NOW), { state: 'failed', next_attempt_at: null }), true);
        assert.equal((await b.get(claim.delivery.id))!.state, 'failed');
      },
    );

    test(
      'replicas: each caps a key by the attempts it holds itself, and they never hold the same delivery',
      { skip: 'skip' in harness.sharedChanges ? harness.sharedChanges.skip : false },
      async () => {
        const [a, b] = [await open(), await open()];
        for (let i = 0; i < 12; i += 1) await a.enqueue(delivery(`a${i}`, 100 - i, { key_id: 'a' }));
        await a.enqueue(delivery('b0', 1, { key_id: 'b' }));
        const shares = { perKey: 4, held: new Map<string, number>() };
        const [fromA, fromB] = await Promise.all([a.claimDue(NOW, 16, 60, shares), b.claimDue(NOW, 16, 60, shares)]);
        const ofKeyA = (claims: DeliveryClaim[]): number => claims.filter((c) => c.delivery.key_id === 'a').length;
        assert.deepEqual([ofKeyA(fromA), ofKeyA(fromB)], [4, 4]);
        const taken = [...fromA, ...fromB].map((c) => c.delivery.id);
        assert.equal(new Set(taken).size, 9, 'to one store each, b0 included');
        assert.ok(taken.includes('b0'));
      },
    );
  });
}
