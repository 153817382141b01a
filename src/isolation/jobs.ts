// The jobs API of newer ComfyUI servers (/api/jobs) for isolated callers: only the caller's own jobs.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { invalidRequest } from '../errors.js';
import { heldBodyOf } from '../jobs/dispatch.js';
import { readJsonBody } from '../server/body.js';
import { sendJson } from '../server/respond.js';
import type { JobRecord, JobStatus } from '../store/types.js';
import { heldNumber } from '../jobs/job-service.js';
import type { PoolBackend } from '../backends/backend-pool.js';
import {
  backendOfPrompt,
  byBackend,
  getUpstream,
  isShownEarlierFile,
  jobOfUpstreamId,
  ownsPrompt,
  upstreamIdOf,
  withClientsOwnId,
  type IsolatedCaller,
  type IsolationContext,
} from './context.js';
import { forwardToEach } from './each-backend.js';
import { cancelInComfyUI, settleCancelled } from './queue.js';
import { getMergedJobList } from './merged-jobs.js';
import { redactExtraData } from './redact.js';
import { parseComfyJson, relayAnswer, relayJson } from './json-body.js';
import { forEachInTurns } from './in-turns.js';
import { queryInteger } from './query-integer.js';
import { showOwnCachedJobOutputs } from './cached-outputs.js';
import { showJobWithoutServerPaths } from './server-paths.js';

/** ComfyUI's job statuses, and the registry's statuses each stands for (a job cancelled before it ran is not ComfyUI's to list). */
const STATUS_OF: Record<string, readonly JobStatus[]> = {
  pending: ['held', 'queued'],
  in_progress: ['running'],
  completed: ['success'],
  failed: ['error'],
  cancelled: ['interrupted'],
};
/** Lookups of single jobs in flight at once for one page. */
const LOOKUPS_AT_ONCE = 8;
/** Fields of a single job's answer that ComfyUI leaves out of its list. */
const DETAIL_FIELDS = ['outputs', 'execution_status', 'workflow'];

/**
 * GET …/jobs. An admin gets ComfyUI's list (ids as their keys know them). A user key's list is built
 * from its own jobs in the registry, in ComfyUI's order (`sort_by` created_at or execution_duration,
 * `sort_order`), filtered by `status`; each job of the page is ComfyUI's own `/api/jobs/{id}` answer
 * without its detail fields, a few at a time, so the cost is the page's, not ComfyUI's whole history.
 * ComfyUI first checks the parameters (and that it has the route) with a one-job list.
 */
export async function getJobList(
  ctx: IsolationContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  path: string,
  query: URLSearchParams,
): Promise<void> {
  if (caller.seesAll) return getAllJobs(ctx, req, res, caller, path, query);
  const { offset, limit } = pageOf(query);
  const probe = new URLSearchParams(query);
  probe.set('limit', '1');
  probe.set('offset', '0');
  const checked = await getUpstream(ctx.pool.any(), req, caller, `${path}?${probe}`);
  if (checked.status !== 200) return relayAnswer(res, checked);
  const statuses = statusesOf(query);
  const jobs = ctx.jobs.jobs;
  const keyId = caller.key.key_id;
  let own = jobs.list({ keyId, statuses, offset: 0, limit: jobs.count({ keyId, statuses }) });
  const order = orderOf(query);
  if (order.byDuration) own = [...own].sort((a, b) => (b.execution_seconds ?? 0) - (a.execution_seconds ?? 0));
  if (order.ascending) own = [...own].reverse();
  const workflowId = query.get('workflow_id');
  const wanted = limit === undefined ? Number.MAX_SAFE_INTEGER : offset + limit;
  const found: Array<Record<string, unknown>> = [];
  let total = 0;
  for (let i = 0; i < own.length && (workflowId || found.length < wanted); i += LOOKUPS_AT_ONCE) {
    const items = await Promise.all(own.slice(i, i + LOOKUPS_AT_ONCE).map((job) => jobItem(ctx, req, caller, path, job)));
    for (const item of items) {
      if (!item || (workflowId && item.workflow_id !== workflowId)) continue;
      total += 1;
      if (found.length < wanted) found.push(item);
    }
  }
  if (!workflowId) total = own.length;
  const page = found.slice(offset);
  relayJson(res, checked, { jobs: page, pagination: { offset, limit: limit ?? null, total, has_more: offset + page.length < total } });
}

/**
 * The registry's statuses of a list's `status` filter, read as ComfyUI reads it: comma-separated, each part trimmed and
 * in any case, empty parts skipped; none given (or only empty parts) is every status. ComfyUI has refused unknown ones.
 */
