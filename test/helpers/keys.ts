// Test shortcuts for creating keys through a running gateway.

import assert from 'node:assert/strict';
import { send } from './http-client.js';

export interface CreatedKey {
  key_id: string;
  api_key: string;
  role: string;
  rate_limit: number;
}

/** Creates a key via POST /api/keys (as `adminKey`, or as the local operator without one) and returns it. */
export async function createKey(gatewayUrl: string, body: Record<string, unknown> = {}, adminKey?: string): Promise<CreatedKey> {
  const res = await send(gatewayUrl, '/api/keys', { method: 'POST', body, ...(adminKey ? { key: adminKey } : {}) });
  assert.equal(res.status, 200, `key creation failed: ${res.text}`);
  return res.json<CreatedKey>();
}
