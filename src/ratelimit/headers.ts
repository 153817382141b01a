// The rate-limit response headers: the reference's X-RateLimit-* and the IETF draft's RateLimit-Policy / RateLimit.

import type { HitResult } from '../store/types.js';

export const WINDOW_SECONDS = 3600;

/**
 * Headers describing a key's window after this request. `RateLimit-Policy` and `RateLimit` follow
 * draft-ietf-httpapi-ratelimit-headers (structured fields: quota `q`, window `w`, remaining `r`, reset `t`).
 */
export function rateLimitHeaders(result: HitResult, now: number): Record<string, string> {
  const resetIn = Math.max(0, Math.ceil(result.resetAt - now));
  return {
    'x-ratelimit-limit': String(result.limit),
    'x-ratelimit-remaining': String(result.remaining),
    'x-ratelimit-reset': String(Math.ceil(result.resetAt)),
    'ratelimit-policy': `"per-key";q=${result.limit};w=${WINDOW_SECONDS}`,
    ratelimit: `"per-key";r=${result.remaining};t=${resetIn}`,
  };
}

/** Seconds until a refused key may try again (at least 1). */
export function retryAfterSeconds(result: HitResult, now: number): number {
  return Math.max(1, Math.ceil(result.resetAt - now));
}
