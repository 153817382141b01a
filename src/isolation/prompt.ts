// POST /prompt for keyed callers: the prompt and its client_id become the key's; a user key may load only its own files.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { posix } from 'node:path';
import { forbidden, invalidRequest, payloadTooLarge } from '../errors.js';
import { readBody } from '../server/body.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { fileIdOf } from './files.js';
import { checkBoundedId, checkBoundedIds, isBoundedId } from './ids.js';
import { parseJsonOrUndefined, relayAnswer } from './json-body.js';

/** Largest prompt the gateway reads (a graph with its embedded workflow). */
const MAX_PROMPT_BYTES = 32 * 1024 * 1024;

/** Loader nodes whose input names a file, and the folder that name is in. */
const FILE_INPUTS: Record<string, { input: string; folder: 'input' | 'output' }> = {
  LoadImage: { input: 'image', folder: 'input' },
  LoadImageMask: { input: 'image', folder: 'input' },
  LoadImageOutput: { input: 'image', folder: 'output' },
  LoadAudio: { input: 'audio', folder: 'input' },
  LoadVideo: { input: 'file', folder: 'input' },
};

/**
 * Claims the prompt for the caller before ComfyUI sees it (a prompt_id is minted when the client gave
 * none), so its first WebSocket events already have an owner. A client_id or prompt_id that belongs
 * to another key is refused with 403, and so is a user key's loader node naming a file it does not own;
 * ids longer than 200 bytes or not printable are refused with 400. Claims this request made are released
 * when it is refused here or ComfyUI refuses the prompt (kept when ComfyUI's answer is lost: it may have
 * queued it); when ComfyUI answers with another prompt_id (older versions ignore the client's), that id
 * is claimed in its place.
 */
export async function postPrompt(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const raw = await readBody(req, MAX_PROMPT_BYTES, () => payloadTooLarge(MAX_PROMPT_BYTES));
  const body = parseJsonOrUndefined(raw) as Record<string, unknown> | undefined;
  const headers = { ...caller.upstreamHeaders };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    // Not a prompt at all: ComfyUI gives its own answer, and nothing is queued to claim.
    return relayAnswer(res, await ctx.proxy.fetch(req, { body: raw, headers }));
  }
  const keyId = caller.key.key_id;
  if (body.prompt_id !== undefined && body.prompt_id !== null && typeof body.prompt_id !== 'string') {
    throw invalidRequest('prompt_id must be a string (or left out, and one is made).', [{ field: 'prompt_id', problem: `a ${typeof body.prompt_id}` }]);
  }
  const clientId = typeof body.client_id === 'string' && body.client_id !== '' ? body.client_id : null;
  checkBoundedIds({ prompt_id: body.prompt_id, client_id: clientId });
  if (!caller.seesAll) checkLoadedFiles(ctx, caller, body.prompt);
  const promptId = typeof body.prompt_id === 'string' ? body.prompt_id : randomUUID();
  body.prompt_id = promptId;
  const claimed = await claimPrompt(ctx, keyId, promptId, clientId);
  const answer = await ctx.proxy.fetch(req, { body: JSON.stringify(body), headers: { ...headers, 'content-type': 'application/json' } });
  const answered = answer.status === 200 ? (parseJsonOrUndefined(answer.body) as { prompt_id?: unknown } | undefined)?.prompt_id : undefined;
  if (answer.status !== 200) {
    await releaseClaims(ctx, keyId, claimed);
  } else if (typeof answered === 'string' && answered !== promptId && isBoundedId(answered)) {
    const answeredIsClaimed = await ctx.ownership.claim('prompt', answered, keyId).then(
      (owner) => owner === keyId,
      () => false,
    );
    if (answeredIsClaimed) await releaseClaims(ctx, keyId, { ...claimed, client: null });
  }
  relayAnswer(res, answer);
}

/** The claims a request made (null: none, or one the key held before). */
interface NewClaims {
  prompt: string | null;
  client: string | null;
}

/** Claims the prompt and its client_id for the key, in one durable write; refuses (and releases) when either is another key's. */
async function claimPrompt(ctx: IsolationContext, keyId: string, promptId: string, clientId: string | null): Promise<NewClaims> {
  const claimed: NewClaims = {
    prompt: ctx.ownership.ownerOf('prompt', promptId) === undefined ? promptId : null,
    client: clientId !== null && ctx.ownership.ownerOf('client', clientId) === undefined ? clientId : null,
  };
  const [client, prompt] = await Promise.allSettled([
    clientId === null ? keyId : ctx.ownership.claim('client', clientId, keyId),
    ctx.ownership.claim('prompt', promptId, keyId),
  ]);
  const owner = (result: PromiseSettledResult<string>): string | undefined => (result.status === 'fulfilled' ? result.value : undefined);
  if (owner(client) === keyId && owner(prompt) === keyId) return claimed;
  await releaseClaims(ctx, keyId, claimed);
  for (const result of [client, prompt]) if (result.status === 'rejected') throw result.reason;
  if (owner(client) !== keyId) throw forbidden('That client_id belongs to another key: use your own (any new id becomes yours).');
  throw forbidden('That prompt_id belongs to another key.');
}

/** Releases what a request claimed; a release that fails leaves the claim to expire. */
async function releaseClaims(ctx: IsolationContext, keyId: string, claimed: NewClaims): Promise<void> {
  await Promise.all([
    claimed.prompt === null ? undefined : ctx.ownership.release('prompt', claimed.prompt, keyId).catch(() => undefined),
    claimed.client === null ? undefined : ctx.ownership.release('client', claimed.client, keyId).catch(() => undefined),
  ]);
}

function checkLoadedFiles(ctx: IsolationContext, caller: IsolatedCaller, prompt: unknown): void {
  if (typeof prompt !== 'object' || prompt === null) return;
  const foreign: Array<{ node: string; file: string }> = [];
  for (const [nodeId, node] of Object.entries(prompt as Record<string, { class_type?: unknown; inputs?: Record<string, unknown> }>)) {
    const loader = typeof node?.class_type === 'string' ? FILE_INPUTS[node.class_type] : undefined;
    const name = loader ? node.inputs?.[loader.input] : undefined;
    if (!loader || typeof name !== 'string') continue;
    checkBoundedId(`prompt node ${nodeId.slice(0, 64)} input ${loader.input}`, name);
    const id = fileIdOf(posix.basename(name), posix.dirname(name), loader.folder);
    if (ctx.ownership.ownerOf('file', id) !== caller.key.key_id) foreign.push({ node: nodeId, file: name });
  }
  if (foreign.length > 0) {
    throw forbidden(`The prompt loads files this key did not upload or produce: ${foreign.map((f) => `node ${f.node} (${f.file})`).join(', ')}.`);
  }
}
