// Job records: the statuses, reading a stored job back with each field checked, and applying a patch.

import { ACTIVE_JOB_STATUSES, WEBHOOK_EVENTS, type JobPatch, type JobRecord, type JobStatus, type JobWebhook, type WebhookEvent } from './types.js';

/** Every status a job can have: the active ones, then the finished ones. */
export const JOB_STATUSES: readonly JobStatus[] = [...ACTIVE_JOB_STATUSES, 'success', 'error', 'interrupted', 'cancelled'];

/** True for held, queued and running jobs. */
export function isActiveJob(job: JobRecord): boolean {
  return ACTIVE_JOB_STATUSES.includes(job.status);
}

/**
 * Turns a stored value into a `JobRecord`; returns a reason naming the field when one is missing or of the
 * wrong type.
 */
export function parseJobRecord(value: unknown): JobRecord | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const v = value as Record<string, unknown>;
  for (const field of ['id', 'key_id', 'backend'] as const) if (typeof v[field] !== 'string') return `${field} must be a string, not ${shown(v[field])}`;
  for (const field of ['client_id', 'upstream_id'] as const) if (v[field] != null && typeof v[field] !== 'string') return `${field} must be a string or null`;
  if (!JOB_STATUSES.includes(v.status as JobStatus)) return `status must be one of ${JOB_STATUSES.join(', ')}, not ${shown(v.status)}`;
  if (typeof v.admitted_at !== 'number') return `admitted_at must be a number (Unix seconds), not ${shown(v.admitted_at)}`;
  for (const field of ['forwarded_at', 'started_at', 'finished_at', 'execution_seconds'] as const)
    if (v[field] != null && typeof v[field] !== 'number') return `${field} must be a number or null, not ${shown(v[field])}`;
  if (v.outputs != null && !Array.isArray(v.outputs)) return 'outputs must be an array';
  for (const field of ['error', 'request'] as const)
    if (v[field] != null && (typeof v[field] !== 'object' || Array.isArray(v[field]))) return `${field} must be an object or null`;
  if (v.sends != null && !isCount(v.sends)) return `sends must be a whole number or null, not ${shown(v.sends)}`;
  const webhook = v.webhook == null ? null : parseJobWebhook(v.webhook);
  if (typeof webhook === 'string') return webhook;
  // An earlier version kept the count inside the request.
  const keptInRequest = (v.request as { sends?: unknown } | null | undefined)?.sends;
  const sends = isCount(v.sends) ? v.sends : isCount(keptInRequest) ? keptInRequest : undefined;
  return {
    id: v.id as string,
    key_id: v.key_id as string,
    client_id: (v.client_id as string | null | undefined) ?? null,
    backend: v.backend as string,
    upstream_id: (v.upstream_id as string | null | undefined) ?? null,
    status: v.status as JobStatus,
    admitted_at: v.admitted_at,
    forwarded_at: (v.forwarded_at as number | null | undefined) ?? null,
    started_at: (v.started_at as number | null | undefined) ?? null,
    finished_at: (v.finished_at as number | null | undefined) ?? null,
    execution_seconds: (v.execution_seconds as number | null | undefined) ?? null,
    outputs: (v.outputs as JobRecord['outputs'] | null | undefined) ?? [],
    error: (v.error as JobRecord['error'] | undefined) ?? null,
    request: (v.request as JobRecord['request'] | undefined) ?? null,
    front: v.front === true,
    webhook,
    ...(sends !== undefined ? { sends } : {}),
  };
}

/** A whole number of at least 0. */
function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** A stored job's `webhook`: `{url, events}` with known events, or a reason. */
function parseJobWebhook(value: unknown): JobWebhook | string {
  const w = value as Partial<Record<keyof JobWebhook, unknown>>;
  if (typeof value !== 'object' || Array.isArray(value) || typeof w.url !== 'string') return 'webhook must be an object with a url, or null';
  if (!Array.isArray(w.events) || !w.events.every((event) => WEBHOOK_EVENTS.includes(event as WebhookEvent)))
    return `webhook.events must list events among ${WEBHOOK_EVENTS.join(', ')}`;
  return { url: w.url, events: w.events as WebhookEvent[] };
}

/** The fields a patch sets: those present and not undefined (a patch never changes id, key_id or admitted_at). */
export function patchedFields(patch: JobPatch): Partial<JobRecord> {
  const fields: Record<string, unknown> = {};
  for (const field in patch) {
    const value = patch[field as keyof JobPatch];
    if (value !== undefined && !FIXED_FIELDS.has(field)) fields[field] = value;
  }
  return fields as Partial<JobRecord>;
}

/** The job after a patch. */
export function patchedJob(job: JobRecord, patch: JobPatch): JobRecord {
  return jobWithFields(job, patchedFields(patch));
}

/**
 * A job with the fields a patch sets (those present; never id, key_id or admitted_at), under `id` (its own by default),
 * built as `parseJobRecord` builds a job: every job in memory then has one of its two shapes, which V8 reads fast, where
 * spreads leave many (a spread copy given a member its source lacks gets a shape of its own from V8, every time).
 */
export function jobWithFields(job: JobRecord, fields: Partial<JobRecord>, id = job.id): JobRecord {
  const sends = fields.sends !== undefined ? fields.sends : job.sends;
  return {
    id,
    key_id: job.key_id,
    client_id: fields.client_id !== undefined ? fields.client_id : job.client_id,
    backend: fields.backend !== undefined ? fields.backend : job.backend,
    upstream_id: fields.upstream_id !== undefined ? fields.upstream_id : job.upstream_id,
    status: fields.status !== undefined ? fields.status : job.status,
    admitted_at: job.admitted_at,
    forwarded_at: fields.forwarded_at !== undefined ? fields.forwarded_at : job.forwarded_at,
    started_at: fields.started_at !== undefined ? fields.started_at : job.started_at,
    finished_at: fields.finished_at !== undefined ? fields.finished_at : job.finished_at,
    execution_seconds: fields.execution_seconds !== undefined ? fields.execution_seconds : job.execution_seconds,
    outputs: fields.outputs !== undefined ? fields.outputs : job.outputs,
    error: fields.error !== undefined ? fields.error : job.error,
    request: fields.request !== undefined ? fields.request : job.request,
    front: fields.front !== undefined ? fields.front : job.front,
    webhook: fields.webhook !== undefined ? fields.webhook : job.webhook,
    ...(sends !== undefined ? { sends } : {}),
  };
}

const FIXED_FIELDS: ReadonlySet<string> = new Set(['id', 'key_id', 'admitted_at']);

function shown(value: unknown): string {
  return value === undefined ? 'missing' : JSON.stringify(value);
}
