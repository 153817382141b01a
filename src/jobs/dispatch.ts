// Sends a prompt to a backend's ComfyUI and says how it went: queued under the id ComfyUI answered, refused, or the answer lost.

import { GatewayError } from '../errors.js';
import { isBoundedId } from '../isolation/ids.js';
import { parseComfyJson, undefinedIfNotJson } from '../isolation/json-body.js';
import type { JsonBodyParser } from '../isolation/large-json.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import type { JobError, JobRecord } from '../store/types.js';
import type { Backend } from './backend.js';
import { TurnBudget } from './turn-budget.js';

/**
 * Prompts sent in one turn of the event loop. A group commit admits the prompts that arrived together
 * at once (50 when 50 clients queue together), and sending each costs the loop a fraction of a
 * millisecond, more while the process is young: the rest go on in the next turns.
 */
const SENDS_PER_TURN = 8;
const sendPace = new TurnBudget(SENDS_PER_TURN);

/**
 * What a job keeps until it runs, to be sent (or sent again when its backend lost it): the body for
 * ComfyUI's POST /prompt, the headers (its ComfyUI user) and the backend an admin pinned it to. How
 * many times it was sent is the job's own `sends`, so that recording a send does not write this again.
 * The body is kept as its JSON text: one string for the garbage collector to trace, where the parsed
 * graph (and the editor workflow in its `extra_data`) is hundreds of objects per held job, and what is
 * sent as it is.
 */
export type HeldRequest = {
  body: string;
  headers: Record<string, string | null>;
  /** The backend an admin key pinned the job to (`X-Comfy-Gate-Backend`); absent: any. */
  pin?: string;
};

/** The request a job keeps, or undefined once it ran. A body kept parsed (by an earlier version) is read as its JSON text. */
export function heldRequestOf(job: JobRecord): HeldRequest | undefined {
  const request = job.request as { body?: unknown; headers?: HeldRequest['headers']; pin?: unknown } | null;
  if (!request) return undefined;
  const body =
    typeof request.body === 'string' ? request.body : typeof request.body === 'object' && request.body !== null ? JSON.stringify(request.body) : undefined;
  if (body === undefined) return undefined;
  return {
    body,
    headers: request.headers ?? {},
    ...(typeof request.pin === 'string' ? { pin: request.pin } : {}),
  };
}

/**
 * The body a job keeps, parsed (for listings of held jobs) by `parser` (the JsonRewriter: a large body with many exact
 * numbers is parsed in a worker thread, so it does not hold up other requests), or an empty object once it ran.
 * @throws Error when the JSON worker thread fails
 */
export async function heldBodyOf(job: JobRecord, parser: JsonBodyParser): Promise<Record<string, unknown>> {
  const request = heldRequestOf(job);
  const body = request ? await parser.parseBody(request.body).catch(undefinedIfNotJson) : undefined;
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
}

/**
 * The headers a prompt is sent with: its own, then its content type. Copied name by name: a spread of the frozen headers a
 * key's requests share took V8's slowest path (about 4,000 instructions a prompt).
 */
function promptHeaders(request: HeldRequest): Record<string, string | null> {
  const headers: Record<string, string | null> = {};
  for (const name in request.headers) headers[name] = request.headers[name] as string | null;
  headers['content-type'] = 'application/json';
  return headers;
}

/** How sending went. `lost`: no answer came, and ComfyUI may have queued it under the id it was sent with. */
export type SendOutcome = { kind: 'queued'; upstreamId: string } | { kind: 'refused'; error: JobError } | { kind: 'lost'; sentId: string };

/**
 * Sends a prompt (its body has `promptId` as its prompt_id) and has `record` write the outcome before
 * anything else learns of it: the job's events that arrive meanwhile are held by the backend's hub
 * until the record is written.
 * @returns ComfyUI's answer (relayed as it is to a client that waits for it)
 * @throws GatewayError 502/504 when the answer is lost (after `record` wrote that)
 */
export async function sendPrompt(
  backend: Backend,
  promptId: string,
  request: HeldRequest,
  record: (outcome: SendOutcome) => Promise<void>,
): Promise<UpstreamAnswer> {
  const answered = backend.events.expectAnswer();
  try {
    let answer: UpstreamAnswer;
    let receivedBefore: number;
    try {
      await sendPace.take();
      receivedBefore = backend.events.messagesReceived;
      answer = await backend.proxy.fetch(null, { method: 'POST', path: '/api/prompt', body: request.body, headers: promptHeaders(request) });
    } catch (error) {
      await record({ kind: 'lost', sentId: promptId });
      throw error instanceof GatewayError ? error : new GatewayError(502, 'UPSTREAM_UNAVAILABLE', 'ComfyUI could not be reached.');
    }
    const body = parseComfyJson(answer.body) as { prompt_id?: unknown; error?: { message?: unknown }; node_errors?: unknown } | undefined;
    const upstreamId = answer.status === 200 ? body?.prompt_id : undefined;
    if (typeof upstreamId === 'string' && isBoundedId(upstreamId)) {
      await record({ kind: 'queued', upstreamId });
      backend.events.answered(upstreamId);
      backend.events.promptAccepted(receivedBefore);
    } else {
      const message = typeof body?.error?.message === 'string' ? body.error.message : `ComfyUI refused the prompt (status ${answer.status}).`;
      const nodeErrors = typeof body?.node_errors === 'object' && body.node_errors !== null ? (body.node_errors as Record<string, unknown>) : {};
      await record({ kind: 'refused', error: { message, node_errors: nodeErrors } });
    }
    return answer;
  } finally {
    answered();
  }
}
