// The rate-limit response headers: the reference's X-RateLimit-* and the IETF draft's RateLimit-Policy / RateLimit.

import type { HitResult } from '../store/types.js';

export const WINDOW_SECONDS = 3600;

/** The last limit's `RateLimit-Policy` and the last window end's `X-RateLimit-Reset`: the same for request after request. */
const lastPolicy = { limit: Number.NaN, text: '' };
const lastReset = { resetAt: Number.NaN, text: '' };

/**
 * Headers describing a key's window after this request. `RateLimit-Policy` and `RateLimit` follow
 * draft-ietf-httpapi-ratelimit-headers (structured fields: quota `q`, window `w`, remaining `r`, reset `t`).
 * Values are joined, not concatenated: node checks each header value with a regular expression, which on a
 * string V8 built by concatenation takes its runtime path and copies the string first.
 */
export function rateLimitHeaders(result: HitResult, now: number): Record<string, string> {
  if (result.limit !== lastPolicy.limit) {
    lastPolicy.limit = result.limit;
    lastPolicy.text = ['"per-key";q=', result.limit, ';w=', WINDOW_SECONDS].join('');
  }
  if (result.resetAt !== lastReset.resetAt) {
    lastReset.resetAt = result.resetAt;
    lastReset.text = String(Math.ceil(result.resetAt));
  }
  const resetIn = Math.max(0, Math.ceil(result.resetAt - now));
  return {
    'x-ratelimit-limit': String(result.limit),
    'x-ratelimit-remaining': String(result.remaining),
    'x-ratelimit-reset': lastReset.text,
    'ratelimit-policy': lastPolicy.text,
    ratelimit: ['"per-key";r=', result.remaining, ';t=', resetIn].join(''),
  };
}

/** Seconds until a refused key may try again (at least 1). */
export function retryAfterSeconds(result: HitResult, now: number): number {
  return Math.max(1, Math.ceil(result.resetAt - now));
}
