// The webhook attempt leases in Redis: a per-key cap shared by several holders, taken atomically, freed by release or by expiry, and a fallback while Redis is away.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { RedisDeliveryLeases, type RedisDeliveryLeasesOptions } from '../../src/store/redis/redis-delivery-leases.js';
import { freePort } from '../scale/servers.js';
import { deleteRedisKeys, redisUnavailable, testKeyPrefix, TEST_REDIS_URL } from './backends.js';

const unavailable = await redisUnavailable();
const CAP = 4;
const TTL_MS = 1000;
const prefixes: string[] = [];
const opened: RedisDeliveryLeases[] = [];
const newPrefix = (): string => {
  prefixes.push(testKeyPrefix());
  return prefixes.at(-1)!;
};
// Generous: these tests check the cap, not latency, and the CI machine may be busy.
const open = async (options: Partial<RedisDeliveryLeasesOptions> & { keyPrefix: string }): Promise<RedisDeliveryLeases> => {
  const leases = await RedisDeliveryLeases.open({ url: TEST_REDIS_URL, timeoutMs: 2000, ...options });
  opened.push(leases);
  return leases;
};
after(async () => {
  await Promise.all(opened.map((leases) => leases.close()));
  await Promise.all(prefixes.map((prefix) => deleteRedisKeys(prefix)));
});

describe('RedisDeliveryLeases', { skip: unavailable ?? false }, () => {
  test('a key gets at most the cap of leases; a released lease is free again; keys do not share a cap', async () => {
    const leases = await open({ keyPrefix: newPrefix() });
    const held = await Promise.all(Array.from({ length: CAP }, () => leases.take('key-a', CAP, TTL_MS * 60)));
    assert.ok(
      held.every((lease) => lease !== null),
      'the first 4 are taken',
    );
    assert.equal(await leases.take('key-a', CAP, TTL_MS * 60), null, 'a fifth is refused');
    assert.notEqual(await leases.take('key-b', CAP, TTL_MS * 60), null, 'another key has its own cap');

    held[0]!.release();
    held[0]!.release(); // twice frees one lease, not two
    assert.notEqual(await leases.take('key-a', CAP, TTL_MS * 60), null, 'the released lease is taken again');
    assert.equal(await leases.take('key-a', CAP, TTL_MS * 60), null, 'and no more');
  });

  test('the leases of a holder that stopped without giving them back expire by themselves', async () => {
    const prefix = newPrefix();
    let clock = 1_700_000_000_000;
    const crashed = await open({ keyPrefix: prefix, now: () => clock });
    for (let i = 0; i < CAP; i += 1) assert.notEqual(await crashed.take('key', CAP, TTL_MS), null);
    await crashed.close(); // gone, its leases never released

    const survivor = await open({ keyPrefix: prefix, now: () => clock });
    clock += TTL_MS - 1;
    assert.equal(await survivor.take('key', CAP, TTL_MS), null, 'the leases hold until they expire');
    clock += 1;
    const after = await Promise.all(Array.from({ length: CAP + 1 }, () => survivor.take('key', CAP, TTL_MS)));
    assert.equal(after.filter((lease) => lease !== null).length, CAP, 'once expired, the whole cap is free again, and no more');

    const probe = new Redis(TEST_REDIS_URL);
    try {
      const ttl = await probe.pttl(`${prefix}webhook-leases:key`);
      assert.ok(ttl > 0 && ttl <= TTL_MS, `the set itself expires with its leases (PTTL ${ttl})`);
    } finally {
      probe.disconnect();
    }
  });

  test('holders on separate connections taking at once get the cap exactly, never more', async () => {
    const prefix = newPrefix();
    const holders = await Promise.all(Array.from({ length: 3 }, () => open({ keyPrefix: prefix })));
    for (let round = 0; round < 5; round += 1) {
      const key = `busy-${round}`;
      const taken = await Promise.all(holders.flatMap((holder) => Array.from({ length: 20 }, () => holder.take(key, CAP, TTL_MS * 60))));
      assert.equal(taken.filter((lease) => lease !== null).length, CAP, `round ${round}: 60 takers at once, ${CAP} leases`);
    }
  });

  test('while Redis cannot be reached, a take resolves a lease that shares nothing, and the outage is logged once', async () => {
    const warnings: object[] = [];
    const log = { info: () => undefined, warn: (obj: object) => void warnings.push(obj) };
    const leases = await RedisDeliveryLeases.open({ url: `redis://127.0.0.1:${await freePort()}`, keyPrefix: newPrefix(), timeoutMs: 50, log });
    opened.push(leases);
    const taken = await Promise.all(Array.from({ length: CAP * 3 }, () => leases.take('key', CAP, TTL_MS)));
    assert.ok(
      taken.every((lease) => lease !== null),
      'no take is refused: the caller holds its own cap',
    );
    for (const lease of taken) lease!.release();
    assert.equal(warnings.filter((w) => (w as { event?: string }).event === 'webhook_cap_degraded').length, 1, JSON.stringify(warnings));
  });
});
