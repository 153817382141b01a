// POST /prompt for keyed callers: the prompt and its client_id become the key's; a user key may load only its own files.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { forbidden, GatewayError, invalidRequest, payloadTooLarge, unknownBackend } from '../errors.js';
import { checkPrompt, effectivePolicy, type PromptOrigin } from '../policy/check.js';
import { sideLimits } from '../policy/loaded-images.js';
import { nodesAsChecked } from '../policy/node-replacements.js';
import type { Reservation } from '../jobs/job-service.js';
import { stringifyExactJson } from '../json/exact-json.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import { withJsonTextBody } from '../store/json-text-body.js';
import { holdsUnstorableText } from '../store/storable-text.js';
import type { JobWebhook } from '../store/types.js';
import { readBody } from '../server/body.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { checkBoundedIds } from './ids.js';
import { relayAnswer, undefinedIfNotJson } from './json-body.js';
import { checkLoadedFiles } from './loaded-files.js';
import { readLoadedSizes } from './loaded-sizes.js';
import { checkOutputPrefixes } from './output-names.js';
import { promptAnswerShown } from './server-paths.js';

/** Largest prompt the gateway reads (a graph with its embedded workflow). */
export const MAX_PROMPT_BYTES = 32 * 1024 * 1024;

/**
 * POST /prompt: admits the prompt (see admitPrompt) and relays ComfyUI's answer, or the gateway's for a
 * held job. A body that is not a JSON object in UTF-8 is refused with 400 (after the key's prompt policy,
 * which may refuse it first for its size or `workflows_only`) and never reaches ComfyUI, which reads more
 * than JSON.parse does (`NaN`, `Infinity`, the charset its Content-Type names) and could run it unchecked.
 * Numbers go on as the client wrote them (see parseExactJson): `7.0` stays a float and a 64-bit seed exact; a large
 * body that needs the exact reader is parsed in a worker thread (see JsonRewriter.parseBody).
 * @throws GatewayError 400 INVALID_REQUEST for a body that is not a JSON object; as admitPrompt; Error when the JSON worker thread fails
 */
export async function postPrompt(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const raw = await readBody(req, MAX_PROMPT_BYTES, () => payloadTooLarge(MAX_PROMPT_BYTES));
  const body = (await ctx.rewriter.parseBody(raw.toString()).catch(undefinedIfNotJson)) as Record<string, unknown> | undefined;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    const policy = effectivePolicy(caller.key, ctx.defaultPolicy);
    if (policy) checkPrompt(policy, undefined, raw.length);
    throw invalidRequest('The body must be a JSON object in UTF-8, such as {"prompt": {...}}.', [
      { field: 'body', problem: body === undefined ? 'not JSON (in UTF-8, without NaN or Infinity)' : 'not an object' },
    ]);
  }
  relayAnswer(res, await admitPrompt(ctx, req, caller, body, raw.length));
}

/**
 * Admits a prompt body (as POST /prompt takes it) as a job of the caller's key (see JobService.admit)
 * and resolves ComfyUI's answer, or the gateway's for a held job (200 with the job's `prompt_id`). A
 * prompt_id is minted when the client gave none; the client's client_id is kept in the job and ComfyUI
 * is given the gateway's own, so the gateway sees the job's events and passes them on to the client's
 * sockets. A client_id that belongs to another key is refused with 403, and so is a taken prompt_id or
 * a user key's loader node naming a file it does not own (a node read both as sent and as the node ComfyUI
 * replaces it with, see nodesAsChecked); ids longer than 200 bytes or not printable
 * are refused with 400. A user key's `front` and `number` are dropped: the gateway's fair queue orders
 * its jobs. A prompt its key's prompt policy refuses (`bodyBytes` is the size the policy's
 * `max_prompt_bytes` reads; `origin` says whether it is a registered workflow's, which `workflows_only`
 * lets through) gets 403 PROMPT_POLICY before anything is claimed or sent. `webhook` (a checked one, from a
 * run) replaces the key's default webhook; `reservation` (a run's, see checkPromptAdmissible) is let go as
 * the prompt is admitted. `body` is changed in place. A user key gets ComfyUI's answer without server paths in its
 * `error` and `node_errors` (see promptAnswerShown).
 * @throws GatewayError as above, and as JobService.admit (quotas, a lost answer)
 */