function statusesOf(query: URLSearchParams): JobStatus[] {
  const asked = (query.get('status') ?? '')
    .split(',')
    .map((status) => status.trim().toLowerCase())
    .filter((status) => status !== '');
  return (asked.length > 0 ? asked : Object.keys(STATUS_OF)).flatMap((status) => (Object.hasOwn(STATUS_OF, status) ? STATUS_OF[status]! : []));
}

/** A list's order, read as ComfyUI reads `sort_by` (created_at or execution_duration) and `sort_order` (desc or asc), in any case. */
export function orderOf(query: URLSearchParams): { byDuration: boolean; ascending: boolean } {
  return {
    byDuration: query.get('sort_by')?.toLowerCase() === 'execution_duration',
    ascending: query.get('sort_order')?.toLowerCase() === 'asc',
  };
}

/**
 * A list's `offset` (default 0) and `limit` (default none), read as ComfyUI reads them: int() of the text, a
 * negative offset counted as 0.
 * @throws GatewayError 400 when either is not an integer, or the limit is not positive
 */
export function pageOf(query: URLSearchParams): { offset: number; limit: number | undefined } {
  const offset = Math.max(0, queryInteger(query, 'offset') ?? 0);
  const limit = queryInteger(query, 'limit');
  if (limit !== undefined && limit <= 0) throw invalidRequest('limit must be a positive integer.', [{ field: 'limit', problem: `got ${limit}` }]);
  return { offset, limit };
}

/** An admin's list: ComfyUI's own, with each job's id as its key knows it. */
async function getAllJobs(
  ctx: IsolationContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  path: string,
  query: URLSearchParams,
): Promise<void> {
  if (ctx.pool.several) return getMergedJobList(ctx, req, res, caller, path, query);
  const backend = ctx.pool.all[0]!;
  const answer = await getUpstream(backend, req, caller, query.size > 0 ? `${path}?${query}` : path);
  relayAnswer(res, await ctx.rewriter.rewrite(answer, 'admin-jobs', (ids) => jobIdsOf(ctx, backend, ids)));
}

/** The ids their keys know the jobs among `upstreamIds` (of one backend) by, by the id ComfyUI knows them by. */
export async function jobIdsOf(ctx: IsolationContext, backend: PoolBackend, upstreamIds: readonly string[]): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  await forEachInTurns(upstreamIds, (upstreamId) => {
    const job = jobOfUpstreamId(ctx, backend, upstreamId);
    if (job) ids.set(upstreamId, job.id);
  });
  return ids;
}

/** One job as ComfyUI lists it: a held job as a pending queue item; any other as ComfyUI answers for it alone, its error and preview without server paths (undefined once ComfyUI forgot it). */
async function jobItem(
  ctx: IsolationContext,
  req: IncomingMessage,
  caller: IsolatedCaller,
  path: string,
  job: JobRecord,
): Promise<Record<string, unknown> | undefined> {
  if (job.status === 'held') {
    const extraData = (await heldBodyOf(job, ctx.rewriter)).extra_data as
      { create_time?: unknown; extra_pnginfo?: { workflow?: { id?: unknown } } } | undefined;
    return prune({
      id: job.id,
      status: 'pending',
      priority: heldNumber(job),
      create_time: extraData?.create_time,
      outputs_count: 0,
      previewable_outputs_count: 0,
      workflow_id: extraData?.extra_pnginfo?.workflow?.id,
    });
  }
  if (job.upstream_id === null) return undefined;
  const backend = ctx.pool.get(job.backend) ?? ctx.pool.all[0]!;
  if (backend.isDown()) return fromRegistry(job);
  const answer = await getUpstream(backend, req, caller, `${path}/${encodeURIComponent(job.upstream_id)}`);
  const item = answer.status === 200 ? (parseComfyJson(answer.body) as Record<string, unknown> | undefined) : undefined;
  if (typeof item !== 'object' || item === null) return undefined;
  showOwnCachedJobOutputs(item, isShownEarlierFile(ctx, caller, job.id));
  for (const field of DETAIL_FIELDS) delete item[field];
  showJobWithoutServerPaths(item);
  return { ...item, id: job.id };
}

/** ComfyUI's status of a job that has left the gateway's queue. */
const COMFY_STATUS: Record<JobStatus, string> = {
  held: 'pending',
  queued: 'pending',
  running: 'in_progress',
  success: 'completed',
  error: 'failed',
  interrupted: 'cancelled',
  cancelled: 'cancelled',
};

