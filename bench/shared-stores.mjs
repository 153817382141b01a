// Puts a bench gateway on PostgreSQL and Redis, as replicas run: a database of its own (its keys migrated into it) and the Redis server; removed after.

import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';

/** The server the bench's databases are created on (a URL to its maintenance database), and the Redis server. */
export const POSTGRES_URL = process.env.COMFY_GATE_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.COMFY_GATE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Where the gateway keeps its rate-limit windows in Redis (its default prefix). */
const REDIS_WINDOWS = 'comfy-gate:window:';

let created = 0;

/** Runs a statement on the maintenance database. */
export async function onServer(statement) {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** Null when the PostgreSQL and Redis servers answer, else why not (a run without them skips what needs them). */
export async function sharedStoresUnavailable() {
  try {
    await onServer('SELECT 1');
  } catch (error) {
    return `PostgreSQL at ${new URL(POSTGRES_URL).host} does not answer (${error.message}); set COMFY_GATE_BENCH_POSTGRES_URL`;
  }
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await redis.connect();
    await redis.ping();
    return null;
  } catch (error) {
    return `Redis at ${new URL(REDIS_URL).host} does not answer (${error.message}); set COMFY_GATE_BENCH_REDIS_URL`;
  } finally {
    redis.disconnect();
  }
}

/**
 * Creates a database for the gateway of `checkout` whose user directory is `directory` (keys written
 * already), copies the directory into it with that checkout's `comfy-gate migrate`, and writes the URL
 * files. Resolves {flags, remove}: the gateway's flags for both stores, and what drops the database
 * and the keys' windows in Redis once the gateway has stopped.
 */
export async function useSharedStores(checkout, directory, keyIds) {
  const name = `comfy_gate_bench_${process.pid}_${(created += 1)}`;
  await onServer(`CREATE DATABASE ${name}`);
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  const cli = join(checkout, 'dist', 'src', 'cli', 'main.js');
  await promisify(execFile)(process.execPath, [cli, 'migrate', '--from-user-directory', directory, '--database-url', url.href]);
  const databaseFile = join(directory, 'bench-database-url');
  const redisFile = join(directory, 'bench-redis-url');
  writeFileSync(databaseFile, url.href, { mode: 0o600 });
  writeFileSync(redisFile, REDIS_URL, { mode: 0o600 });
  const remove = async () => {
    await onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    const redis = new Redis(REDIS_URL, { lazyConnect: true });
    await redis.connect();
    try {
      await redis.del(...keyIds.map((keyId) => `${REDIS_WINDOWS}${keyId}`));
    } finally {
      redis.disconnect();
    }
  };
  return { flags: ['--database-url-file', databaseFile, '--redis-url-file', redisFile], remove };
}
