// Reads the API key a request presents, from `X-API-Key` or `Authorization: Bearer`.

import type { IncomingHttpHeaders } from 'node:http';

/** What a request presents: nothing, a key candidate, or headers that cannot be one key. */
export type PresentedCredential = { kind: 'none' } | { kind: 'key'; key: string } | { kind: 'malformed' };

const BEARER = /^Bearer +(\S+)$/i;

/**
 * Finds the key in `X-API-Key` or `Authorization: Bearer <key>`. Repeated or conflicting headers are
 * malformed rather than guessed at. An `Authorization` of another scheme (Basic …) is not a key.
 */
export function presentedCredential(headers: IncomingHttpHeaders): PresentedCredential {
  const headerKey = headers['x-api-key'];
  const authorization = headers.authorization;
  let bearer: string | undefined;
  if (authorization !== undefined) {
    const match = BEARER.exec(authorization);
    if (match) bearer = match[1];
    else if (/^Bearer\b/i.test(authorization)) return { kind: 'malformed' };
  }
  if (headerKey === undefined) return bearer === undefined ? { kind: 'none' } : { kind: 'key', key: bearer };
  if (typeof headerKey !== 'string' || headerKey.includes(',') || headerKey.length === 0) return { kind: 'malformed' };
  if (bearer !== undefined && bearer !== headerKey) return { kind: 'malformed' };
  return { kind: 'key', key: headerKey };
}

/** Whether an `Authorization` header carries one of our keys (and must not be forwarded upstream). */
export function isBearerAuthorization(value: string | undefined): boolean {
  return value !== undefined && /^Bearer\b/i.test(value);
}
