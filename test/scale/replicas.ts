// Helpers of the scale suites: several gateway processes on shared backends, timed requests, and polling until a replica agrees.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { TEST_REDIS_URL } from '../contract/backends.js';

/** The flags of a required-mode replica on the test database and the test Redis (or `redisUrl`) under `keyPrefix`, logging warnings only. */
export function sharedStoreArgs(databaseUrl: string, keyPrefix: string, redisUrl = TEST_REDIS_URL): string[] {
  return ['--require-api-auth', '--database-url', databaseUrl, '--redis-url', redisUrl, '--redis-key-prefix', keyPrefix, '--log-level', 'warn'];
}

/** Starts `count` gateways at once (they migrate the schema together); `stop` stops them and removes their folders. */
export async function startReplicas(
  count: number,
  upstream: string,
  args: (index: number) => string[],
): Promise<{ replicas: GatewayProcess[]; stop(): Promise<void> }> {
  const directories = await Promise.all(Array.from({ length: count }, () => tempUserDirectory()));
  const started = await Promise.allSettled(directories.map((directory, i) => startGateway({ upstream, userDirectory: directory.path, args: args(i) })));
  const replicas = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.all(replicas.map((gateway) => gateway.stop().catch(() => undefined)));
    await Promise.all(directories.map((directory) => directory.remove()));
  };
  const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { replicas, stop };
}

/** Sends a keyed GET and resolves the answer with how long it took. */
export async function timed(url: string, target: string, key: string): Promise<TestResponse & { ms: number }> {
  const started = performance.now();
  const res = await send(url, target, { key });
  return Object.assign(res, { ms: performance.now() - started });
}

/**
 * Reads `read` again and again until `done` accepts its value; resolves how many milliseconds after
 * `since` (a performance.now() time) that first accepted value arrived.
 */
export async function msUntil<T>(since: number, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number, what: string): Promise<number> {
  for (;;) {
    const value = await read();
    const elapsed = performance.now() - since;
    if (done(value)) return elapsed;
    if (elapsed > timeoutMs) assert.fail(`${what}: not seen after ${timeoutMs} ms (last: ${describe(value)})`);
    await sleep(2);
  }
}

function describe(value: unknown): string {
  const res = value as Partial<TestResponse> | null;
  if (res && typeof res.status === 'number' && typeof res.text === 'string') return `${res.status} ${res.text.slice(0, 200)}`;
  return JSON.stringify(value);
}

/** Resolves once every replica answers the admin's GET /api/keys/{id} with 200 (the key has reached it). */
export async function untilEveryReplicaKnows(replicas: GatewayProcess[], keyId: string, adminKey: string): Promise<void> {
  const since = performance.now();
  await Promise.all(
    replicas.map((gateway) =>
      msUntil(
        since,
        () => send(gateway.url, `/api/keys/${keyId}`, { key: adminKey }),
        (res) => res.status === 200,
        5000,
        `key ${keyId} on ${gateway.url}`,
      ),
    ),
  );
}

/** The nearest-rank percentile of some numbers. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Lines of a gateway's JSON log with this `event`. */
export function logEvents(gateway: GatewayProcess, event: string): number {
  return gateway
    .output()
    .stdout.split('\n')
    .filter((line) => line.includes(`"event":"${event}"`)).length;
}

/**
 * Lines of a gateway's JSON log with this `event`, once one has arrived or `timeoutMs` has passed. A
 * gateway writes its log asynchronously, so a line can reach the pipe after an answer that came later.
 */
export async function logEventsOnceSeen(gateway: GatewayProcess, event: string, timeoutMs = 5000): Promise<number> {
  const since = performance.now();
  while (logEvents(gateway, event) === 0 && performance.now() - since < timeoutMs) await sleep(10);
  return logEvents(gateway, event);
}
