// The webhook retry schedule, delivery ids and signatures, and which job status is which event.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { eventOf } from '../../src/webhooks/outbox.js';
import { DEFAULT_RETRY_BASE_SECONDS, nextAttemptAt } from '../../src/webhooks/retry.js';
import type { KeyRecord } from '../../src/store/types.js';
import { deliveryIdOf, signatureHeader, signingSecret, signingSecretsOf } from '../../src/webhooks/signature.js';

describe('webhook retry schedule', () => {
  test('with the default base: 10 s, doubling, at most an hour apart, given up once a try would come after 24 hours', () => {
    const created = 1_000_000;
    const delays: number[] = [];
    let now = created;
    for (let failed = 1; ; failed += 1) {
      const next = nextAttemptAt(created, failed, now, DEFAULT_RETRY_BASE_SECONDS);
      if (next === null) break;
      delays.push(next - now);
      now = next;
    }
    assert.deepEqual(delays.slice(0, 10), [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]);
    assert.ok(
      delays.slice(9).every((delay) => delay === 3600),
      'capped at an hour',
    );
    assert.ok(now <= created + 86_400, 'no try after 24 hours');
    assert.ok(now + 3600 > created + 86_400, 'and none is left out before');
    assert.equal(delays.length, 31);
  });

  test('the whole schedule scales with the base', () => {
    assert.equal(nextAttemptAt(0, 1, 0, 0.2), 0.2);
    assert.equal(nextAttemptAt(0, 3, 5, 0.2), 5.8);
    assert.equal(nextAttemptAt(0, 40, 100, 0.2), 100 + 72, 'capped at 360 times the base');
    assert.equal(nextAttemptAt(0, 40, 1700, 0.2), null, 'given up past 8640 times the base');
  });
});

describe('delivery ids and signatures', () => {
  test('a delivery id depends on the job and the event only', () => {
    assert.equal(deliveryIdOf('job-1', 'job.succeeded'), deliveryIdOf('job-1', 'job.succeeded'));
    assert.match(deliveryIdOf('job-1', 'job.succeeded'), /^whd_[0-9a-f]{32}$/);
    assert.notEqual(deliveryIdOf('job-1', 'job.succeeded'), deliveryIdOf('job-1', 'job.started'));
    assert.notEqual(deliveryIdOf('job-1', 'job.succeeded'), deliveryIdOf('job-2', 'job.succeeded'));
  });

  test('the signature is the hex HMAC-SHA256 of "<t>.<body>", one v1 entry per secret', () => {
    const body = '{"id":"whd_1","type":"job.succeeded"}';
    const hmac = (secret: string): string => createHmac('sha256', secret).update(`1767225600.${body}`).digest('hex');
    assert.equal(signatureHeader(['whsec_a'], body, 1767225600), `t=1767225600,v1=${hmac('whsec_a')}`);
    assert.equal(signatureHeader(['whsec_a', 'whsec_b'], body, 1767225600), `t=1767225600,v1=${hmac('whsec_a')},v1=${hmac('whsec_b')}`);
    assert.notEqual(hmac('whsec_a'), hmac('whsec_b'));
  });

  test("a key's signing secret depends on the gateway's secret, the key_id and the key's current API key", () => {
    const secret = signingSecret('gateway-secret-0123', 'key-1', 'a'.repeat(64));
    assert.match(secret, /^whsec_[0-9a-f]{64}$/);
    assert.equal(signingSecret('gateway-secret-0123', 'key-1', 'a'.repeat(64)), secret, 'the same on every replica and run');
    for (const other of [
      signingSecret('gateway-secret-0124', 'key-1', 'a'.repeat(64)),
      signingSecret('gateway-secret-0123', 'key-2', 'a'.repeat(64)),
      signingSecret('gateway-secret-0123', 'key-1', 'b'.repeat(64)),
    ])
      assert.notEqual(other, secret);
  });

  test("a rotated-out API key's signing secret signs too, only while the old API key works", () => {
    const key = { key_id: 'key-1', key_hash: 'b'.repeat(64), previous_key_hash: 'a'.repeat(64), previous_key_valid_until: 1000 } as KeyRecord;
    const current = signingSecret('gateway-secret-0123', 'key-1', 'b'.repeat(64));
    const previous = signingSecret('gateway-secret-0123', 'key-1', 'a'.repeat(64));
    assert.deepEqual(signingSecretsOf('gateway-secret-0123', key, 999), [current, previous]);
    assert.deepEqual(signingSecretsOf('gateway-secret-0123', key, 1000), [current]);
    assert.deepEqual(signingSecretsOf('gateway-secret-0123', { ...key, previous_key_hash: null, previous_key_valid_until: null }, 0), [current]);
  });

  test('statuses and events', () => {
    assert.deepEqual((['held', 'queued', 'running', 'success', 'error', 'interrupted', 'cancelled'] as const).map(eventOf), [
      null,
      null,
      'job.started',
      'job.succeeded',
      'job.failed',
      'job.cancelled',
      'job.cancelled',
    ]);
  });
});
