// One attempt of a webhook delivery: a signed POST to the job's URL, never to a private address unless allowed, redirects not followed.

import type { Agent } from 'undici';
import { request } from 'undici';
import { checkOutboundUrl } from '../net/outbound.js';
import type { DeliveryAttempt, WebhookDelivery } from '../store/types.js';
import { signatureHeader } from './signature.js';

/** How long one attempt may take, from connecting to the end of the answer. */
export const DELIVERY_TIMEOUT_MS = 10_000;

export interface SendOptions {
  /** The secrets of the delivery's key (signature.ts `signingSecretsOf`): one `v1` signature each. */
  signingSecrets: readonly string[];
  /** The connection pool for user-given URLs (outboundAgent). */
  agent: Agent;
  allowPrivate: boolean;
  /** Aborted when the gateway closes: the attempt is then not recorded. */
  signal: AbortSignal;
}

/**
 * POSTs the delivery's body with `content-type: application/json`, `user-agent: comfy-gate-webhook`,
 * `Comfy-Gate-Event`, `Comfy-Gate-Delivery` and `Comfy-Gate-Signature` (signed now), and resolves the
 * attempt: the answer's status (its body is read and dropped), or the error (a refused address, a
 * network error, or no answer within 10 s). A redirect is an answer like any other: it is not followed.
 */
export async function sendDelivery(delivery: WebhookDelivery, options: SendOptions): Promise<DeliveryAttempt> {
  const started = performance.now();
  const at = Date.now() / 1000;
  const finish = (status: number | null, error: string | null): DeliveryAttempt => ({
    at,
    status,
    error,
    duration_ms: Math.round((performance.now() - started) * 10) / 10,
  });
  try {
    // The URL was checked when it was given; this sees a setting changed since, and an address that is an IP literal.
    await checkOutboundUrl(delivery.url, options.allowPrivate, '--webhook-allow-private');
    const timeout = AbortSignal.timeout(DELIVERY_TIMEOUT_MS);
    const answer = await request(delivery.url, {
      method: 'POST',
      dispatcher: options.agent,
      headers: {
        'content-type': 'application/json',
        'user-agent': 'comfy-gate-webhook',
        'comfy-gate-event': delivery.event,
        'comfy-gate-delivery': delivery.id,
        'comfy-gate-signature': signatureHeader(options.signingSecrets, delivery.body, Math.floor(Date.now() / 1000)),
      },
      body: delivery.body,
      signal: AbortSignal.any([timeout, options.signal]),
    });
    await answer.body.dump({ limit: 64 * 1024, signal: AbortSignal.any([timeout, options.signal]) }).catch(() => undefined);
    return finish(answer.statusCode, null);
  } catch (error) {
    if (options.signal.aborted) throw error;
    return finish(null, describe(error));
  }
}

/** A short, safe description of why an attempt got no answer. */
function describe(error: unknown): string {
  const e = error as { name?: string; code?: string; message?: string };
  if (e.name === 'TimeoutError') return `no answer within ${DELIVERY_TIMEOUT_MS / 1000} s`;
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const text = [e.code ?? cause?.code, e.message ?? cause?.message].filter(Boolean).join(': ');
  return (text || 'the request failed').slice(0, 300);
}
