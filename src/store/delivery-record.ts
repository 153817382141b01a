// Webhook delivery records: reading a stored delivery back with each field checked.

import { WEBHOOK_EVENTS, type DeliveryAttempt, type DeliveryState, type WebhookDelivery, type WebhookEvent } from './types.js';

const STATES: readonly DeliveryState[] = ['pending', 'delivered', 'failed'];

/** Turns a stored value into a `WebhookDelivery`; returns a reason naming the field when one is missing or of the wrong type. */
export function parseDelivery(value: unknown): WebhookDelivery | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const v = value as Record<string, unknown>;
  for (const field of ['id', 'job_id', 'key_id', 'url', 'body'] as const) if (typeof v[field] !== 'string') return `${field} must be a string`;
  if (!WEBHOOK_EVENTS.includes(v.event as WebhookEvent)) return `event must be one of ${WEBHOOK_EVENTS.join(', ')}`;
  if (!STATES.includes(v.state as DeliveryState)) return `state must be one of ${STATES.join(', ')}`;
  if (typeof v.created_at !== 'number') return 'created_at must be a number (Unix seconds)';
  if (v.next_attempt_at != null && typeof v.next_attempt_at !== 'number') return 'next_attempt_at must be a number or null';
  if (!Array.isArray(v.attempts) || !v.attempts.every(isAttempt)) return 'attempts must be a list of {at, status, error, duration_ms}';
  return {
    id: v.id as string,
    job_id: v.job_id as string,
    key_id: v.key_id as string,
    event: v.event as WebhookEvent,
    url: v.url as string,
    body: v.body as string,
    state: v.state as DeliveryState,
    created_at: v.created_at,
    next_attempt_at: (v.next_attempt_at as number | null | undefined) ?? null,
    attempts: v.attempts as DeliveryAttempt[],
  };
}

function isAttempt(value: unknown): value is DeliveryAttempt {
  const a = value as Partial<Record<keyof DeliveryAttempt, unknown>> | null;
  return (
    typeof a === 'object' &&
    a !== null &&
    typeof a.at === 'number' &&
    (a.status === null || typeof a.status === 'number') &&
    (a.error === null || typeof a.error === 'string') &&
    typeof a.duration_ms === 'number'
  );
}
