// Turns a request's credential into the key it belongs to, or the reason it is refused.

import type { IncomingMessage } from 'node:http';
import { invalidKey, keyDisabled, type GatewayError } from '../errors.js';
import type { KeyRecord, KeyStore } from '../store/types.js';
import { hashApiKey, isWellFormedKey } from './api-key.js';
import { presentedCredential } from './credentials.js';

/** Who is asking: no key at all, or a valid, active key. */
export type Caller = { kind: 'anonymous' } | { kind: 'key'; key: KeyRecord };

/**
 * Identifies the caller. A key that is presented must be valid: a malformed, unknown or disabled key
 * is refused, never treated as anonymous. Known and unknown keys cost the same: one SHA-256 and one
 * Map lookup.
 * @returns the caller, or the 401 error to answer with.
 */
export function identify(req: IncomingMessage, keys: KeyStore): Caller | GatewayError {
  const credential = presentedCredential(req.headers);
  if (credential.kind === 'none') return { kind: 'anonymous' };
  if (credential.kind === 'malformed' || !isWellFormedKey(credential.key)) return invalidKey();
  const key = keys.findByHash(hashApiKey(credential.key));
  if (!key) return invalidKey();
  if (!key.is_active) return keyDisabled();
  return { kind: 'key', key };
}
