// An admin's GET /api/jobs with several backends: each backend's part of the page, merged in ComfyUI's order.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { getUpstream, type IsolatedCaller, type IsolationContext } from './context.js';
import { askEach } from './each-backend.js';
import { jobIdsOf, pageOf } from './jobs.js';
import { parseJsonOrUndefined, relayAnswer, relayJson } from './json-body.js';

interface JobList {
  jobs: Array<Record<string, unknown>>;
  pagination?: { total?: unknown };
}

/**
 * Each backend is asked for its first `offset + limit` jobs with the client's filters and order;
 * they are merged by the same order (`sort_by` created_at or execution_duration, `sort_order`,
 * newest first by default) and the page is cut from the merged list. `total` is the sum of the
 * backends' totals. Ids are those the jobs' keys know.
 */
export async function getMergedJobList(
  ctx: IsolationContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  path: string,
  query: URLSearchParams,
): Promise<void> {
  const { offset, limit } = pageOf(query);
  const asked = new URLSearchParams(query);
  asked.set('offset', '0');
  if (limit !== undefined) asked.set('limit', String(offset + limit));
  const answers = await askEach(ctx.pool.all, (backend) => getUpstream(backend, req, caller, `${path}?${asked}`));
  const merged: Array<Record<string, unknown>> = [];
  let total = 0;
  for (const { backend, value: answer } of answers) {
    const list = answer.status === 200 ? (parseJsonOrUndefined(answer.body) as JobList | undefined) : undefined;
    if (!list || !Array.isArray(list.jobs)) return relayAnswer(res, answer);
    const ids = await jobIdsOf(
      ctx,
      backend,
      list.jobs.map((job) => String(job.id)),
    );
    merged.push(...list.jobs.map((job) => ({ ...job, id: ids.get(String(job.id)) ?? job.id })));
    total += typeof list.pagination?.total === 'number' ? list.pagination.total : list.jobs.length;
  }
  const key = query.get('sort_by') === 'execution_duration' ? duration : createdAt;
  const ascending = query.get('sort_order') === 'asc';
  merged.sort((a, b) => (ascending ? key(a) - key(b) : key(b) - key(a)));
  const page = merged.slice(offset, limit === undefined ? undefined : offset + limit);
  relayJson(res, answers[0]!.value, { jobs: page, pagination: { offset, limit: limit ?? null, total, has_more: offset + page.length < total } });
}

function createdAt(job: Record<string, unknown>): number {
  return typeof job.create_time === 'number' ? job.create_time : 0;
}

function duration(job: Record<string, unknown>): number {
  const { execution_start_time: start, execution_end_time: end } = job;
  return typeof start === 'number' && typeof end === 'number' ? end - start : 0;
}