/** A job as the registry knows it, listed while its backend is down (ComfyUI's times are in milliseconds). */
function fromRegistry(job: JobRecord): Record<string, unknown> {
  const ms = (seconds: number | null): number | null => (seconds === null ? null : Math.round(seconds * 1000));
  return prune({
    id: job.id,
    status: COMFY_STATUS[job.status],
    create_time: ms(job.admitted_at),
    execution_start_time: ms(job.started_at),
    execution_end_time: ms(job.finished_at),
    outputs_count: job.outputs.length,
  });
}

/** The object without its undefined and null fields, as ComfyUI leaves them out. */
function prune(object: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined && value !== null));
}

/** GET …/jobs/{id}: someone else's job is "not found", as ComfyUI answers for an unknown id. */
export async function getJob(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller, jobId: string): Promise<void> {
  if (!ownsPrompt(ctx, caller, jobId)) return sendJson(res, 404, { error: 'Job not found' });
  const job = ctx.jobs.jobs.get(jobId);
  if (job?.status === 'held') return sendJson(res, 200, { id: job.id, status: 'pending', priority: heldNumber(job) });
  const answer = await backendOfPrompt(ctx, jobId).proxy.fetch(req, { path: withJobId(req, jobId, upstreamIdOf(ctx, jobId)), headers: caller.upstreamHeaders });
  const detail = answer.status === 200 ? (parseComfyJson(answer.body) as { id?: unknown; workflow?: { extra_data?: unknown } } | undefined) : undefined;
  if (typeof detail !== 'object' || detail === null) return relayAnswer(res, answer);
  showOwnCachedJobOutputs(detail, isShownEarlierFile(ctx, caller, jobId));
  if (!caller.seesAll) showJobWithoutServerPaths(detail);
  if (job) {
    // The job as its key knows it: its id, and the client's own client_id in place of the gateway's.
    detail.id = job.id;
    withClientsOwnId(detail.workflow?.extra_data, job);
  }
  redactExtraData(detail.workflow?.extra_data);
  relayJson(res, answer, detail);
}

/**
 * POST …/jobs/{id}/cancel: only the caller's own job. ComfyUI takes a pending job out of its queue, which the
 * registry records before the client gets ComfyUI's answer; a running one is interrupted, and ends by its events.
 */
export async function cancelJob(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller, jobId: string): Promise<void> {
  if (!ownsPrompt(ctx, caller, jobId)) return sendJson(res, 200, { cancelled: false });
  if (await ctx.jobs.cancelHeld(jobId)) return sendJson(res, 200, { cancelled: true });
  await forwardToEach(
    res,
    byBackend(ctx, [jobId]),
    (backend) => backend.proxy.fetch(req, { path: withJobId(req, jobId, upstreamIdOf(ctx, jobId)), headers: caller.upstreamHeaders }),
    settleCancelled(ctx),
  );
}

/** The request's path with the job's id replaced by the one ComfyUI knows it by. */
function withJobId(req: IncomingMessage, jobId: string, upstreamId: string): string {
  return req.url!.replace(`/${encodeURIComponent(jobId)}`, `/${encodeURIComponent(upstreamId)}`);
}

/**
 * POST …/jobs/cancel `{job_ids}`: the caller's own ids only, recorded as POST …/jobs/{id}/cancel records one. The answer
 * is ComfyUI's: `cancelled` is true when any job was, held ones and those of every backend counted.
 */
export async function cancelJobs(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const body = (await readJsonBody(req)) as { job_ids?: unknown } | undefined;
  if (!Array.isArray(body?.job_ids)) throw invalidRequest('job_ids must be a list of job ids.', [{ field: 'job_ids', problem: 'not a list' }]);
  const ids: string[] = [];
  let cancelledHeld = false;
  for (const id of body.job_ids.filter((id): id is string => typeof id === 'string' && ownsPrompt(ctx, caller, id))) {
    if (await ctx.jobs.cancelHeld(id)) cancelledHeld = true;
    else ids.push(id);
  }
  if (ids.length === 0) return sendJson(res, 200, { cancelled: cancelledHeld });
  const answers = await cancelInComfyUI(ctx, req, caller, ids, 'job_ids');
  const failed = answers.find((answer) => answer.status !== 200);
  if (failed) return relayAnswer(res, failed);
  const cancelledInComfyUI = answers.some((answer) => (parseComfyJson(answer.body) as { cancelled?: unknown } | undefined)?.cancelled === true);
  sendJson(res, 200, { cancelled: cancelledHeld || cancelledInComfyUI });
}
