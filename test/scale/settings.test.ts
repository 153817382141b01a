// The scale-out settings: database and Redis URLs, Redis timeout and failure mode, from flags and environment.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadServeConfig } from '../../src/config/load.js';

describe('scale-out settings', () => {
  test('defaults: JSON files, counters in memory, 50 ms Redis timeout, local fallback', () => {
    const config = loadServeConfig([], {});
    assert.equal(config.databaseUrl, null);
    assert.equal(config.redisUrl, null);
    assert.equal(config.redisKeyPrefix, 'comfy-gate:');
    assert.equal(config.redisTimeoutMs, 50);
    assert.equal(config.redisFailure, 'local');
  });

  test('flags, and environment variables under them', () => {
    const env = {
      COMFY_GATE_DATABASE_URL: 'postgres://env@db/comfy',
      COMFY_GATE_REDIS_URL: 'redis://env:6379',
      COMFY_GATE_REDIS_TIMEOUT: '80',
      COMFY_GATE_REDIS_FAILURE: 'open',
      COMFY_GATE_REDIS_KEY_PREFIX: 'env:',
    };
    const fromEnv = loadServeConfig([], env);
    assert.deepEqual(
      [fromEnv.databaseUrl, fromEnv.redisUrl, fromEnv.redisTimeoutMs, fromEnv.redisFailure, fromEnv.redisKeyPrefix],
      ['postgres://env@db/comfy', 'redis://env:6379', 80, 'open', 'env:'],
    );
    const fromFlags = loadServeConfig(
      [
        '--database-url',
        'postgresql://u:p@10.0.0.5:5432/gate',
        '--redis-url',
        'rediss://cache:6380/2',
        '--redis-timeout',
        '25',
        '--redis-failure',
        'closed',
        '--redis-key-prefix',
        'prod:gate:',
      ],
      env,
    );
    assert.deepEqual(
      [fromFlags.databaseUrl, fromFlags.redisUrl, fromFlags.redisTimeoutMs, fromFlags.redisFailure, fromFlags.redisKeyPrefix],
      ['postgresql://u:p@10.0.0.5:5432/gate', 'rediss://cache:6380/2', 25, 'closed', 'prod:gate:'],
    );
  });

  const bad: Array<[string, string[], RegExp]> = [
    ['a database URL of another scheme', ['--database-url', 'mysql://x/db'], /--database-url must start with postgres:\/\/ or postgresql:\/\//],
    ['a database URL that does not parse', ['--database-url', 'not a url'], /--database-url must be a URL/],
    ['a Redis URL of another scheme', ['--redis-url', 'http://x'], /--redis-url must start with redis:\/\/ or rediss:\/\//],
    ['a Redis timeout of 0', ['--redis-timeout', '0'], /--redis-timeout must be a whole number from 1 to 60000/],
    ['an unknown failure mode', ['--redis-failure', 'maybe'], /--redis-failure must be one of closed, open, local/],
    ['a key prefix with spaces', ['--redis-key-prefix', 'a b'], /--redis-key-prefix/],
  ];
  for (const [what, args, message] of bad) {
    test(`refuses ${what}`, () => {
      assert.throws(
        () => loadServeConfig(args, {}),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }

  test('a refused URL is not echoed (it may hold a password)', () => {
    assert.throws(
      () => loadServeConfig(['--database-url', 'postgres//user:hunter2@db'], {}),
      (error: unknown) => !(error as Error).message.includes('hunter2'),
    );
  });
});