export async function admitPrompt(
  ctx: IsolationContext,
  req: IncomingMessage,
  caller: IsolatedCaller,
  body: Record<string, unknown>,
  bodyBytes: number,
  origin: PromptOrigin = {},
  webhook: JobWebhook | null = null,
  reservation: Reservation | null = null,
): Promise<UpstreamAnswer> {
  await checkPolicy(ctx, caller, body.prompt, bodyBytes, origin);
  const keyId = caller.key.key_id;
  if (body.prompt_id !== undefined && body.prompt_id !== null && typeof body.prompt_id !== 'string') {
    throw invalidRequest('prompt_id must be a string (or left out, and one is made).', [{ field: 'prompt_id', problem: `a ${typeof body.prompt_id}` }]);
  }
  const extraData =
    typeof body.extra_data === 'object' && body.extra_data !== null && !Array.isArray(body.extra_data) ? (body.extra_data as Record<string, unknown>) : null;
  // ComfyUI reads the top-level client_id over the one in extra_data.
  const given = body.client_id !== undefined ? body.client_id : extraData?.client_id;
  const clientId = typeof given === 'string' && given !== '' ? given : null;
  checkBoundedIds({ prompt_id: body.prompt_id, client_id: clientId });
  const producerOf = ctx.pool.several ? (type: string, subfolder: string, filename: string) => ctx.jobs.jobs.producerOf(type, subfolder, filename) : null;
  let madeOn: string | undefined;
  if (!caller.seesAll) {
    checkPromptText(body.prompt);
    // ComfyUI runs a node of a replaced class_type as its replacement, with inputs renamed: the checks read both.
    const nodes = nodesAsChecked(body.prompt, await ctx.nodeReplacements());
    checkOutputPrefixes(nodes, keyId, ctx.jobs.jobs);
    madeOn = checkLoadedFiles({ ownership: ctx.ownership, producerOf }, keyId, nodes);
  }
  const chosenId = typeof body.prompt_id === 'string';
  const promptId = chosenId ? (body.prompt_id as string) : randomUUID();
  const formerOwner = ctx.ownership.ownerOf('prompt', promptId);
  if (formerOwner !== undefined) throw forbidden('That prompt_id is taken: leave prompt_id out and one is made.');
  if (clientId === ctx.jobs.clientId) throw forbidden("That client_id is the gateway's own: use another.");
  const pin = pinnedBackend(ctx, req, caller) ?? madeOn;
  // A new claim is held with the key's other prompts under way that use it: the last refused one lets it go (see ClientClaimHolds).
  const hold = clientId === null ? undefined : ctx.jobs.clientClaims.join(clientId, keyId, ctx.ownership.ownerOf('client', clientId) === undefined);
  if (hold?.letGo) await hold.letGo;
  const owner =
    clientId === null
      ? keyId
      : await ctx.ownership.claim('client', clientId, keyId).catch(async (error: unknown) => {
          await leave(false);
          throw error;
        });
  if (owner !== keyId) {
    await leave(false);
    throw forbidden('That client_id belongs to another key: use your own (any new id becomes yours).');
  }
  /** Lets go of the hold: `admitted` when ComfyUI queued the prompt, the gateway holds it, or its answer was lost (it may have queued it). */
  async function leave(admitted: boolean): Promise<void> {
    if (hold) await ctx.jobs.clientClaims.leave(clientId!, hold, admitted);
  }
  body.prompt_id = promptId;
  body.client_id = ctx.jobs.clientId;
  if (extraData && 'client_id' in extraData) extraData.client_id = ctx.jobs.clientId;
  if (!caller.seesAll) {
    delete body.front;
    delete body.number;
  }
  const answer = await ctx.jobs
    .admit({
      key: caller.key,
      promptId,
      chosenId,
      clientId,
      request: withJsonTextBody({ body, headers: caller.upstreamHeaders, ...(pin ? { pin } : {}) }),
      front: caller.seesAll && body.front === true,
      ...(webhook ? { webhook } : {}),
      ...(reservation ? { reservation } : {}),
    })
    .catch(async (error: unknown) => {
      await leave(!(error instanceof GatewayError && error.status < 500));
      throw error;
    });
  if (hold) await leave(answer.status === 200);
  return caller.seesAll ? answer : promptAnswerShown(answer);
}

