// The CounterStore contract against Redis, each store under a key prefix of its own (or shared, for the replica test).

import { after } from 'node:test';
import { RedisCounterStore } from '../../src/store/redis/redis-counter-store.js';
import { deleteRedisKeys, redisUnavailable, testKeyPrefix, TEST_REDIS_URL } from './backends.js';
import { counterStoreContract } from './counter-store.contract.js';

const unavailable = await redisUnavailable();
const prefixes: string[] = [];
const newPrefix = (): string => {
  prefixes.push(testKeyPrefix());
  return prefixes.at(-1)!;
};
after(() => Promise.all(prefixes.map((prefix) => deleteRedisKeys(prefix))));
// Generous: the contract checks the window, not latency, and the CI machine may be busy.
const open = (keyPrefix: string, windowSeconds?: number): Promise<RedisCounterStore> =>
  RedisCounterStore.open({ url: TEST_REDIS_URL, keyPrefix, timeoutMs: 2000, failure: 'closed', ...(windowSeconds ? { windowSeconds } : {}) });

counterStoreContract(
  'RedisCounterStore',
  unavailable
    ? { skip: unavailable }
    : {
        open: (windowSeconds) => open(newPrefix(), windowSeconds),
        openShared: async (count) => {
          const prefix = newPrefix();
          return Promise.all(Array.from({ length: count }, () => open(prefix)));
        },
      },
);
