// Creates a key: the record to store and the plaintext to show once. Shared by the HTTP API and the CLI.

import { DEFAULT_RATE_LIMIT } from '../config/schema.js';
import type { CreateKeyInput } from '../server/key-input.js';
import type { KeyPatch, KeyRecord } from '../store/types.js';
import { generateApiKey, generateKeyId, hashApiKey } from './api-key.js';

export const DEFAULT_KEY_NAME = 'Unnamed Key';
export const KEY_CREATED_MESSAGE = "API key created. Save the api_key now: it won't be shown again.";

/** How many leading characters of a key are kept to recognise it: `comfy_` and 6 random ones. */
const PREFIX_LENGTH = 12;

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
    expires_at: input.expires_at ?? null,
    key_prefix: apiKey.slice(0, PREFIX_LENGTH),
    key_hash: hashApiKey(apiKey),
    previous_key_hash: null,
    previous_key_valid_until: null,
    max_queued: input.max_queued ?? null,
    max_running: input.max_running ?? null,
    daily_execution_seconds: input.daily_execution_seconds ?? null,
    policy: input.policy ?? null,
    webhook_url: input.webhook_url ?? null,
  };
  return { record, apiKey };
}

/**
 * A new secret for an existing key: the patch to store and the plaintext to show once. The old secret
 * keeps working for `graceSeconds` (0: not at all).
 */
export function rotatedKey(record: KeyRecord, graceSeconds: number, nowSeconds: number): { patch: KeyPatch; apiKey: string } {
  const apiKey = generateApiKey();
  const patch: KeyPatch = {
    key_hash: hashApiKey(apiKey),
    key_prefix: apiKey.slice(0, PREFIX_LENGTH),
    previous_key_hash: graceSeconds > 0 ? record.key_hash : null,
    previous_key_valid_until: graceSeconds > 0 ? nowSeconds + graceSeconds : null,
  };
  return { patch, apiKey };
}

/** The answer to a key creation: the reference's fields plus `role`, expiry, prefix, job quotas, prompt policy and webhook URL. */
export function createdKeyBody(record: KeyRecord, apiKey: string): Record<string, unknown> {
  return {
    key_id: record.key_id,
    api_key: apiKey,
    name: record.name,
    rate_limit: record.rate_limit,
    role: record.role,
    metadata: record.metadata,
    expires_at: record.expires_at,
    key_prefix: record.key_prefix,
    created_at: record.created_at,
    max_queued: record.max_queued,
    max_running: record.max_running,
    daily_execution_seconds: record.daily_execution_seconds,
    policy: record.policy,
    webhook_url: record.webhook_url,
    message: KEY_CREATED_MESSAGE,
  };
}

/** The audit details of a key creation (by the API or the CLI): its settings, never its secret. */
export function creationAuditDetails(record: KeyRecord): Record<string, unknown> {
  return {
    name: record.name,
    role: record.role,
    rate_limit: record.rate_limit,
    expires_at: record.expires_at,
    max_queued: record.max_queued,
    max_running: record.max_running,
    daily_execution_seconds: record.daily_execution_seconds,
    policy: record.policy,
    webhook_url: record.webhook_url,
  };
}
