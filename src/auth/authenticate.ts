// Turns a request's credential into the key it belongs to, or the reason it is refused.

import type { IncomingMessage } from 'node:http';
import { GatewayError, invalidKey, keyDisabled, keyExpired } from '../errors.js';
import type { KeyRecord, KeyStore, SessionStore } from '../store/types.js';
import { hashApiKey, isWellFormedKey } from './api-key.js';
import { isBearerAuthorization, presentedCredential } from './credentials.js';
import { sessionIdOf } from './session-cookie.js';

/** What a key caller authenticated with: the hash of the secret in its header, or the id of its browser session. */
export type Credential = { via: 'header'; keyHash: string } | { via: 'session'; sessionId: string };

/** Who is asking: no key at all, or a valid, active key presented in a header or through a session cookie. */
export type Caller = { kind: 'anonymous' } | { kind: 'key'; key: KeyRecord; credential: Credential };

/** Where `identify` looks a session cookie up: the session store, and whether the request came over HTTPS (the cookie's name depends on it). */
export interface SessionLookup {
  store: SessionStore;
  secure: boolean;
}

/**
 * Identifies the caller. A key in a header wins over a session cookie. A key that is presented must be
 * valid: a malformed, unknown or disabled key is refused, never treated as anonymous. Known and unknown
 * keys cost the same: one SHA-256 and one Map lookup. A session counts only while it has not expired
 * and its key still exists, is usable and accepts the secret it was signed in with; otherwise the
 * caller is anonymous, as it is when the request holds more than one session cookie (see `sessionIdOf`).
 * @returns the caller, or the 401 error to answer with.
 */
export function identify(req: IncomingMessage, keys: KeyStore, sessions?: SessionLookup): Caller | GatewayError {
  // Node keeps only the first of repeated Authorization headers; a repeated Bearer is malformed, as a repeated X-API-Key is.
  if (repeatsAuthorization(req.rawHeaders) && req.headersDistinct.authorization!.some(isBearerAuthorization)) return invalidKey();
  const credential = presentedCredential(req.headers);
  if (credential.kind === 'none') return sessions ? sessionCaller(req, keys, sessions) : { kind: 'anonymous' };
  if (credential.kind === 'malformed') return invalidKey();
  if (!isWellFormedKey(credential.key)) return invalidKey();
  const keyHash = hashApiKey(credential.key);
  const key = keyOfHash(keyHash, keys, Date.now() / 1000);
  return key instanceof GatewayError ? key : { kind: 'key', key, credential: { via: 'header', keyHash } };
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
  return isWellFormedKey(plaintext) ? keyOfHash(hashApiKey(plaintext), keys, now) : invalidKey();
}

/** Resolves a key by the hash of a secret, refusing it as `keyOfPlaintext` does. */
function keyOfHash(keyHash: string, keys: KeyStore, now: number): KeyRecord | GatewayError {
  const key = keys.findByHash(keyHash);
  if (!key || !acceptsSecret(key, keyHash, now)) return invalidKey();
  return usableKeyError(key, now) ?? key;
}

/** The key `keyId` while it exists, is usable and takes the secret of `keyHash`; otherwise undefined. */
function keyTakingSecret(keys: KeyStore, keyId: string, keyHash: string, now: number): KeyRecord | undefined {
  const key = keys.get(keyId);
  return key && acceptsSecret(key, keyHash, now) && !usableKeyError(key, now) ? key : undefined;
}

/**
 * The key `keyId` as a credential that authenticated it would find it now, by the checks a request
 * gets: the key exists, is usable and takes the secret (for a session: the session is live and its key
 * takes the secret signed in with); undefined when the credential no longer holds. Sockets opened with
 * the credential are checked with this for as long as they stay open.
 */
export function keyOfCredential(credential: Credential, keyId: string, keys: KeyStore, sessions: SessionStore, now: number): KeyRecord | undefined {
  if (credential.via === 'header') return keyTakingSecret(keys, keyId, credential.keyHash, now);
  const session = sessions.find(credential.sessionId, now);
  return session !== undefined && session.keyId === keyId ? keyTakingSecret(keys, keyId, session.keyHash, now) : undefined;
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
function sessionCaller(req: IncomingMessage, keys: KeyStore, { store: sessions, secure }: SessionLookup): Caller {
  const sessionId = sessionIdOf(req.headers, secure);
  const now = Date.now() / 1000;
  const session = sessionId ? sessions.find(sessionId, now) : undefined;
  if (!sessionId || !session) return { kind: 'anonymous' };
  const key = keyTakingSecret(keys, session.keyId, session.keyHash, now);
  if (key) return { kind: 'key', key, credential: { via: 'session', sessionId } };
  // Ended either way: a failed delete leaves a session that the next use tries to delete again.
  sessions.delete(sessionId).catch(() => undefined);
  return { kind: 'anonymous' };
}
