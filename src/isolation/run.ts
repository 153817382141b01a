// POST /api/gateway/run: admits a prompt as POST /prompt does, waits for its job to end, and answers with the job and its files.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { invalidRequest, upstreamUnavailable } from '../errors.js';
import type { JobWaiter } from '../jobs/job-waiter.js';
import { jobView } from '../jobs/jobs-api.js';
import { readJsonBody } from '../server/body.js';
import { sendJson } from '../server/respond.js';
import { ACTIVE_JOB_STATUSES, type JobRecord } from '../store/types.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { parseJsonOrUndefined, relayAnswer } from './json-body.js';
import { admitPrompt, MAX_PROMPT_BYTES } from './prompt.js';
import { cancelledInComfyUI } from './queue.js';
import { checkedWebhook, readWebhookFields, type WebhookRequest } from '../webhooks/job-webhook.js';

/** Seconds a run waits for its job when the body does not say. */
export const DEFAULT_RUN_WAIT_SECONDS = 60;
/** The longest wait a run may ask for, in seconds. */
export const MAX_RUN_WAIT_SECONDS = 600;
/** Largest output file sent inline (base64 in `data`). */
export const MAX_INLINE_FILE_BYTES = 4 * 1024 * 1024;
/** Largest sum of the files sent inline in one answer; files past it are left to their URL. */
export const MAX_INLINE_TOTAL_BYTES = 16 * 1024 * 1024;
/** How long the gateway waits for a backend to describe or send one output file. */
const FILE_TIMEOUT_MS = 30_000;

/** A run as its body asks for it. */
export interface RunRequest {
  prompt: Record<string, unknown>;
  waitSeconds: number;
  inline: boolean;
  cancelOnDisconnect: boolean;
  clientId: string | null;
  /** `webhook_url` and `webhook_events`, not yet checked against the gateway's settings; null for none. */
  webhook: WebhookRequest | null;
}

type Problem = { field: string; problem: string };

/**
 * Reads a run's body strictly: `prompt` (an object) is required; `wait` (seconds, 0 to 600), `inline`,
 * `cancel_on_disconnect` (booleans), `client_id` (a string), `webhook_url` and `webhook_events` (see
 * readWebhookFields) are optional; any other field is refused.
 * @throws GatewayError 400 INVALID_REQUEST listing every problem
 */
export function parseRunRequest(body: unknown): RunRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest('The body must be a JSON object with a prompt.', [{ field: 'body', problem: body === undefined ? 'empty' : 'not an object' }]);
  }
  const fields = body as Record<string, unknown>;
  const problems: Problem[] = [];
  const known = new Set(['prompt', 'wait', 'inline', 'cancel_on_disconnect', 'client_id', 'webhook_url', 'webhook_events']);
  for (const field of Object.keys(fields)) if (!known.has(field)) problems.push({ field: field.slice(0, 64), problem: 'unknown field' });
  const { prompt, wait, inline, cancel_on_disconnect: cancelOnDisconnect, client_id: clientId } = fields;
  if (typeof prompt !== 'object' || prompt === null || Array.isArray(prompt)) {
    problems.push({ field: 'prompt', problem: prompt === undefined ? 'missing' : 'not an object (the API-format graph)' });
  }
  if (wait !== undefined && (typeof wait !== 'number' || !Number.isFinite(wait) || wait < 0 || wait > MAX_RUN_WAIT_SECONDS)) {
    problems.push({ field: 'wait', problem: `not a number of seconds from 0 to ${MAX_RUN_WAIT_SECONDS}` });
  }
  if (inline !== undefined && typeof inline !== 'boolean') problems.push({ field: 'inline', problem: 'not a boolean' });
  if (cancelOnDisconnect !== undefined && typeof cancelOnDisconnect !== 'boolean') problems.push({ field: 'cancel_on_disconnect', problem: 'not a boolean' });
  if (clientId !== undefined && typeof clientId !== 'string') problems.push({ field: 'client_id', problem: 'not a string' });
  const webhook = readWebhookFields(fields, problems);
  if (problems.length > 0) throw invalidRequest('The run request is not valid.', problems);
  return {
    prompt: prompt as Record<string, unknown>,
    waitSeconds: (wait as number | undefined) ?? DEFAULT_RUN_WAIT_SECONDS,
    inline: inline === true,
    cancelOnDisconnect: cancelOnDisconnect === true,
    clientId: typeof clientId === 'string' && clientId !== '' ? clientId : null,
    webhook,
  };
}

/**
 * POST /api/gateway/run. The prompt is admitted exactly as POST /prompt admits it (quotas, fair queue,
 * file ownership, placement); a prompt ComfyUI refuses gets ComfyUI's answer. Then the job is waited
 * for in the registry: once it ended, 200 with the job (outputs with `content_type`, `size` and, with
 * `inline`, `data`); after `wait` seconds, 202 with the job and `Location`. A client that hangs up
 * leaves the job running, unless it asked for `cancel_on_disconnect`.
 */
