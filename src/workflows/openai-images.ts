// POST /v1/images/generations in the shape of OpenAI's images API, served by the one workflow an admin marked with `openai_images`.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, invalidRequest, jobFailed, noImagesWorkflow, promptRefused, runTimeout } from '../errors.js';
import type { IsolatedCaller, IsolationContext } from '../isolation/context.js';
import { parseComfyJson } from '../isolation/json-body.js';
import { MAX_RUN_WAIT_SECONDS, runToEnd, unknownFields, type Problem } from '../isolation/run.js';
import type { JobWaiter } from '../jobs/job-waiter.js';
import { readJsonBody } from '../server/body.js';
import { sendJson } from '../server/respond.js';
import type { OpenAiImagesMapping, WorkflowRecord, WorkflowStore } from '../store/types.js';
import { isObject, type WorkflowDefinition } from './definition.js';
import { buildPrompt, checkRunInputs } from './run-inputs.js';

/** Most images one request may ask for, as OpenAI's API allows. */
export const MAX_OPENAI_IMAGES = 10;
/** Longest prompt, as OpenAI's API allows for its largest model. */
const MAX_OPENAI_PROMPT_LENGTH = 32_000;
/** Largest request body read. */
const MAX_OPENAI_BODY_BYTES = 256 * 1024;
/** The fields of OpenAI's request: `prompt`, `n`, `size` and `response_format` are used; the others are accepted and left aside. */
const REQUEST_FIELDS = [
  'prompt',
  'n',
  'size',
  'response_format',
  'model',
  'quality',
  'style',
  'user',
  'background',
  'moderation',
  'output_format',
  'output_compression',
];
const SIZE = /^(\d{1,5})x(\d{1,5})$/;

/** The workflow that serves the endpoint: the one marked with `openai_images` (the most recently changed, should there be several). */
export async function servingWorkflow(store: WorkflowStore): Promise<WorkflowRecord | undefined> {
  const marked = (await store.list()).filter((workflow) => workflow.openai_images);
  return marked.sort((a, b) => b.updated_at - a.updated_at)[0];
}

/**
 * Refuses to mark a second workflow with `openai_images`: one workflow serves the endpoint.
 * @throws GatewayError 400 INVALID_REQUEST naming the workflow that serves it
 */
export async function checkOnlyServing(store: WorkflowStore, definition: WorkflowDefinition): Promise<void> {
  if (!definition.openai_images) return;
  const other = (await store.list()).find((workflow) => workflow.openai_images && workflow.name !== definition.name);
  if (other) {
    throw invalidRequest('One workflow serves /v1/images/generations.', [
      { field: 'openai_images', problem: `workflow ${other.name} serves it already: register it again without openai_images first` },
    ]);
  }
}

/**
 * POST /v1/images/generations: reads OpenAI's request (`prompt`, `n`, `size` as `WIDTHxHEIGHT`,
 * `response_format` `url` or `b64_json`), sets the mapped inputs of the serving workflow, runs it as a
 * workflow run (every check and quota of the key; cancelled if the client hangs up) for up to 600 s,
 * and answers `{created, data: [{b64_json} | {url}]}` with its image outputs; a `url` is the absolute
 * `/view` URL (fetched with the same key). Errors are in OpenAI's shape, `{error: {message, type, param, code}}`.
 */
export async function generateImages(
  ctx: IsolationContext,
  waiter: JobWaiter,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  store: WorkflowStore,
  origin: string,
): Promise<void> {
  try {
    const workflow = await servingWorkflow(store);
    if (!workflow?.openai_images) throw noImagesWorkflow();
    const { inputs, base64 } = imagesRequest(await readJsonBody(req, MAX_OPENAI_BODY_BYTES), workflow.openai_images);
    const problems: Problem[] = [];
    const { values } = checkRunInputs(workflow, inputs, problems);
    if (problems.length > 0) {
      throw invalidRequest(
        'The request does not fit the workflow that serves it.',
        problems.map((p) => ({ ...p, field: paramOf(p.field, workflow.openai_images!) })),
      );
    }
    const run = { waitSeconds: MAX_RUN_WAIT_SECONDS, inline: base64, cancelOnDisconnect: true, clientId: null, webhook: null };
    const outcome = await runToEnd(ctx, waiter, req, res, caller, run, buildPrompt(workflow, values), { workflow: true });
    if (outcome.kind === 'gone') return;
    if (outcome.kind === 'refused') throw promptRefused(comfyMessage(outcome.answer.body));
    if (outcome.kind === 'waiting') throw runTimeout(MAX_RUN_WAIT_SECONDS, outcome.location);
    const { job } = outcome;
    if (job.status !== 'success') {
      const error = job.error as { message?: unknown } | null;
      throw jobFailed(job.status, typeof error?.message === 'string' ? error.message : null);
    }
    const images = job.outputs.filter((output) => typeof output.content_type === 'string' && output.content_type.startsWith('image/'));
    sendJson(res, 200, {
      created: Math.floor(typeof job.finished_at === 'number' ? job.finished_at : Date.now() / 1000),
      data: images.map((image) => (base64 && typeof image.data === 'string' ? { b64_json: image.data } : { url: `${origin}${String(image.url)}` })),
    });
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    const problems = error.details?.details as Problem[] | undefined;
    const param = Array.isArray(problems) && problems[0] ? problems[0].field : null;
    sendJson(
      res,
      error.status,
      {
        error: {
          message: error.message,
          type: error.status < 500 ? 'invalid_request_error' : 'server_error',
          param,
          code: error.code,
          ...(problems ? { details: problems } : {}),
        },
      },
      error.headers,
    );
  }
}

