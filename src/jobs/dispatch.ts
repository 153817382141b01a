// Sends a job to its backend's ComfyUI and records the answer in the registry: the id ComfyUI gave it, or why it was refused.

import { GatewayError } from '../errors.js';
import { isBoundedId } from '../isolation/ids.js';
import { parseJsonOrUndefined } from '../isolation/json-body.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import type { JobRecord, JobStore } from '../store/types.js';
import type { Backend } from './backend.js';

/** What a held job keeps to be sent later: the body for ComfyUI's POST /prompt and the headers (its ComfyUI user). */
export interface HeldRequest {
  body: Record<string, unknown>;
  headers: Record<string, string | null>;
}

/** The request a job holds, or undefined once sent. */
export function heldRequestOf(job: JobRecord): HeldRequest | undefined {
  const request = job.request as Partial<HeldRequest> | null;
  return request && typeof request.body === 'object' && request.body !== null ? { body: request.body, headers: request.headers ?? {} } : undefined;
}

/**
 * Sends the job's prompt to ComfyUI. On ComfyUI's 200, the job is `queued` under the `prompt_id` it
 * answered: with `adoptAnsweredId` (the client has not been told an id yet) the job takes that id, in
 * one write with the answer; otherwise the answered id is kept as its `upstream_id`. A refusal ends the
 * job as `error` with ComfyUI's node errors. When the answer is lost (ComfyUI may have queued it), the
 * job is `queued` under the id it was sent with, for reconciliation to settle, and the error is thrown.
 * @returns ComfyUI's answer and the job after it
 */
export async function sendJob(
  backend: Backend,
  jobs: JobStore,
  job: JobRecord,
  options: { adoptAnsweredId: boolean; now: () => number },
): Promise<{ answer: UpstreamAnswer; job: JobRecord | undefined }> {
  const request = heldRequestOf(job);
  if (!request) throw new Error(`job ${job.id} has nothing to send`);
  const answered = backend.events.expectAnswer();
  try {
    let answer: UpstreamAnswer;
    try {
      answer = await backend.proxy.fetch(null, {
        method: 'POST',
        path: '/api/prompt',
        body: JSON.stringify(request.body),
        headers: { ...request.headers, 'content-type': 'application/json' },
      });
    } catch (error) {
      const sentId = typeof request.body.prompt_id === 'string' ? request.body.prompt_id : job.id;
      await jobs.update(job.id, { status: 'queued', upstream_id: sentId, forwarded_at: options.now(), request: null, backend: backend.name });
      throw error instanceof GatewayError ? error : new GatewayError(502, 'UPSTREAM_UNAVAILABLE', 'ComfyUI could not be reached.');
    }
    const body = answer.status === 200 ? (parseJsonOrUndefined(answer.body) as { prompt_id?: unknown } | undefined) : undefined;
    const upstreamId = body?.prompt_id;
    if (typeof upstreamId === 'string' && isBoundedId(upstreamId)) {
      const patch = { status: 'queued' as const, upstream_id: upstreamId, forwarded_at: options.now(), request: null, backend: backend.name };
      const renamed = options.adoptAnsweredId && upstreamId !== job.id ? await jobs.rename(job.id, upstreamId, patch) : undefined;
      const updated = renamed ?? (await jobs.update(job.id, patch));
      backend.events.answered(upstreamId);
      return { answer, job: updated };
    }
    const refusal = parseJsonOrUndefined(answer.body) as { error?: { message?: unknown }; node_errors?: unknown } | undefined;
    const message = typeof refusal?.error?.message === 'string' ? refusal.error.message : `ComfyUI refused the prompt (status ${answer.status}).`;
    const nodeErrors = typeof refusal?.node_errors === 'object' && refusal.node_errors !== null ? (refusal.node_errors as Record<string, unknown>) : {};
    const updated = await jobs.update(job.id, { status: 'error', finished_at: options.now(), request: null, error: { message, node_errors: nodeErrors } });
    return { answer, job: updated };
  } finally {
    answered();
  }
}
