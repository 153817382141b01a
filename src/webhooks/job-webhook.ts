// The webhook a run asks for: `webhook_url` and `webhook_events` read from its body, then checked against the gateway's settings.

import { invalidRequest, webhooksDisabled } from '../errors.js';
import { checkOutboundUrl, OutboundUrlError } from '../net/outbound.js';
import { MAX_WEBHOOK_URL_LENGTH } from '../server/key-input.js';
import { DEFAULT_WEBHOOK_EVENTS, WEBHOOK_EVENTS, type JobWebhook, type KeyRecord, type WebhookEvent } from '../store/types.js';

/** What the gateway was started with, for webhooks. */
export interface WebhookSettings {
  /** True with `--webhook-secret`; without it, no webhook is sent. */
  enabled: boolean;
  /** `--webhook-allow-private`. */
  allowPrivate: boolean;
}

/** A run's webhook as its body gives it, not yet checked against the gateway's settings. */
export interface WebhookRequest {
  url: string;
  events: WebhookEvent[];
}

type Problem = { field: string; problem: string };

/**
 * Reads `webhook_url` (a string) and `webhook_events` (a non-empty list of distinct events; default
 * the job's end: job.succeeded, job.failed, job.cancelled) of a request body; pushes what is wrong with
 * them onto `problems`. Resolves null when the body names no webhook (`webhook_events` alone is a problem).
 */
export function readWebhookFields(fields: Record<string, unknown>, problems: Problem[]): WebhookRequest | null {
  const { webhook_url: url, webhook_events: events } = fields;
  if (url !== undefined && (typeof url !== 'string' || url === '' || url.length > MAX_WEBHOOK_URL_LENGTH)) {
    problems.push({ field: 'webhook_url', problem: `not an http(s) URL of at most ${MAX_WEBHOOK_URL_LENGTH} characters` });
  }
  if (events !== undefined) {
    const valid =
      Array.isArray(events) &&
      events.length > 0 &&
      events.every((event) => WEBHOOK_EVENTS.includes(event as WebhookEvent)) &&
      new Set(events).size === events.length;
    if (!valid) problems.push({ field: 'webhook_events', problem: `not a list of distinct events among ${WEBHOOK_EVENTS.join(', ')}` });
    else if (url === undefined) problems.push({ field: 'webhook_events', problem: 'given without webhook_url' });
  }
  if (typeof url !== 'string') return null;
  return { url, events: Array.isArray(events) ? (events as WebhookEvent[]) : [...DEFAULT_WEBHOOK_EVENTS] };
}

/**
 * The webhook a job gets from its request: refused without `--webhook-secret` (400 WEBHOOKS_DISABLED),
 * and for a URL that is not http(s) or (unless allowed) points to a loopback, private or link-local
 * address (400 INVALID_REQUEST naming webhook_url).
 */
export async function checkedWebhook(request: WebhookRequest | null, settings: WebhookSettings | undefined): Promise<JobWebhook | null> {
  if (request === null) return null;
  if (!settings?.enabled) throw webhooksDisabled();
  try {
    await checkOutboundUrl(request.url, settings.allowPrivate, '--webhook-allow-private');
  } catch (error) {
    if (!(error instanceof OutboundUrlError)) throw error;
    throw invalidRequest(`webhook_url ${error.message}.`, [{ field: 'webhook_url', problem: error.message }]);
  }
  return { url: request.url, events: request.events };
}

/** The webhook of a key's jobs that bring none of their own: its `webhook_url`, for the job's end, when webhooks are on. */
export function keyWebhook(key: KeyRecord, settings: WebhookSettings): JobWebhook | null {
  return settings.enabled && key.webhook_url !== null ? { url: key.webhook_url, events: [...DEFAULT_WEBHOOK_EVENTS] } : null;
}
