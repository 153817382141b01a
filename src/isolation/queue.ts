// /queue and /interrupt for isolated callers: others' queue items reduced to their place in line; only own prompts touched.

import { upstreamUnreadable } from '../errors.js';
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readJsonBody } from '../server/body.js';
import { heldNumber } from '../jobs/job-service.js';
import { heldBodyOf } from '../jobs/dispatch.js';
import type { JobRecord } from '../store/types.js';
import type { PoolBackend } from '../backends/backend-pool.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import { asKeyKnowsIt, backendOfPrompt, byBackend, jobOfUpstreamId, ownsPrompt, upstreamIdOf, type IsolatedCaller, type IsolationContext } from './context.js';
import { askEach, forwardToEach, oneAnswerOf, sendToEach } from './each-backend.js';
import { readClearOrDelete } from './history.js';
import { emptyOk, parseComfyJson, relayAnswer, relayJson } from './json-body.js';
import { redactQueueItem } from './redact.js';

type QueueItem = [number, string, unknown, unknown, unknown];
interface Queue {
  queue_running: QueueItem[];
  queue_pending: QueueItem[];
}

/** Held jobs listed in one /queue answer at most. */
const MAX_HELD_LISTED = 1000;

/** The key of the stand-ins for other keys' prompt ids: this process's own. */
const STAND_IN_KEY = randomBytes(32);

/**
 * What a caller sees in place of another key's prompt id: a UUID-shaped keyed hash of it, the same on
 * every poll (a page can follow its place in line) but telling nothing of the id, which could
 * otherwise be given as a new prompt's id once its claim has expired.
 */
