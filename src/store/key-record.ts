// Reading key records from stored JSON: checks each field, and fills what files from older versions lack.

import type { KeyRecord, PublicKeyRecord } from './types.js';

const HASH_PATTERN = /^[0-9a-f]{64}$/;

/**
 * Turns a stored value into a `KeyRecord`; returns a reason string when a field is missing or wrong.
 * Keys written by the reference implementation have no `role` (they become user keys), no expiry,
 * no display prefix and no rotation history.
 */
export function parseStoredKey(value: unknown): KeyRecord | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const v = value as Record<string, unknown>;
  if (typeof v.key_id !== 'string' || v.key_id.length === 0) return 'key_id is missing';
  if (typeof v.key_hash !== 'string' || !HASH_PATTERN.test(v.key_hash)) return 'key_hash is not a SHA-256 hex digest';
  if (typeof v.created_at !== 'number') return 'created_at is not a number';
  if (v.last_used !== null && v.last_used !== undefined && typeof v.last_used !== 'number') return 'last_used is not a number';
  if (typeof v.rate_limit !== 'number' || !(v.rate_limit > 0)) return 'rate_limit is not a positive number';
  if (v.expires_at !== null && v.expires_at !== undefined && typeof v.expires_at !== 'number') return 'expires_at is not a number';
  if (v.previous_key_hash != null && (typeof v.previous_key_hash !== 'string' || !HASH_PATTERN.test(v.previous_key_hash))) return 'previous_key_hash is not a SHA-256 hex digest';
  const metadata = v.metadata ?? {};
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) return 'metadata is not an object';
  return {
    key_id: v.key_id,
    name: typeof v.name === 'string' ? v.name : 'Unnamed Key',
    created_at: v.created_at,
    last_used: typeof v.last_used === 'number' ? v.last_used : null,
    rate_limit: Math.floor(v.rate_limit),
    is_active: v.is_active !== false,
    metadata: metadata as Record<string, unknown>,
    role: v.role === 'admin' ? 'admin' : 'user',
    expires_at: typeof v.expires_at === 'number' ? v.expires_at : null,
    key_prefix: typeof v.key_prefix === 'string' ? v.key_prefix : null,
    key_hash: v.key_hash,
    previous_key_hash: typeof v.previous_key_hash === 'string' ? v.previous_key_hash : null,
    previous_key_valid_until: typeof v.previous_key_valid_until === 'number' ? v.previous_key_valid_until : null,
  };
}

/** The key object as clients see it, without the hashes. */
export function toPublicKey(record: KeyRecord): PublicKeyRecord {
  const { key_hash: _hash, previous_key_hash: _previous, ...visible } = record;
  return visible;
}
