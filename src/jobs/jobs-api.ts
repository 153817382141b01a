// The gateway's own jobs API: GET /api/gateway/jobs and /api/gateway/jobs/{id}, the same on every ComfyUI release.

import type { ServerResponse } from 'node:http';
import { invalidRequest, jobNotFound } from '../errors.js';
import { sendJson } from '../server/respond.js';
import type { JobRecord, JobStatus, KeyRecord } from '../store/types.js';
import { jobErrorShown } from '../isolation/server-paths.js';
import type { JobService } from './job-service.js';

const STATUSES: readonly JobStatus[] = ['held', 'queued', 'running', 'success', 'error', 'interrupted', 'cancelled'];
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;

/**
 * A job as the API shows it: its record without the held request, with its place in the gateway's queue and `/view`
 * URLs of its outputs; its error's message without server paths unless `seesAll` (an admin key's view).
 */
export function jobView(job: JobRecord, service: JobService, seesAll: boolean): Record<string, unknown> {
  return {
    id: job.id,
    key_id: job.key_id,
    client_id: job.client_id,
    backend: job.backend,
    upstream_id: job.upstream_id,
    status: job.status,
    admitted_at: job.admitted_at,
    forwarded_at: job.forwarded_at,
    started_at: job.started_at,
    finished_at: job.finished_at,
    execution_seconds: job.execution_seconds,
    queue_position: job.status === 'held' ? (service.scheduler.position(job.id) ?? null) : null,
    outputs: job.outputs.map((file) => ({
      ...file,
      url: `/view?${new URLSearchParams({ filename: file.filename, subfolder: file.subfolder, type: file.type })}`,
    })),
    error: seesAll ? job.error : jobErrorShown(job.error),
  };
}

/**
 * GET /api/gateway/jobs: the key's jobs (every key's for an admin, or one key's with `key_id`), newest
 * first; `status` (comma-separated) filters; `limit` (1–500, default 50) and `offset` page.
 */
export function listJobs(res: ServerResponse, key: KeyRecord, query: URLSearchParams, service: JobService): void {
  const statuses = query.get('status')?.split(',');
  const unknown = statuses?.filter((status) => !STATUSES.includes(status as JobStatus)) ?? [];
  if (unknown.length > 0) {
    throw invalidRequest(`status must be one or more of ${STATUSES.join(', ')}, separated by commas.`, [
      { field: 'status', problem: `unknown: ${unknown.join(', ')}` },
    ]);
  }
  const limit = wholeNumber(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT);
  const offset = wholeNumber(query, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
  const keyId = key.role === 'admin' ? (query.get('key_id') ?? undefined) : key.key_id;
  const filter = { ...(keyId === undefined ? {} : { keyId }), ...(statuses ? { statuses: statuses as JobStatus[] } : {}) };
  const page = service.jobs.list({ ...filter, offset, limit });
  const total = service.jobs.count(filter);
  sendJson(res, 200, {
    jobs: page.map((job) => jobView(job, service, key.role === 'admin')),
    pagination: { offset, limit, total, has_more: offset + page.length < total },
  });
}

/** GET /api/gateway/jobs/{id}: the job, if it is the key's (any job for an admin); 404 JOB_NOT_FOUND otherwise, as for an unknown id. */
export function getJob(res: ServerResponse, key: KeyRecord, id: string, service: JobService): void {
  const job = service.jobs.get(id);
  if (!job || (key.role !== 'admin' && job.key_id !== key.key_id)) throw jobNotFound();
  sendJson(res, 200, jobView(job, service, key.role === 'admin'));
}

/** A whole-number query parameter from `min` to `max`, `fallback` when absent. @throws GatewayError 400 INVALID_REQUEST naming it */
export function wholeNumber(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw invalidRequest(`${name} must be a whole number from ${min} to ${max}.`, [{ field: name, problem: `got ${JSON.stringify(raw)}` }]);
  }
  return value;
}
