// Reading key records from stored JSON: checks each field, and fills what files from older versions lack.

import { parsePolicy } from '../policy/schema.js';
import { KEY_QUOTA_FIELDS, MAX_KEY_QUOTA, type KeyQuotas, type KeyRecord, type PublicKeyRecord } from './types.js';

const HASH_PATTERN = /^[0-9a-f]{64}$/;

/**
 * Turns a stored value into a `KeyRecord`; returns a reason naming the field when one is missing or of
 * the wrong type (a key is never guessed active, or a user key, from a value that is not `true` or `"user"`).
 * Keys written by the reference implementation have no `role` (they become user keys), no expiry,
 * no display prefix and no rotation history; keys written before job quotas, prompt policies or webhooks existed have none (null).
 */
export function parseStoredKey(value: unknown): KeyRecord | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const v = value as Record<string, unknown>;
  if (typeof v.key_id !== 'string' || v.key_id.length === 0) return `key_id must be a non-empty string, not ${shown(v.key_id)}`;
  if (typeof v.key_hash !== 'string' || !HASH_PATTERN.test(v.key_hash)) return 'key_hash is not a SHA-256 hex digest';
  if (v.name != null && typeof v.name !== 'string') return `name must be a string, not ${shown(v.name)}`;
  if (!isTime(v.created_at)) return `created_at must be a number (Unix seconds), not ${shown(v.created_at)}`;
  if (v.last_used != null && !isTime(v.last_used)) return `last_used must be a number (Unix seconds) or null, not ${shown(v.last_used)}`;
  if (!Number.isSafeInteger(v.rate_limit) || (v.rate_limit as number) < 1) return `rate_limit must be a whole number of at least 1, not ${shown(v.rate_limit)}`;
  if (typeof v.is_active !== 'boolean') return `is_active must be true or false, not ${shown(v.is_active)}`;
  const metadata = v.metadata ?? {};
  if (typeof metadata !== 'object' || Array.isArray(metadata)) return `metadata must be an object, not ${shown(v.metadata)}`;
  if (v.role != null && v.role !== 'user' && v.role !== 'admin') return `role must be "user" or "admin", not ${shown(v.role)}`;
  if (v.expires_at != null && !isTime(v.expires_at)) return `expires_at must be a number (Unix seconds) or null, not ${shown(v.expires_at)}`;
  if (v.key_prefix != null && typeof v.key_prefix !== 'string') return `key_prefix must be a string or null, not ${shown(v.key_prefix)}`;
  if (v.previous_key_hash != null && (typeof v.previous_key_hash !== 'string' || !HASH_PATTERN.test(v.previous_key_hash)))
    return 'previous_key_hash is not a SHA-256 hex digest';
  if (v.previous_key_valid_until != null && !isTime(v.previous_key_valid_until))
    return `previous_key_valid_until must be a number (Unix seconds) or null, not ${shown(v.previous_key_valid_until)}`;
  for (const field of KEY_QUOTA_FIELDS) {
    if (v[field] != null && !isQuota(v[field])) return `${field} must be a whole number from 1 to ${MAX_KEY_QUOTA} or null, not ${shown(v[field])}`;
  }
  const policy = v.policy == null ? null : parsePolicy(v.policy);
  if (typeof policy === 'string') return policy;
  if (v.webhook_url != null && typeof v.webhook_url !== 'string') return `webhook_url must be a string or null, not ${shown(v.webhook_url)}`;
  return {
    key_id: v.key_id,
    name: typeof v.name === 'string' ? v.name : 'Unnamed Key',
    created_at: v.created_at,
    last_used: isTime(v.last_used) ? v.last_used : null,
    rate_limit: v.rate_limit as number,
    is_active: v.is_active,
    metadata: metadata as Record<string, unknown>,
    role: v.role === 'admin' ? 'admin' : 'user',
    expires_at: isTime(v.expires_at) ? v.expires_at : null,
    key_prefix: typeof v.key_prefix === 'string' ? v.key_prefix : null,
    key_hash: v.key_hash,
    previous_key_hash: typeof v.previous_key_hash === 'string' ? v.previous_key_hash : null,
    previous_key_valid_until: isTime(v.previous_key_valid_until) ? v.previous_key_valid_until : null,
    ...storedQuotas(v),
    policy,
    webhook_url: typeof v.webhook_url === 'string' ? v.webhook_url : null,
  };
}

/** A whole number from 1 to MAX_KEY_QUOTA: a valid job quota. */
export function isQuota(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= MAX_KEY_QUOTA;
}

/** The quota fields of a checked stored key, null where absent. */
function storedQuotas(v: Record<string, unknown>): KeyQuotas {
  const quota = (value: unknown): number | null => (isQuota(value) ? value : null);
  return { max_queued: quota(v.max_queued), max_running: quota(v.max_running), daily_execution_seconds: quota(v.daily_execution_seconds) };
}

/** A finite number (JSON's `1e999` parses to Infinity). */
function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** A stored value as a short piece of JSON for an error message. */
function shown(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/** The key object as clients see it, without the hashes. */
export function toPublicKey(record: KeyRecord): PublicKeyRecord {
  const { key_hash: _hash, previous_key_hash: _previous, ...visible } = record;
  return visible;
}
