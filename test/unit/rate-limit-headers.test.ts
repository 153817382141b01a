// The rate-limit headers: whatever limits and windows follow one another, each answer's headers are its own window's.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { rateLimitHeaders } from '../../src/ratelimit/headers.js';

test('each result gets the headers of its own limit, count and window end, in any order of results', () => {
  const result = fc.record({
    allowed: fc.boolean(),
    limit: fc.integer({ min: 1, max: 10_000_000 }),
    remaining: fc.integer({ min: 0, max: 10_000_000 }),
    resetAt: fc.double({ min: 1.7e9, max: 2e9, noNaN: true }),
  });
  fc.assert(
    fc.property(fc.array(fc.tuple(result, fc.double({ min: 1.7e9, max: 2e9, noNaN: true })), { minLength: 1, maxLength: 8 }), (calls) => {
      for (const [hit, now] of calls) {
        const resetIn = Math.max(0, Math.ceil(hit.resetAt - now));
        assert.deepEqual(rateLimitHeaders(hit, now), {
          'x-ratelimit-limit': `${hit.limit}`,
          'x-ratelimit-remaining': `${hit.remaining}`,
          'x-ratelimit-reset': `${Math.ceil(hit.resetAt)}`,
          'ratelimit-policy': `"per-key";q=${hit.limit};w=3600`,
          ratelimit: `"per-key";r=${hit.remaining};t=${resetIn}`,
        });
      }
    }),
  );
});
