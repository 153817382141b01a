// POST /api/gateway/run: admits a prompt as POST /prompt does, waits for its job to end, and answers with the job and its files.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { invalidRequest, upstreamUnavailable } from '../errors.js';
import type { PromptOrigin } from '../policy/check.js';
import type { Reservation } from '../jobs/job-service.js';
import type { JobWaiter } from '../jobs/job-waiter.js';
import { interruptIfRunning } from '../jobs/interrupt.js';
import { jobView } from '../jobs/jobs-api.js';
import { jsonNumber, stringifyExactJson } from '../json/exact-json.js';
import { readJsonBody } from '../server/body.js';
import { sendJson, watchClientGone } from '../server/respond.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import { ACTIVE_JOB_STATUSES, type JobRecord } from '../store/types.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { fileId } from './files.js';
import { parseComfyJson, relayAnswer } from './json-body.js';
import { admitPrompt, checkPromptAdmissible, MAX_PROMPT_BYTES } from './prompt.js';
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
/** How long an ended run's answer may go without the client reading any of it before the connection is closed. */
export const STALLED_ANSWER_MS = 30_000;

/** How a run waits and answers, as its body asks: the fields every run body takes besides what it runs. */
export interface RunOptions {
  waitSeconds: number;
  inline: boolean;
  cancelOnDisconnect: boolean;
  clientId: string | null;
  /** `webhook_url` and `webhook_events`, not yet checked against the gateway's settings; null for none. */
  webhook: WebhookRequest | null;
}

/** A run as its body asks for it. */
export interface RunRequest extends RunOptions {
  prompt: Record<string, unknown>;
}

/** One thing wrong with a request body. */
export type Problem = { field: string; problem: string };

/** The fields every run body takes (POST /api/gateway/run and a workflow's run), read by parseRunOptions. */
export const RUN_OPTION_FIELDS: readonly string[] = ['wait', 'inline', 'cancel_on_disconnect', 'client_id', 'webhook_url', 'webhook_events'];

/**
 * Reads the fields every run body takes: `wait` (seconds, 0 to 600), `inline`, `cancel_on_disconnect`
 * (booleans), `client_id` (a string), `webhook_url` and `webhook_events` (see readWebhookFields), each optional. Adds each problem to `problems`.
 */
export function parseRunOptions(fields: Record<string, unknown>, problems: Problem[]): RunOptions {
  const { inline, cancel_on_disconnect: cancelOnDisconnect, client_id: clientId } = fields;
  const wait = jsonNumber(fields.wait);
  if (fields.wait !== undefined && (wait === undefined || !Number.isFinite(wait) || wait < 0 || wait > MAX_RUN_WAIT_SECONDS)) {
    problems.push({ field: 'wait', problem: `not a number of seconds from 0 to ${MAX_RUN_WAIT_SECONDS}` });
  }
  if (inline !== undefined && typeof inline !== 'boolean') problems.push({ field: 'inline', problem: 'not a boolean' });
  if (cancelOnDisconnect !== undefined && typeof cancelOnDisconnect !== 'boolean') problems.push({ field: 'cancel_on_disconnect', problem: 'not a boolean' });
  if (clientId !== undefined && typeof clientId !== 'string') problems.push({ field: 'client_id', problem: 'not a string' });
  return {
    waitSeconds: wait ?? DEFAULT_RUN_WAIT_SECONDS,
    inline: inline === true,
    cancelOnDisconnect: cancelOnDisconnect === true,
    clientId: typeof clientId === 'string' && clientId !== '' ? clientId : null,
    webhook: readWebhookFields(fields, problems),
  };
}

/** Adds an `unknown field` problem for each field of `fields` that is not in `known`. */
export function unknownFields(fields: Record<string, unknown>, known: readonly string[], problems: Problem[]): void {
  for (const field of Object.keys(fields)) if (!known.includes(field)) problems.push({ field: field.slice(0, 64), problem: 'unknown field' });
}