function standInId(promptId: string): string {
  const hex = createHmac('sha256', STAND_IN_KEY).update(promptId).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * GET /queue: every backend's queue (running items first, then pending, backend after backend) with
 * the caller's items in full (secrets removed, as its key knows them) and others' as
 * `[number, stand-in id, {}, {}, []]` (see standInId); then the jobs the gateway holds as pending, the caller's own
 * (every key's for an admin). A backend that does not answer is left out while another does.
 */
export async function getQueue(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const answers = await askEach(ctx.pool.all, (backend) => backend.proxy.fetch(req, { headers: caller.upstreamHeaders }));
  const running: QueueItem[] = [];
  const pending: QueueItem[] = [];
  for (const { backend, value: answer } of answers) {
    if (answer.status !== 200) return relayAnswer(res, answer);
    const queue = parseComfyJson(answer.body) as Queue | undefined;
    if (!queue || !Array.isArray(queue.queue_running) || !Array.isArray(queue.queue_pending)) throw upstreamUnreadable();
    const visible = (item: QueueItem): QueueItem => {
      const job = jobOfUpstreamId(ctx, backend, item[1]);
      if (!ownsPrompt(ctx, caller, job?.id ?? item[1])) return [item[0], standInId(item[1]), {}, {}, []];
      asKeyKnowsIt(item, job);
      redactQueueItem(item);
      return item;
    };
    running.push(...queue.queue_running.map(visible));
    pending.push(...queue.queue_pending.map(visible));
  }
  const held = ctx.jobs.jobs.list({ keyId: caller.seesAll ? undefined : caller.key.key_id, statuses: ['held'], offset: 0, limit: MAX_HELD_LISTED });
  const heldItems = await Promise.all(held.reverse().map((job) => heldItem(ctx, job)));
  relayJson(res, answers[0]!.value, { queue_running: running, queue_pending: [...pending, ...heldItems] });
}

/** A held job as ComfyUI lists a pending prompt (its body parsed off the request thread when large, see heldBodyOf). */
async function heldItem(ctx: IsolationContext, job: JobRecord): Promise<QueueItem> {
  const body = await heldBodyOf(job, ctx.rewriter);
  const extraData = { ...(typeof body.extra_data === 'object' && body.extra_data !== null ? body.extra_data : {}) };
  const item: QueueItem = [heldNumber(job), job.id, body.prompt ?? {}, extraData, []];
  asKeyKnowsIt(item, job);
  redactQueueItem(item);
  return item;
}

/**
 * POST /queue `{clear, delete}`: a user key removes only its own pending prompts. Held jobs are
 * cancelled in the gateway; the others are deleted from ComfyUI's queue by the id it knows them by.
 */
export async function postQueue(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const body = await readClearOrDelete(req);
  let ids = (body.delete ?? []).filter((id) => ownsPrompt(ctx, caller, id));
  if (body.clear) {
    const queues = await askEach(ctx.pool.all, (backend) => readQueue(backend));
    const pending = queues
      .flatMap(({ backend, value: queue }) => (queue?.queue_pending ?? []).map((item) => jobOfUpstreamId(ctx, backend, item[1])?.id ?? item[1]))
      .filter((id) => ownsPrompt(ctx, caller, id));
    const held = ctx.jobs.jobs.list({ keyId: caller.seesAll ? undefined : caller.key.key_id, statuses: ['held'], offset: 0, limit: MAX_HELD_LISTED });
    ids = [...new Set([...ids, ...pending, ...held.map((job) => job.id)])];
  }
  const inComfyUI: string[] = [];
  for (const id of ids) if (!(await ctx.jobs.cancelHeld(id))) inComfyUI.push(id);
  if (inComfyUI.length === 0) return emptyOk(res);
  relayAnswer(res, oneAnswerOf(await cancelInComfyUI(ctx, req, caller, inComfyUI, 'delete')));
}

/**
 * Sends the request on to the backend of each of the prompts, with `{[field]: [the ids ComfyUI knows them by]}` as
 * its body (POST /queue's `delete`, POST /api/jobs/cancel's `job_ids`), records what ComfyUI dropped (see
 * settleCancelled) and resolves the backends' answers.
 */
export function cancelInComfyUI(
  ctx: IsolationContext,
  req: IncomingMessage,
  caller: IsolatedCaller,
  promptIds: readonly string[],
  field: 'delete' | 'job_ids',
): Promise<UpstreamAnswer[]> {
  return sendToEach(
    byBackend(ctx, promptIds),
    (backend, group) =>
      backend.proxy.fetch(req, {
        body: JSON.stringify({ [field]: group.map((id) => upstreamIdOf(ctx, id)) }),
        headers: { ...caller.upstreamHeaders, 'content-type': 'application/json' },
      }),
    settleCancelled(ctx),
  );
}

/**
 * What records a delete or cancel ComfyUI answered, for forwardToEach: after a 200, the jobs of the group ComfyUI
 * dropped from its queue are cancelled (see cancelledInComfyUI).
 */
export function settleCancelled(ctx: IsolationContext): (backend: PoolBackend, ids: readonly string[], answer: UpstreamAnswer) => Promise<void> {
  return async (backend, ids, answer) => {
    if (answer.status === 200) await cancelledInComfyUI(ctx, backend, ids);
  };
}

/** Notes the jobs ComfyUI dropped from its queue as cancelled (ComfyUI sends no event for them); a running one ends by its own event. */
export async function cancelledInComfyUI(ctx: IsolationContext, backend: PoolBackend, ids: readonly string[]): Promise<void> {
  const queue = await readQueue(backend);
  const stillThere = new Set([...(queue?.queue_running ?? []), ...(queue?.queue_pending ?? [])].map((item) => item[1]));
  for (const id of ids) {
    const job = ctx.jobs.jobs.get(id);
    if (job?.upstream_id && !stillThere.has(job.upstream_id)) await ctx.jobs.cancelledInComfyUI(job);
  }
}

/**
 * POST /interrupt: with a prompt_id, only the caller's own prompt, on its backend, and only while it
 * runs (see runsOn); without one, on
 * each backend, the running prompt only if it is the caller's (sent on as a targeted interrupt). A
 * held job is cancelled instead. Anything else is a no-op 200, as ComfyUI answers an interrupt for a
 * prompt that is not running.
 */
export async function postInterrupt(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const body = (await readJsonBody(req).catch(() => undefined)) as { prompt_id?: unknown } | undefined;
  const given = typeof body?.prompt_id === 'string' ? body.prompt_id : undefined;
  // Each prompt to interrupt with the backend it runs on.
  let targets: Array<[string, PoolBackend]>;
  if (given !== undefined) {
    targets = ownsPrompt(ctx, caller, given) ? [[given, backendOfPrompt(ctx, given)]] : [];
  } else {
    const queues = await askEach(ctx.pool.all, (backend) => readQueue(backend));
    targets = queues.flatMap(({ backend, value: queue }): Array<[string, PoolBackend]> => {
      const running = queue?.queue_running[0]?.[1];
      const id = running === undefined ? undefined : (jobOfUpstreamId(ctx, backend, running)?.id ?? running);
      return id !== undefined && ownsPrompt(ctx, caller, id) ? [[id, backend]] : [];
    });
  }
  const inComfyUI = new Map<PoolBackend, string>();
  for (const [id, backend] of targets) {
    if (await ctx.jobs.cancelHeld(id)) continue;
    // Checked last, just before it is sent on (see runsOn).
    if (runsOn(ctx, backend, id)) inComfyUI.set(backend, id);
  }
  if (inComfyUI.size === 0) return emptyOk(res);
  await forwardToEach(res, inComfyUI, (backend, id) =>
    backend.proxy.fetch(req, {
      body: JSON.stringify({ prompt_id: upstreamIdOf(ctx, id) }),
      headers: { ...caller.upstreamHeaders, 'content-type': 'application/json' },
    }),
  );
}

/**
 * Whether a prompt runs now, as its backend's latest events tell (the job registry records them a
 * moment later). ComfyUI releases before September 2025 interrupt whatever runs, whichever prompt_id they
 * are given: a prompt that is queued, or has just ended, is never sent on, or another key's prompt would
 * be stopped. What is left is the time an event takes to reach the gateway.
 */
function runsOn(ctx: IsolationContext, backend: PoolBackend, id: string): boolean {
  return backend.events.runningPrompt() === upstreamIdOf(ctx, id);
}

/** A backend's queue, asked on the gateway's own behalf. */
async function readQueue(backend: PoolBackend): Promise<Queue | undefined> {
  const answer = await backend.proxy.fetch(null, { method: 'GET', path: '/api/queue' });
  const queue = answer.status === 200 ? (parseComfyJson(answer.body) as Queue | undefined) : undefined;
  return queue && Array.isArray(queue.queue_running) && Array.isArray(queue.queue_pending) ? queue : undefined;
}
