// Webhook signatures and delivery ids: `Comfy-Gate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

import { createHash, createHmac } from 'node:crypto';
import type { WebhookEvent } from '../store/types.js';

/**
 * The `Comfy-Gate-Signature` header of a body sent at `t` (Unix seconds): the HMAC-SHA256, keyed with
 * the secret, of the text `<t>.<body>`, in hex.
 * @example signatureHeader('secret…', '{"id":"…"}', 1767225600) // 't=1767225600,v1=5d41…'
 */
export function signatureHeader(secret: string, body: string, t: number): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** The id of the delivery of one event of one job: the same each time it is enqueued, so it is enqueued once. */
export function deliveryIdOf(jobId: string, event: WebhookEvent): string {
  return `whd_${createHash('sha256').update(`${jobId}\n${event}`).digest('hex').slice(0, 32)}`;
}
