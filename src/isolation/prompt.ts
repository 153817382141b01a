// POST /prompt for keyed callers: the prompt and its client_id become the key's; a user key may load only its own files.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { posix } from 'node:path';
import { forbidden, payloadTooLarge } from '../errors.js';
import { readBody } from '../server/body.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { fileIdOf } from './files.js';
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
 * to another key is refused with 403, and so is a user key's loader node naming a file it does not own.
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
  if (!caller.seesAll) checkLoadedFiles(ctx, caller, body.prompt);
  if (body.prompt_id === undefined || body.prompt_id === null) body.prompt_id = randomUUID();
  const clientId = typeof body.client_id === 'string' && body.client_id !== '' ? body.client_id : null;
  // Both claims go to the store together, so they share one durable write.
  const [clientOwner, promptOwner] = await Promise.all([
    clientId === null ? keyId : ctx.ownership.claim('client', clientId, keyId),
    ctx.ownership.claim('prompt', String(body.prompt_id), keyId),
  ]);
  if (clientOwner !== keyId) throw forbidden('That client_id belongs to another key: use your own (any new id becomes yours).');
  if (promptOwner !== keyId) throw forbidden('That prompt_id belongs to another key.');
  const answer = await ctx.proxy.fetch(req, { body: JSON.stringify(body), headers: { ...headers, 'content-type': 'application/json' } });
  relayAnswer(res, answer);
}

function checkLoadedFiles(ctx: IsolationContext, caller: IsolatedCaller, prompt: unknown): void {
  if (typeof prompt !== 'object' || prompt === null) return;
  const foreign: Array<{ node: string; file: string }> = [];
  for (const [nodeId, node] of Object.entries(prompt as Record<string, { class_type?: unknown; inputs?: Record<string, unknown> }>)) {
    const loader = typeof node?.class_type === 'string' ? FILE_INPUTS[node.class_type] : undefined;
    const name = loader ? node.inputs?.[loader.input] : undefined;
    if (!loader || typeof name !== 'string') continue;
    const id = fileIdOf(posix.basename(name), posix.dirname(name), loader.folder);
    if (ctx.ownership.ownerOf('file', id) !== caller.key.key_id) foreign.push({ node: nodeId, file: name });
  }
  if (foreign.length > 0) {
    throw forbidden(`The prompt loads files this key did not upload or produce: ${foreign.map((f) => `node ${f.node} (${f.file})`).join(', ')}.`);
  }
}