/**
 * The workflow inputs an OpenAI request sets, and whether it wants base64 (`b64_json`; the default
 * for `gpt-image-*` models, `url` for the others, as OpenAI's API does).
 * @throws GatewayError 400 INVALID_REQUEST naming each request field that is wrong
 */
function imagesRequest(body: unknown, mapping: OpenAiImagesMapping): { inputs: Record<string, unknown>; base64: boolean } {
  if (!isObject(body)) throw invalidRequest('The body must be a JSON object with a prompt.', [{ field: 'prompt', problem: 'missing' }]);
  const problems: Problem[] = [];
  unknownFields(body, REQUEST_FIELDS, problems);
  const { prompt, n, size, response_format: format, model } = body;
  const inputs: Record<string, unknown> = {};
  if (typeof prompt !== 'string' || prompt === '' || prompt.length > MAX_OPENAI_PROMPT_LENGTH) {
    problems.push({ field: 'prompt', problem: `missing, or not a text of 1 to ${MAX_OPENAI_PROMPT_LENGTH} characters` });
  } else inputs[mapping.prompt] = prompt;
  if (n !== undefined && n !== null) {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_OPENAI_IMAGES)
      problems.push({ field: 'n', problem: `not a whole number from 1 to ${MAX_OPENAI_IMAGES}` });
    else if (mapping.n) inputs[mapping.n] = n;
    else if (n !== 1) problems.push({ field: 'n', problem: 'this endpoint makes one image per request' });
  }
  if (size !== undefined && size !== null && size !== 'auto') {
    const match = typeof size === 'string' ? SIZE.exec(size) : null;
    if (!match) problems.push({ field: 'size', problem: 'not WIDTHxHEIGHT (such as 1024x1024) or auto' });
    else if (mapping.width && mapping.height) {
      inputs[mapping.width] = Number(match[1]);
      inputs[mapping.height] = Number(match[2]);
    } else problems.push({ field: 'size', problem: 'this endpoint has a fixed size: leave size out, or send auto' });
  }
  if (format !== undefined && format !== null && format !== 'url' && format !== 'b64_json')
    problems.push({ field: 'response_format', problem: 'not url or b64_json' });
  if (model !== undefined && model !== null && typeof model !== 'string') problems.push({ field: 'model', problem: 'not a string' });
  if (problems.length > 0) throw invalidRequest('The request is not valid.', problems);
  const base64 = format === 'b64_json' || ((format === undefined || format === null) && typeof model === 'string' && model.startsWith('gpt-image'));
  return { inputs, base64 };
}

/** The request field a workflow input's problem is about (`inputs.<name>` of a mapped input), or the problem's own field. */
function paramOf(field: string, mapping: OpenAiImagesMapping): string {
  const input = field.startsWith('inputs.') ? field.slice('inputs.'.length) : null;
  if (input === mapping.prompt) return 'prompt';
  if (input === mapping.width || input === mapping.height) return 'size';
  if (input === mapping.n) return 'n';
  return field;
}

/** ComfyUI's message in its refusal of a prompt (`{error: {message}}`). */
function comfyMessage(body: Buffer): string {
  const refusal = parseComfyJson(body) as { error?: { message?: unknown; details?: unknown } } | undefined;
  const message = refusal?.error?.message;
  return typeof message === 'string' ? message.slice(0, 500) : 'no message';
}