/**
 * Reads a run's body strictly: `prompt` (an object) is required, with the run options (see
 * parseRunOptions); any other field is refused.
 * @throws GatewayError 400 INVALID_REQUEST listing every problem
 */
export function parseRunRequest(body: unknown): RunRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest('The body must be a JSON object with a prompt.', [{ field: 'body', problem: body === undefined ? 'empty' : 'not an object' }]);
  }
  const fields = body as Record<string, unknown>;
  const problems: Problem[] = [];
  unknownFields(fields, ['prompt', ...RUN_OPTION_FIELDS], problems);
  const { prompt } = fields;
  if (typeof prompt !== 'object' || prompt === null || Array.isArray(prompt)) {
    problems.push({ field: 'prompt', problem: prompt === undefined ? 'missing' : 'not an object (the API-format graph)' });
  }
  const options = parseRunOptions(fields, problems);
  if (problems.length > 0) throw invalidRequest('The run request is not valid.', problems);
  return { prompt: prompt as Record<string, unknown>, ...options };
}

/**
 * POST /api/gateway/run: reads the body (see parseRunRequest) and runs its prompt (see answerRun).
 */
export async function runPrompt(ctx: IsolationContext, waiter: JobWaiter, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const run = parseRunRequest(await readJsonBody(req, MAX_PROMPT_BYTES, (text) => ctx.rewriter.parseBody(text)));
  await answerRun(ctx, waiter, req, res, caller, run, run.prompt);
}

/** How a run ended for its client: refused by ComfyUI, its client gone, still running after `wait`, or ended. */
export type RunOutcome =
  | { kind: 'refused'; answer: UpstreamAnswer }
  | { kind: 'gone' }
  | { kind: 'waiting'; job: Record<string, unknown>; location: string }
  | { kind: 'ended'; job: Record<string, unknown> & { status: JobRecord['status']; outputs: Array<Record<string, unknown>> } };

/**
 * Runs a prompt to its end, or for `wait` seconds: the prompt is admitted exactly as POST /prompt
 * admits it (quotas, fair queue, file ownership, placement, the key's prompt policy; `origin` says
 * whether it is a registered workflow's; `reservation` is the place checkRunFirst kept for it), then the
 * job is waited for in the registry. An ended job
 * comes with its outputs described (`content_type`, `size` and, with `inline`, `data`). A client that
 * hangs up leaves the job running, unless it asked for `cancel_on_disconnect`.
 */
export async function runToEnd(
  ctx: IsolationContext,
  waiter: JobWaiter,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  run: RunOptions,
  prompt: Record<string, unknown>,
  origin: PromptOrigin = {},
  reservation: Reservation | null = null,
): Promise<RunOutcome> {
  const webhook = await checkedWebhook(run.webhook, ctx.webhooks);
  const body = runBody(run, prompt);
  const answer = await admitPrompt(ctx, req, caller, body, Buffer.byteLength(stringifyExactJson(body)), origin, webhook, reservation);
  if (answer.status !== 200) return { kind: 'refused', answer };
  const id = (parseComfyJson(answer.body) as { prompt_id?: unknown } | undefined)?.prompt_id;
  const admitted = typeof id === 'string' ? ctx.jobs.jobs.get(id) : undefined;
  if (!admitted) throw upstreamUnavailable(new Error('ComfyUI accepted the prompt without a prompt_id the gateway knows'));
  // The client may have gone while the prompt was admitted: the signal is then aborted already.
  const gone = watchClientGone(res);
  const ended = await waiter.wait(admitted.id, run.waitSeconds * 1000, gone.signal);
  gone.stop();
  if (gone.signal.aborted) {
    if (run.cancelOnDisconnect) await cancelRun(ctx, caller, admitted.id);
    return { kind: 'gone' };
  }
  if (!ended) {
    const location = `/api/gateway/jobs/${encodeURIComponent(admitted.id)}`;
    return { kind: 'waiting', job: jobView(ctx.jobs.jobs.get(admitted.id) ?? admitted, ctx.jobs, caller.seesAll), location };
  }
  const view = jobView(ended, ctx.jobs, caller.seesAll);
  const outputs = await describeOutputs(ctx, caller, ended, view.outputs as Array<Record<string, unknown>>, run.inline);
  // The answer may hold megabytes of inline files: a client that stops reading is let go, and the answer freed.
  res.setTimeout(STALLED_ANSWER_MS, () => res.destroy());
  return { kind: 'ended', job: { ...view, status: ended.status, outputs } };
}

