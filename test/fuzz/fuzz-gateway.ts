// One gateway for a fuzz suite: a trivial upstream, a keep-alive client, and views of the store to compare.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { KeepAliveClient } from '../fault/keep-alive-client.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';

/** What the upstream answers to everything, so a forwarded request is told apart from a gateway answer. */
export const UPSTREAM_STATUS = 418;
export const UPSTREAM_BODY = 'from upstream';

/** A key as the listing shows it, with the fields the management API may set. */
export interface ListedKey {
  key_id: string;
  name: string;
  rate_limit: number;
  metadata: Record<string, unknown>;
  role: string;
  is_active: boolean;
  expires_at: number | null;
  max_queued: number | null;
  max_running: number | null;
  daily_execution_seconds: number | null;
}

export interface FuzzGateway {
  gateway: GatewayProcess;
  client: KeepAliveClient;
  /** Every key, by id, as GET /api/keys lists it. */
  listing(adminKey?: string): Promise<Map<string, ListedKey>>;
  /** The bytes of the key store's files (and the audit trail), to compare before and after. */
  storeBytes(): string;
  /** The gateway still runs and answers /healthz. */
  assertAlive(): Promise<void>;
  close(): Promise<void>;
}

const STORE_FILES = ['api_keys.json', 'api_keys.journal', 'audit.jsonl'];

export async function startFuzzGateway(args: string[]): Promise<FuzzGateway> {
  const upstream: Server = createServer((req, res) => {
    req.resume();
    res.writeHead(UPSTREAM_STATUS, { 'content-type': 'text/plain' }).end(UPSTREAM_BODY);
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const gateway = await startGateway({ upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, args: [...args, '--log-level', 'warn'] });
  const client = new KeepAliveClient(gateway.url, 32);
  return {
    gateway,
    client,
    async listing(adminKey) {
      const res = await client.send('/api/keys', adminKey ? { headers: { 'x-api-key': adminKey } } : {});
      assert.equal(res.status, 200, res.text);
      return new Map(res.json<{ keys: ListedKey[] }>().keys.map((key) => [key.key_id, key]));
    },
    storeBytes() {
      return STORE_FILES.map((file) => {
        try {
          return readFileSync(join(gateway.userDirectory, file), 'latin1');
        } catch {
          return '<none>';
        }
      }).join('\u0000');
    },
    async assertAlive() {
      assert.equal(gateway.child.exitCode, null, `the gateway exited:\n${gateway.output().stderr}`);
      assert.equal((await client.send('/healthz')).status, 200);
    },
    async close() {
      client.close();
      await gateway.stop();
      await new Promise<void>((resolve) => {
        upstream.closeAllConnections();
        upstream.close(() => resolve());
      });
    },
  };
}

/**
 * fast-check settings for a property: `numRuns` runs, the failure's own message in the report, and a
 * replay of one failure when FUZZ_SEED (and FUZZ_PATH) are set, as the report prints them.
 */
export function fuzzRuns(numRuns: number): { numRuns: number; includeErrorInReport: true; seed?: number; path?: string } {
  const seed = process.env.FUZZ_SEED;
  return { numRuns, includeErrorInReport: true, ...(seed ? { seed: Number(seed), ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}) } : {}) };
}

/** A batch of 1 to `size` inputs, sent at once; a failure shrinks to the fewest that still fail. */
export const batchOf = <T>(arbitrary: fc.Arbitrary<T>, size: number) => fc.array(arbitrary, { minLength: 1, maxLength: size, size: 'max' });
