// /view and uploads for isolated callers: a user key downloads only files it uploaded or its prompts produced.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { recordRecentOutputs } from './context.js';
import { fileId, fileIdOf } from './files.js';
import { emptyNotFound, parseJsonOrUndefined, relayAnswer } from './json-body.js';

/** GET /view: another key's file answers an empty 404, exactly like a file that does not exist. */
export async function getView(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller, query: URLSearchParams): Promise<void> {
  if (!caller.seesAll) {
    const id = fileIdOf(query.get('filename') ?? '', query.get('subfolder') ?? '', 'output', query.get('type'));
    const keyId = caller.key.key_id;
    if (ctx.ownership.ownerOf('file', id) !== keyId) {
      // Outputs are recorded when their history or events pass through; a file not seen yet may be in a recent run.
      await recordRecentOutputs(ctx, req, caller);
      if (ctx.ownership.ownerOf('file', id) !== keyId) return emptyNotFound(res);
    }
  }
  await ctx.proxy.forward(req, res, { headers: caller.upstreamHeaders });
}

/** POST /upload/image and /upload/mask: the stored file, as ComfyUI names it in its answer, becomes the caller's. */
export async function postUpload(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const answer = await ctx.proxy.fetch(req, { headers: caller.upstreamHeaders });
  const stored = answer.status === 200 ? (parseJsonOrUndefined(answer.body) as { name?: unknown; subfolder?: unknown; type?: unknown } | undefined) : undefined;
  if (typeof stored?.name === 'string') {
    const type = typeof stored.type === 'string' ? stored.type : 'input';
    await ctx.ownership.claim('file', fileId(type, typeof stored.subfolder === 'string' ? stored.subfolder : '', stored.name), caller.key.key_id);
  }
  relayAnswer(res, answer);
}