/**
 * Refuses a run before anything is stored for it (a workflow run's image inputs) when its prompt would
 * be refused for its webhook, its key's prompt policy or its quotas; runToEnd checks them all again on
 * the prompt it sends. Resolves the place kept among the key's jobs meanwhile (see
 * checkPromptAdmissible): pass it to runToEnd, and let go of it (JobService.release) however the run ends.
 * @throws GatewayError 400 for the webhook (see checkedWebhook), and as checkPromptAdmissible
 */
export async function checkRunFirst(
  ctx: IsolationContext,
  caller: IsolatedCaller,
  run: RunOptions,
  prompt: Record<string, unknown>,
  origin: PromptOrigin,
): Promise<Reservation> {
  await checkedWebhook(run.webhook, ctx.webhooks);
  return checkPromptAdmissible(ctx, caller, runBody(run, prompt), origin);
}

/** The POST /prompt body of a run's prompt. */
function runBody(run: RunOptions, prompt: Record<string, unknown>): Record<string, unknown> {
  return { prompt, ...(run.clientId === null ? {} : { client_id: run.clientId }) };
}

/**
 * Runs a prompt (see runToEnd) and answers as POST /api/gateway/run does: ComfyUI's refusal as it is;
 * 200 with the ended job; 202 with the job and `Location` when it did not end within `wait`.
 */
export async function answerRun(
  ctx: IsolationContext,
  waiter: JobWaiter,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  run: RunOptions,
  prompt: Record<string, unknown>,
  origin: PromptOrigin = {},
  reservation: Reservation | null = null,
): Promise<void> {
  const outcome = await runToEnd(ctx, waiter, req, res, caller, run, prompt, origin, reservation);
  if (outcome.kind === 'refused') return relayAnswer(res, outcome.answer);
  if (outcome.kind === 'waiting') return sendJson(res, 202, outcome.job, { location: outcome.location });
  if (outcome.kind === 'ended') sendJson(res, 200, outcome.job);
}

/**
 * Each output with its `content_type` and `size` as its backend's `/view` tells them (null when the
 * backend does not answer or no longer has the file) and, when inline, its `data` in base64: files up
 * to MAX_INLINE_FILE_BYTES, while the answer's inline files stay within MAX_INLINE_TOTAL_BYTES. For a
 * user key, a file it does not own (as `/view` would refuse it) is described with nulls and no data.
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
    const { type, subfolder, filename } = output as { type: string; subfolder: string; filename: string };
    if (!caller.seesAll && ctx.ownership.ownerOf('file', fileId(type, subfolder, filename)) !== caller.key.key_id) {
      described.push({ ...output, content_type: null, size: null });
      continue;
    }
    const head = await backend?.proxy.fetch(null, { method: 'HEAD', path, headers: caller.upstreamHeaders, timeoutMs: FILE_TIMEOUT_MS }).catch(() => undefined);
    const found = head?.status === 200;
    const length = found ? Number(head.headers['content-length']) : NaN;
    const size = Number.isSafeInteger(length) && length >= 0 ? length : null;
    const contentType = found ? head.headers['content-type'] : undefined;
    const file: Record<string, unknown> = { ...output, content_type: typeof contentType === 'string' ? contentType : null, size };
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
  await interruptIfRunning(backend, job.upstream_id, headers);
  await cancelledInComfyUI(ctx, backend, [id]);
}
