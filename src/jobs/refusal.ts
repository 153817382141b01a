// A held job that ComfyUI refused when it was sent, told in ComfyUI's own shapes: an `execution_error` event and a history entry.

import type { JobError, JobRecord } from '../store/types.js';
import type { JsonBodyParser } from '../isolation/large-json.js';
import { heldBodyOf } from './dispatch.js';

/** Whether ComfyUI refused the job when the gateway sent it (it never ran, and ComfyUI has no history of it). */
export function wasRefused(job: JobRecord): boolean {
  return job.status === 'error' && job.upstream_id === null;
}

/** ComfyUI's `execution_error` for a prompt it refused, or the gateway ended before sending it (the error's exception type): the message and node errors, no node ran. */
export function refusalEvent(error: JobError, at: number): Record<string, unknown> {
  return {
    node_id: null,
    node_type: null,
    executed: [],
    exception_message: error.message,
    exception_type: error.exception_type ?? 'PromptRefused',
    traceback: [],
    current_inputs: {},
    current_outputs: [],
    node_errors: error.node_errors ?? {},
    timestamp: Math.round(at * 1000),
  };
}

/** The history entry ComfyUI would show for a prompt that failed before any node ran (its body read by `parser`, see heldBodyOf). */
export async function refusedHistoryEntry(job: JobRecord, parser: JsonBodyParser): Promise<Record<string, unknown>> {
  const at = job.finished_at ?? job.admitted_at;
  const event = { ...refusalEvent(job.error ?? { message: 'ComfyUI refused the prompt.' }, at), prompt_id: job.id };
  return {
    prompt: [0, job.id, (await heldBodyOf(job, parser)).prompt ?? {}, job.client_id === null ? {} : { client_id: job.client_id }, []],
    outputs: {},
    status: { status_str: 'error', completed: false, messages: [['execution_error', event]] },
    meta: {},
  };
}
