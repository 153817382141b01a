// An admin's GET /api/jobs with several backends: each backend's part of the page, merged in ComfyUI's order.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { getUpstream, type IsolatedCaller, type IsolationContext } from './context.js';
import { invalidRequest } from '../errors.js';
import { askEach } from './each-backend.js';
import { MAX_MERGED_WINDOW } from './merged-history.js';
import { jobIdsOf, orderOf, pageOf } from './jobs.js';
import { parseComfyJson, relayAnswer, relayJson } from './json-body.js';

/** The page of an admin's merged list without `limit` (ComfyUI's own would be every job). */
const DEFAULT_MERGED_PAGE = 200;

interface JobList {
  jobs: Array<Record<string, unknown>>;
  pagination?: { total?: unknown };
}

/**
 * Each backend is asked for its first `offset + limit` jobs with the client's filters and order;
 * they are merged by the same order (`sort_by` created_at or execution_duration, `sort_order`,
 * newest first by default) and the page is cut from the merged list. `total` is the sum of the
 * backends' totals. Ids are those the jobs' keys know. Parsed on the request thread, so bounded: the
 * page is DEFAULT_MERGED_PAGE jobs without `limit`, and `offset + limit` may not pass MAX_MERGED_WINDOW.
 */
export async function getMergedJobList(
  ctx: IsolationContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  path: string,
  query: URLSearchParams,
): Promise<void> {
  const page = pageOf(query);
  const { offset } = page;
  const limit = page.limit ?? DEFAULT_MERGED_PAGE;
  if (offset + limit > MAX_MERGED_WINDOW) {
    throw invalidRequest(`With several backends, an admin's job list reaches at most ${MAX_MERGED_WINDOW} jobs deep: ask for fewer, or filter by status.`, [
      { field: 'limit', problem: `offset + limit is over ${MAX_MERGED_WINDOW}` },
    ]);
  }
  const asked = new URLSearchParams(query);
  asked.set('offset', '0');
  asked.set('limit', String(offset + limit));
  const answers = await askEach(ctx.pool.all, (backend) => getUpstream(backend, req, caller, `${path}?${asked}`));
  const merged: Array<Record<string, unknown>> = [];
  let total = 0;
  for (const { backend, value: answer } of answers) {
    const list = answer.status === 200 ? (parseComfyJson(answer.body) as JobList | undefined) : undefined;
    if (!list || !Array.isArray(list.jobs)) return relayAnswer(res, answer);
    const ids = await jobIdsOf(
      ctx,
      backend,
      list.jobs.map((job) => String(job.id)),
    );
    merged.push(...list.jobs.map((job) => ({ ...job, id: ids.get(String(job.id)) ?? job.id })));
    total += typeof list.pagination?.total === 'number' ? list.pagination.total : list.jobs.length;
  }
  const { byDuration, ascending } = orderOf(query);
  const key = byDuration ? duration : createdAt;
  merged.sort((a, b) => (ascending ? key(a) - key(b) : key(b) - key(a)));
  const jobs = merged.slice(offset, offset + limit);
  relayJson(res, answers[0]!.value, { jobs, pagination: { offset, limit, total, has_more: offset + jobs.length < total } });
}

function createdAt(job: Record<string, unknown>): number {
  return typeof job.create_time === 'number' ? job.create_time : 0;
}

function duration(job: Record<string, unknown>): number {
  const { execution_start_time: start, execution_end_time: end } = job;
  return typeof start === 'number' && typeof end === 'number' ? end - start : 0;
}
