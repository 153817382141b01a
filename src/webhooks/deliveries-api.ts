// The admin API of webhook deliveries: GET /api/gateway/webhooks/deliveries and /api/gateway/webhooks/deliveries/{id}.

import type { ServerResponse } from 'node:http';
import { deliveryNotFound, invalidRequest } from '../errors.js';
import { wholeNumber } from '../jobs/jobs-api.js';
import { sendJson } from '../server/respond.js';
import type { DeliveryState, WebhookDelivery, WebhookDeliveryStore } from '../store/types.js';

const STATES: readonly DeliveryState[] = ['pending', 'delivered', 'failed'];
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;
const MAX_OFFSET = 100_000;

/** A delivery in a listing: everything but its body and attempts, with how many attempts there were and the last. */
function summary(delivery: WebhookDelivery): Record<string, unknown> {
  const { body: _body, attempts, ...fields } = delivery;
  return { ...fields, attempt_count: attempts.length, last_attempt: attempts.at(-1) ?? null };
}

/**
 * GET /api/gateway/webhooks/deliveries: newest first; `job_id` and `state` (pending, delivered, failed)
 * filter; `limit` (1–500, default 50) and `offset` page. The answer says whether more follow
 * (`has_more`) rather than counting them all, so a page costs about its own size.
 */
export async function listDeliveries(res: ServerResponse, query: URLSearchParams, store: WebhookDeliveryStore): Promise<void> {
  const state = query.get('state');
  if (state !== null && !STATES.includes(state as DeliveryState)) {
    throw invalidRequest(`state must be one of ${STATES.join(', ')}.`, [{ field: 'state', problem: `got ${JSON.stringify(state.slice(0, 40))}` }]);
  }
  const jobId = query.get('job_id');
  const limit = wholeNumber(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT);
  const offset = wholeNumber(query, 'offset', 0, 0, MAX_OFFSET);
  const page = await store.list({ ...(jobId ? { jobId } : {}), ...(state ? { state: state as DeliveryState } : {}), offset, limit });
  sendJson(res, 200, { deliveries: page.deliveries.map(summary), pagination: { offset, limit, has_more: page.hasMore } });
}

/** GET /api/gateway/webhooks/deliveries/{id}: the delivery with every attempt and the body it sends; 404 DELIVERY_NOT_FOUND. */
export async function getDelivery(res: ServerResponse, id: string, store: WebhookDeliveryStore): Promise<void> {
  const delivery = await store.get(id);
  if (!delivery) throw deliveryNotFound();
  const { body, ...fields } = delivery;
  sendJson(res, 200, { ...fields, payload: JSON.parse(body) as unknown });
}
