// API keys: how a plaintext key and a key_id are made, what a well-formed key looks like, and its stored hash.

import { hash, randomBytes } from 'node:crypto';

/** `comfy_` then URL-safe base64 of at least 32 random bytes (43 characters for 32 bytes, as the reference made them). */
const KEY_PATTERN = /^comfy_[A-Za-z0-9_-]{43,128}$/;

/** Makes a new plaintext key: `comfy_` + 43 URL-safe characters (32 random bytes). */
export function generateApiKey(): string {
  return `comfy_${randomBytes(32).toString('base64url')}`;
}

/**
 * Makes a new key_id: 22 URL-safe characters (16 random bytes) that start with a letter or a digit, so
 * that no command line reads one as a flag and no spreadsheet as a formula (one in 32 would start with
 * `-` or `_`; those are drawn again).
 */
export function generateKeyId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (/^[A-Za-z0-9]/.test(id)) return id;
  }
}

/** Whether a presented string has the shape of a comfy-gate key (it may still be unknown). */
export function isWellFormedKey(candidate: string): boolean {
  return KEY_PATTERN.test(candidate);
}

/** The stored form of a key: lowercase hex SHA-256, unsalted, as the reference stored it. */
export function hashApiKey(plaintext: string): string {
  // One call, no Hash object: it runs on every keyed request.
  return hash('sha256', plaintext, 'hex');
}
