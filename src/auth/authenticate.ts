// Turns a request's credential into the key it belongs to, or the reason it is refused.

import type { IncomingMessage } from 'node:http';
import { GatewayError, invalidKey, keyDisabled, keyExpired } from '../errors.js';
import type { KeyRecord, KeyStore, SessionStore } from '../store/types.js';
import { hashApiKey, isWellFormedKey } from './api-key.js';
import { isBearerAuthorization, presentedCredential } from './credentials.js';
import { sessionIdOf } from './session-cookie.js';

/** Who is asking: no key at all, or a valid, active key presented in a header or through a session cookie. */
export type Caller = { kind: 'anonymous' } | { kind: 'key'; key: KeyRecord; via: 'header' | 'session'; sessionId?: string };

/**
 * Identifies the caller. A key in a header wins over a session cookie. A key that is presented must be
 * valid: a malformed, unknown or disabled key is refused, never treated as anonymous. Known and unknown
 * keys cost the same: one SHA-256 and one Map lookup. A session counts only while it has not expired
 * and its key still exists, is usable and accepts the secret it was signed in with; otherwise the
 * caller is anonymous.
 * @returns the caller, or the 401 error to answer with.
 */
export function identify(req: IncomingMessage, keys: KeyStore, sessions?: SessionStore): Caller | GatewayError {
  // Node keeps only the first of repeated Authorization headers; a repeated Bearer is malformed, as a repeated X-API-Key is.
  if (repeatsAuthorization(req.rawHeaders) && req.headersDistinct.authorization!.some(isBearerAuthorization)) return invalidKey();
  const credential = presentedCredential(req.headers);
  if (credential.kind === 'none') return sessions ? sessionCaller(req, keys, sessions) : { kind: 'anonymous' };
  if (credential.kind === 'malformed') return invalidKey();
  const key = keyOfPlaintext(credential.key, keys);
  return key instanceof GatewayError ? key : { kind: 'key', key, via: 'header' };
}

/** Whether a request's header lines give Authorization more than once: read without building `headersDistinct` for every request. */
function repeatsAuthorization(rawHeaders: readonly string[]): boolean {
  let seen = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization' && ++seen > 1) return true;
  }
  return false;
}

/**
 * Resolves a key by its plaintext, as `identify` does for a header, and for sign-in. A rotated-out
 * secret works until its grace period ends; a disabled or expired key is refused with its own code.
 */
export function keyOfPlaintext(plaintext: string, keys: KeyStore, now = Date.now() / 1000): KeyRecord | GatewayError {
  if (!isWellFormedKey(plaintext)) return invalidKey();
  const hash = hashApiKey(plaintext);
  const key = keys.findByHash(hash);
  if (!key) return invalidKey();
  if (!acceptsSecret(key, hash, now)) return invalidKey();
  return usableKeyError(key, now) ?? key;
}

/** Whether the key takes the secret of this hash now: its current one, or the rotated-out one during its grace period. */
export function acceptsSecret(key: KeyRecord, keyHash: string, now: number): boolean {
  if (key.key_hash === keyHash) return true;
  return key.previous_key_hash === keyHash && key.previous_key_valid_until !== null && key.previous_key_valid_until > now;
}

/** Why an existing key cannot be used right now (disabled, expired), or undefined when it can. */
export function usableKeyError(key: KeyRecord, now: number): GatewayError | undefined {
  if (!key.is_active) return keyDisabled();
  if (key.expires_at !== null && key.expires_at <= now) return keyExpired();
  return undefined;
}

/**
 * The key a session stands for. A session that has lost its key (deleted, disabled, expired, or no
 * longer taking the secret signed in with) is deleted, so that enabling the key again or clearing its
 * expiry does not bring it back.
 */
function sessionCaller(req: IncomingMessage, keys: KeyStore, sessions: SessionStore): Caller {
  const sessionId = sessionIdOf(req.headers);
  const now = Date.now() / 1000;
  const session = sessionId ? sessions.find(sessionId, now) : undefined;
  if (!sessionId || !session) return { kind: 'anonymous' };
  const key = keys.get(session.keyId);
  if (key && acceptsSecret(key, session.keyHash, now) && !usableKeyError(key, now)) return { kind: 'key', key, via: 'session', sessionId };
  // Ended either way: a failed delete leaves a session that the next use tries to delete again.
  sessions.delete(sessionId).catch(() => undefined);
  return { kind: 'anonymous' };
}
