// Browser session ids: a new one for a cookie, and the SHA-256 under which a store keeps it (never the id itself).

import { createHash, randomBytes } from 'node:crypto';

/** A new session id: 32 random bytes, base64url (the cookie's value). */
export const newSessionId = (): string => randomBytes(32).toString('base64url');

/** What a store keeps in place of a session id, so that its files and rows hold no usable cookie. */
export const hashSessionId = (id: string): string => createHash('sha256').update(id).digest('hex');