/**
 * Refuses a user key's prompt whose text is not Unicode: an unpaired surrogate (`\udcc3`) or NUL. Python
 * writes a file name holding unpaired surrogates as the bytes they escape (surrogateescape), so a save
 * node's `filename_prefix` of `caf\udcc3\udca9` writes `café_00001_.png` over another key's file, and
 * any name the gateway checks could be another file on disk.
 * @throws GatewayError 400 INVALID_REQUEST
 */
function checkPromptText(prompt: unknown): void {
  if (!holdsUnstorableText(prompt)) return;
  throw invalidRequest(
    "The prompt must be Unicode text: an unpaired surrogate escape (such as \\udcc3) or NUL names other bytes on ComfyUI's disk. Write the characters themselves.",
    [{ field: 'prompt', problem: 'holds an unpaired surrogate or NUL' }],
  );
}

/**
 * The checks of admitPrompt that read only the caller's key and the prompt body: its prompt policy, then its
 * job quotas. A run makes them before it stores anything for its prompt (a workflow run's image inputs);
 * admitPrompt makes them again on the body it sends. Resolves the place kept among the key's jobs for the
 * prompt (see JobService.reserve), which the caller passes to admitPrompt, or lets go of if it sends none.
 * @throws GatewayError 403 PROMPT_POLICY; 429 as JobService.checkQuotas
 */
export async function checkPromptAdmissible(
  ctx: IsolationContext,
  caller: IsolatedCaller,
  body: Record<string, unknown>,
  origin: PromptOrigin,
): Promise<Reservation> {
  // A run's images are stored after this check: their sizes are read by the check of the prompt it sends.
  await checkPolicy(ctx, caller, body.prompt, Buffer.byteLength(stringifyExactJson(body)), origin, 'later');
  return ctx.jobs.reserve(caller.key);
}

/**
 * Refuses a prompt its key's prompt policy (or the gateway's default one) refuses (403 PROMPT_POLICY). When
 * the policy sets max_width, max_height, max_batch_size or max_frames, the sizes of the files the prompt loads
 * that it limits are read first (see readLoadedSizes), unless `loaded` says they are read `later`.
 * @throws GatewayError 403 PROMPT_POLICY; 400 as readLoadedSizes
 */
async function checkPolicy(
  ctx: IsolationContext,
  caller: IsolatedCaller,
  prompt: unknown,
  bodyBytes: number,
  origin: PromptOrigin,
  loaded: 'read' | 'later' = 'read',
): Promise<void> {
  const policy = effectivePolicy(caller.key, ctx.defaultPolicy);
  if (!policy) return;
  const replacements = await ctx.nodeReplacements();
  const loadsLimited = sideLimits(policy).length > 0 || policy.max_batch_size !== undefined || policy.max_frames !== undefined;
  const sizes = loaded === 'read' && loadsLimited ? await readLoadedSizes(ctx, caller, prompt, replacements, policy) : 'later';
  checkPrompt(policy, prompt, bodyBytes, origin, replacements, sizes);
}

/** The header by which an admin key pins a prompt to one backend. */
export const PIN_HEADER = 'x-comfy-gate-backend';

/**
 * The backend an admin key pinned the prompt to with `X-Comfy-Gate-Backend`, or undefined.
 * @throws GatewayError 403 for a user key that sends the header; 400 UNKNOWN_BACKEND for a name no backend has
 */
function pinnedBackend(ctx: IsolationContext, req: IncomingMessage, caller: IsolatedCaller): string | undefined {
  const given = req.headers[PIN_HEADER];
  if (given === undefined) return undefined;
  if (!caller.seesAll) throw forbidden('Only admin keys may choose the backend of a prompt: leave out X-Comfy-Gate-Backend.');
  const name = Array.isArray(given) ? given.join(',') : given.trim();
  if (!ctx.pool.get(name))
    throw unknownBackend(
      name,
      ctx.pool.all.map((backend) => backend.name),
    );
  return name;
}
