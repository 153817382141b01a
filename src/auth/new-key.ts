// Creates a key: the record to store and the plaintext to show once. Shared by the HTTP API and the CLI.

import { DEFAULT_RATE_LIMIT } from '../config/schema.js';
import type { CreateKeyInput } from '../server/key-input.js';
import type { KeyRecord } from '../store/types.js';
import { generateApiKey, generateKeyId, hashApiKey } from './api-key.js';

export const DEFAULT_KEY_NAME = 'Unnamed Key';
export const KEY_CREATED_MESSAGE = "API key created. Save the api_key now: it won't be shown again.";

/** A new key's stored record and its plaintext, which exists only in this answer. */
export function newKey(input: CreateKeyInput, nowSeconds: number): { record: KeyRecord; apiKey: string } {
  const apiKey = generateApiKey();
  const record: KeyRecord = {
    key_id: generateKeyId(),
    name: input.name ?? DEFAULT_KEY_NAME,
    created_at: nowSeconds,
    last_used: null,
    rate_limit: input.rate_limit ?? DEFAULT_RATE_LIMIT,
    is_active: true,
    metadata: input.metadata ?? {},
    role: input.role ?? 'user',
    key_hash: hashApiKey(apiKey),
  };
  return { record, apiKey };
}

/** The answer to a key creation: the reference's fields plus `role`. */
export function createdKeyBody(record: KeyRecord, apiKey: string): Record<string, unknown> {
  return {
    key_id: record.key_id,
    api_key: apiKey,
    name: record.name,
    rate_limit: record.rate_limit,
    role: record.role,
    metadata: record.metadata,
    created_at: record.created_at,
    message: KEY_CREATED_MESSAGE,
  };
}
