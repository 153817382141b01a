// The jobs API of newer ComfyUI servers (/api/jobs) for isolated callers: only the caller's own jobs.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { invalidRequest } from '../errors.js';
import { readJsonBody } from '../server/body.js';
import { sendJson } from '../server/respond.js';
import { heldNumber } from '../jobs/job-service.js';
import { getUpstream, jobOfUpstreamId, ownsPrompt, upstreamIdOf, type IsolatedCaller, type IsolationContext } from './context.js';
import { parseJsonOrUndefined, relayAnswer, relayJson } from './json-body.js';

interface JobList {
  jobs: Array<{ id?: unknown }>;
  pagination?: Record<string, unknown>;
}

/** GET …/jobs: the caller's jobs, with `offset` and `limit` applied to them alone. */
export async function getJobList(
  ctx: IsolationContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  path: string,
  query: URLSearchParams,
): Promise<void> {
  const offset = Number(query.get('offset') ?? 0);
  const limit = query.has('limit') ? Number(query.get('limit')) : undefined;
  if (!Number.isInteger(offset) || offset < 0 || (limit !== undefined && (!Number.isInteger(limit) || limit < 0))) {
    throw invalidRequest('offset and limit must be whole numbers.', [{ field: 'offset/limit', problem: 'not a whole number' }]);
  }
  const rest = new URLSearchParams(query);
  rest.delete('offset');
  rest.delete('limit');
  const answer = await getUpstream(ctx, req, caller, rest.size > 0 ? `${path}?${rest}` : path);
  const list = answer.status === 200 ? (parseJsonOrUndefined(answer.body) as JobList | undefined) : undefined;
  if (!list || !Array.isArray(list.jobs)) return relayAnswer(res, answer);
  const own = list.jobs.filter((item) => {
    const job = jobOfUpstreamId(ctx, item.id);
    if (job) item.id = job.id;
    return ownsPrompt(ctx, caller, item.id);
  });
  const page = limit === undefined ? own.slice(offset) : own.slice(offset, offset + limit);
  relayJson(res, answer, { ...list, jobs: page, pagination: { offset, limit: limit ?? null, total: own.length, has_more: offset + page.length < own.length } });
}

/** GET …/jobs/{id}: someone else's job is "not found", as ComfyUI answers for an unknown id. */
export async function getJob(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller, jobId: string): Promise<void> {
  if (!ownsPrompt(ctx, caller, jobId)) return sendJson(res, 404, { error: 'Job not found' });
  const job = ctx.jobs.jobs.get(jobId);
  if (job?.status === 'held') return sendJson(res, 200, { id: job.id, status: 'pending', priority: heldNumber(job) });
  await ctx.proxy.forward(req, res, { path: withJobId(req, jobId, upstreamIdOf(ctx, jobId)), headers: caller.upstreamHeaders });
}

/** POST …/jobs/{id}/cancel: only the caller's own job. */
export async function cancelJob(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller, jobId: string): Promise<void> {
  if (!ownsPrompt(ctx, caller, jobId)) return sendJson(res, 200, { cancelled: false });
  if (await ctx.jobs.cancelHeld(jobId)) return sendJson(res, 200, { cancelled: true });
  await ctx.proxy.forward(req, res, { path: withJobId(req, jobId, upstreamIdOf(ctx, jobId)), headers: caller.upstreamHeaders });
}

/** The request's path with the job's id replaced by the one ComfyUI knows it by. */
function withJobId(req: IncomingMessage, jobId: string, upstreamId: string): string {
  return req.url!.replace(`/${encodeURIComponent(jobId)}`, `/${encodeURIComponent(upstreamId)}`);
}

/** POST …/jobs/cancel `{job_ids}`: the caller's own ids only. */
export async function cancelJobs(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const body = (await readJsonBody(req)) as { job_ids?: unknown } | undefined;
  if (!Array.isArray(body?.job_ids)) throw invalidRequest('job_ids must be a list of job ids.', [{ field: 'job_ids', problem: 'not a list' }]);
  const ids: string[] = [];
  let cancelledHeld = false;
  for (const id of body.job_ids.filter((id): id is string => typeof id === 'string' && ownsPrompt(ctx, caller, id))) {
    if (await ctx.jobs.cancelHeld(id)) cancelledHeld = true;
    else ids.push(upstreamIdOf(ctx, id));
  }
  if (ids.length === 0) return sendJson(res, 200, { cancelled: cancelledHeld });
  await ctx.proxy.forward(req, res, { body: JSON.stringify({ job_ids: ids }), headers: { ...caller.upstreamHeaders, 'content-type': 'application/json' } });
}
