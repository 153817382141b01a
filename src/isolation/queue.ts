// /queue and /interrupt for isolated callers: others' queue items reduced to their place in line; only own prompts touched.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { readJsonBody } from '../server/body.js';
import { getUpstream, ownsPrompt, type IsolatedCaller, type IsolationContext } from './context.js';
import { readClearOrDelete } from './history.js';
import { emptyOk, parseJsonOrUndefined, relayAnswer, relayJson } from './json-body.js';
import { redactQueueItem } from './redact.js';

type QueueItem = [number, string, unknown, unknown, unknown];
interface Queue {
  queue_running: QueueItem[];
  queue_pending: QueueItem[];
}

/** GET /queue: the caller's items in full (secrets removed); others' as `[number, prompt_id, {}, {}, []]`. */
export async function getQueue(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const answer = await ctx.proxy.fetch(req, { headers: caller.upstreamHeaders });
  const queue = answer.status === 200 ? (parseJsonOrUndefined(answer.body) as Queue | undefined) : undefined;
  if (!queue || !Array.isArray(queue.queue_running) || !Array.isArray(queue.queue_pending)) return relayAnswer(res, answer);
  const visible = (item: QueueItem): QueueItem => {
    if (!ownsPrompt(ctx, caller, item[1])) return [item[0], item[1], {}, {}, []];
    redactQueueItem(item);
    return item;
  };
  relayJson(res, answer, { ...queue, queue_running: queue.queue_running.map(visible), queue_pending: queue.queue_pending.map(visible) });
}

/** POST /queue `{clear, delete}`: a user key removes only its own pending prompts. */
export async function postQueue(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const body = await readClearOrDelete(req);
  let ids = (body.delete ?? []).filter((id) => ownsPrompt(ctx, caller, id));
  if (body.clear) {
    const queue = await readQueue(ctx, req, caller);
    ids = [...new Set([...ids, ...(queue?.queue_pending ?? []).map((item) => item[1]).filter((id) => ownsPrompt(ctx, caller, id))])];
  }
  if (ids.length === 0) return emptyOk(res);
  await ctx.proxy.forward(req, res, { body: JSON.stringify({ delete: ids }), headers: { ...caller.upstreamHeaders, 'content-type': 'application/json' } });
}

/**
 * POST /interrupt: with a prompt_id, only the caller's own prompt; without one, the running prompt
 * only if it is the caller's (sent on as a targeted interrupt). Anything else is a no-op 200, as
 * ComfyUI answers an interrupt for a prompt that is not running.
 */
export async function postInterrupt(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const body = (await readJsonBody(req).catch(() => undefined)) as { prompt_id?: unknown } | undefined;
  let promptId = typeof body?.prompt_id === 'string' ? body.prompt_id : undefined;
  promptId ??= (await readQueue(ctx, req, caller))?.queue_running[0]?.[1];
  if (promptId === undefined || !ownsPrompt(ctx, caller, promptId)) return emptyOk(res);
  await ctx.proxy.forward(req, res, {
    body: JSON.stringify({ prompt_id: promptId }),
    headers: { ...caller.upstreamHeaders, 'content-type': 'application/json' },
  });
}

async function readQueue(ctx: IsolationContext, req: IncomingMessage, caller: IsolatedCaller): Promise<Queue | undefined> {
  const answer = await getUpstream(ctx, req, caller, '/api/queue');
  const queue = answer.status === 200 ? (parseJsonOrUndefined(answer.body) as Queue | undefined) : undefined;
  return queue && Array.isArray(queue.queue_running) && Array.isArray(queue.queue_pending) ? queue : undefined;
}
