// The real PostgreSQL and Redis the contract and scale suites run against: a fresh database per run, a key prefix per run.

import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import pg from 'pg';
import { PostgresDatabase } from '../../src/store/postgres/index.js';

/** The server the tests create their databases on (COMFY_GATE_TEST_POSTGRES_URL, else the local default). */
export const TEST_POSTGRES_URL = process.env.COMFY_GATE_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
/** The Redis the tests use under their own key prefix (COMFY_GATE_TEST_REDIS_URL, else the local default). */
export const TEST_REDIS_URL = process.env.COMFY_GATE_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

export interface FreshDatabase {
  /** URL of the new, empty database. */
  url: string;
  name: string;
  /** Drops the database (closing whatever still uses it). */
  drop(): Promise<void>;
}

/** Replaces the database name in a PostgreSQL URL. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** Runs one statement on the server's maintenance database. */
async function onServer(adminUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * Creates `comfy_gate_test_<random>` on the test server; resolves it, or `{ skip }` with the reason the
 * server cannot be used (it is printed, so a skipped run is never mistaken for a pass).
 */
export async function freshPostgresDatabase(adminUrl = TEST_POSTGRES_URL): Promise<FreshDatabase | { skip: string }> {
  const name = `comfy_gate_test_${randomBytes(6).toString('hex')}`;
  try {
    await onServer(adminUrl, `CREATE DATABASE ${name}`);
  } catch (error) {
    return skipped(
      `PostgreSQL is not reachable at ${redact(adminUrl)} (${(error as Error).message || (error as NodeJS.ErrnoException).code}); set COMFY_GATE_TEST_POSTGRES_URL or start it (.ci/run does)`,
    );
  }
  return {
    url: withDatabase(adminUrl, name),
    name,
    drop: () => onServer(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/**
 * A pool of one connection for a test's own queries on a fresh database. pool.end() resolves before its
 * idle connection has closed, so the drop's FORCE can end that connection first; the pool reports that
 * as an 'error' event, which without a listener would crash the test file.
 */
export function adminPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  pool.on('error', () => undefined);
  return pool;
}

export interface MigratedDatabase {
  url: string;
  /** A pool for the tests' own queries (`adminPool`). */
  admin: pg.Pool;
}

/**
 * A fresh database for the suites of one test file: migrated before the file's first test, dropped
 * after its last. Resolves `{ skip }` (with the reason) when PostgreSQL cannot be used.
 */
export async function migratedDatabaseForFile(): Promise<MigratedDatabase | { skip: string }> {
  const fresh = await freshPostgresDatabase();
  if ('skip' in fresh) return fresh;
  const admin = adminPool(fresh.url);
  before(async () => {
    await (await PostgresDatabase.open({ url: fresh.url })).close();
  });
  after(async () => {
    await admin.end();
    await fresh.drop();
  });
  return { url: fresh.url, admin };
}

/** Checks that Redis answers PING; resolves null when it does, else the reason (printed). */
export async function redisUnavailable(url = TEST_REDIS_URL): Promise<string | null> {
  const { Redis } = await import('ioredis');
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return null;
  } catch (error) {
    return skipped(`Redis is not reachable at ${redact(url)} (${(error as Error).message}); set COMFY_GATE_TEST_REDIS_URL or start it (.ci/run does)`).skip;
  } finally {
    client.disconnect();
  }
}

/** A key prefix no other run uses. */
export function testKeyPrefix(): string {
  return `comfy-gate-test:${randomBytes(6).toString('hex')}:`;
}

function skipped(reason: string): { skip: string } {
  console.log(`# SKIP ${reason}`);
  return { skip: reason };
}

function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

/** Deletes every key under `prefix` (a test's own), so runs leave nothing behind in a shared Redis. */
export async function deleteRedisKeys(prefix: string, url = TEST_REDIS_URL): Promise<void> {
  const { Redis } = await import('ioredis');
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await client.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } catch {
    // Nothing to clean when Redis is gone.
  } finally {
    client.disconnect();
  }
}
