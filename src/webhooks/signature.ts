// Webhook signatures and delivery ids: each key's signing secret, and `Comfy-Gate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

import { createHash, createHmac } from 'node:crypto';
import type { KeyRecord, WebhookEvent } from '../store/types.js';

/** What a signing secret starts with, so that it is recognised where it is pasted. */
const SIGNING_SECRET_PREFIX = 'whsec_';

/**
 * The secret a key's deliveries are signed with: an HMAC-SHA256 of the key's id and the hash of its
 * current API key, keyed with `--webhook-secret`. A receiver that holds it can check only that key's
 * deliveries, and forge none of another key's; rotating the key's API key gives it a new one.
 */
export function signingSecret(gatewaySecret: string, keyId: string, keyHash: string): string {
  return SIGNING_SECRET_PREFIX + createHmac('sha256', gatewaySecret).update(`comfy-gate webhook signing secret\n${keyId}\n${keyHash}`).digest('hex');
}

/**
 * The secrets a key's delivery is signed with now: the current one, then, while a rotated-out API key
 * still works (its grace period), the one it replaced, so that a receiver can be switched over too.
 */
export function signingSecretsOf(gatewaySecret: string, key: KeyRecord, now: number): string[] {
  const current = signingSecret(gatewaySecret, key.key_id, key.key_hash);
  const previousValid = key.previous_key_hash !== null && key.previous_key_valid_until !== null && key.previous_key_valid_until > now;
  return previousValid ? [current, signingSecret(gatewaySecret, key.key_id, key.previous_key_hash!)] : [current];
}

/**
 * The `Comfy-Gate-Signature` header of a body sent at `t` (Unix seconds): for each secret, the
 * HMAC-SHA256, keyed with it, of the text `<t>.<body>`, in hex, as a `v1` entry.
 * @example signatureHeader(['whsec_…'], '{"id":"…"}', 1767225600) // 't=1767225600,v1=5d41…'
 */
export function signatureHeader(secrets: readonly string[], body: string, t: number): string {
  const signatures = secrets.map((secret) => `,v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`);
  return `t=${t}${signatures.join('')}`;
}

/** The id of the delivery of one event of one job: the same each time it is enqueued, so it is enqueued once. */
export function deliveryIdOf(jobId: string, event: WebhookEvent): string {
  return `whd_${createHash('sha256').update(`${jobId}\n${event}`).digest('hex').slice(0, 32)}`;
}