export async function runPrompt(ctx: IsolationContext, waiter: JobWaiter, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const run = parseRunRequest(await readJsonBody(req, MAX_PROMPT_BYTES));
  const webhook = await checkedWebhook(run.webhook, ctx.webhooks);
  const body = { prompt: run.prompt, ...(run.clientId === null ? {} : { client_id: run.clientId }) };
  const answer = await admitPrompt(ctx, req, caller, body, Buffer.byteLength(JSON.stringify(body)), webhook);
  if (answer.status !== 200) return relayAnswer(res, answer);
  const id = (parseJsonOrUndefined(answer.body) as { prompt_id?: unknown } | undefined)?.prompt_id;
  const admitted = typeof id === 'string' ? ctx.jobs.jobs.get(id) : undefined;
  if (!admitted) throw upstreamUnavailable(new Error('ComfyUI accepted the prompt without a prompt_id the gateway knows'));
  const gone = new AbortController();
  const hungUp = (): void => {
    if (!res.writableFinished) gone.abort();
  };
  res.once('close', hungUp);
  // The client may have gone while the prompt was admitted.
  if (res.destroyed) hungUp();
  const ended = await waiter.wait(admitted.id, run.waitSeconds * 1000, gone.signal);
  res.off('close', hungUp);
  if (gone.signal.aborted) {
    if (run.cancelOnDisconnect) await cancelRun(ctx, caller, admitted.id);
    return;
  }
  if (!ended) {
    const location = `/api/gateway/jobs/${encodeURIComponent(admitted.id)}`;
    return sendJson(res, 202, jobView(ctx.jobs.jobs.get(admitted.id) ?? admitted, ctx.jobs), { location });
  }
  const view = jobView(ended, ctx.jobs);
  sendJson(res, 200, { ...view, outputs: await describeOutputs(ctx, caller, ended, view.outputs as Array<Record<string, unknown>>, run.inline) });
}

/**
 * Each output with its `content_type` and `size` as its backend's `/view` tells them (null when the
 * backend does not answer or no longer has the file) and, when inline, its `data` in base64: files up
 * to MAX_INLINE_FILE_BYTES, while the answer's inline files stay within MAX_INLINE_TOTAL_BYTES.
 */
async function describeOutputs(
  ctx: IsolationContext,
  caller: IsolatedCaller,
  job: JobRecord,
  outputs: Array<Record<string, unknown>>,
  inline: boolean,
): Promise<Array<Record<string, unknown>>> {
  const backend = ctx.pool.get(job.backend);
  let budget = MAX_INLINE_TOTAL_BYTES;
  const described: Array<Record<string, unknown>> = [];
  for (const output of outputs) {
    const path = `/api${String(output.url)}`;
    const head = await backend?.proxy.fetch(null, { method: 'HEAD', path, headers: caller.upstreamHeaders, timeoutMs: FILE_TIMEOUT_MS }).catch(() => undefined);
    const found = head?.status === 200;
    const length = found ? Number(head.headers['content-length']) : NaN;
    const size = Number.isSafeInteger(length) && length >= 0 ? length : null;
    const type = found ? head.headers['content-type'] : undefined;
    const file: Record<string, unknown> = { ...output, content_type: typeof type === 'string' ? type : null, size };
    const limit = Math.min(MAX_INLINE_FILE_BYTES, budget);
    if (inline && backend && size !== null && size <= limit) {
      const got = await backend.proxy
        .fetch(null, { method: 'GET', path, headers: caller.upstreamHeaders, timeoutMs: FILE_TIMEOUT_MS, maxBytes: limit })
        .catch(() => undefined);
      if (got?.status === 200) {
        file.data = got.body.toString('base64');
        budget -= got.body.length;
      }
    }
    described.push(file);
  }
  return described;
}

/** How long a job taken for sending may take to get ComfyUI's id before a cancel gives up on it. */
const SENDING_WAIT_MS = 5000;

/** The job, once ComfyUI has answered for it if it is being sent right now (queued without ComfyUI's id yet). */
async function withUpstreamId(ctx: IsolationContext, id: string): Promise<JobRecord | undefined> {
  const deadline = Date.now() + SENDING_WAIT_MS;
  let job = ctx.jobs.jobs.get(id);
  while (job?.status === 'queued' && job.upstream_id === null && Date.now() < deadline) {
    await sleep(50);
    job = ctx.jobs.jobs.get(id);
  }
  return job;
}

/**
 * Cancels a run's job whose client hung up: a held job in the gateway; a queued or running one on its
 * backend (deleted from ComfyUI's queue and interrupted if it runs), as POST /queue and /interrupt do.
 */
async function cancelRun(ctx: IsolationContext, caller: IsolatedCaller, id: string): Promise<void> {
  if (await ctx.jobs.cancelHeld(id)) return;
  const job = await withUpstreamId(ctx, id);
  const backend = job ? ctx.pool.get(job.backend) : undefined;
  if (!job?.upstream_id || !backend || !ACTIVE_JOB_STATUSES.includes(job.status)) return;
  const headers = { ...caller.upstreamHeaders, 'content-type': 'application/json' };
  await backend.proxy.fetch(null, { method: 'POST', path: '/api/queue', body: JSON.stringify({ delete: [job.upstream_id] }), headers });
  await backend.proxy.fetch(null, { method: 'POST', path: '/api/interrupt', body: JSON.stringify({ prompt_id: job.upstream_id }), headers });
  await cancelledInComfyUI(ctx, backend, [id]);
}
