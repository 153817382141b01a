// /view and uploads for isolated callers: a user key downloads only files it uploaded or its prompts produced, and uploads only to input.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { posix } from 'node:path';
import { fileNameTaken, forbidden, invalidRequest, uploadIncomplete, type GatewayError } from '../errors.js';
import type { PoolBackend } from '../backends/backend-pool.js';
import { effectivePolicy } from '../policy/check.js';
import type { PromptPolicy } from '../policy/schema.js';
import { addResponseHeaders } from '../server/gateway-response.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { recordRecentOutputs } from './context.js';
import { checkFileReference, fileIdOf, namedFileOf, uploadedFileId } from './files.js';
import { checkBoundedId, checkBoundedIds } from './ids.js';
import { emptyNotFound, parseComfyJson, relayAnswer } from './json-body.js';
import { checkOverwritingImage, imageHeadOfUpload, overwrites } from './overwrite-size.js';
import { storedFileOf, uploadToEach } from './upload-fanout.js';
import { multipartBoundary, UploadFormReader, type FormPart } from './upload-form.js';

/**
 * Headers of every file /view and user data serve: a file any key uploaded (an HTML page, an SVG) opened in a tab
 * runs no script on the gateway's origin, where a signed-in admin's cookie would act for it; an image
 * or a video shown in ComfyUI's page is not affected.
 */
const FILE_ANSWER_HEADERS = { 'content-security-policy': 'sandbox', 'x-content-type-options': 'nosniff' };

/** The key's most recent prompts whose history a `/view` of a file not known to be the key's may look up. */
export const VIEW_LOOKUPS = 8;

/** Per gateway, the lookup each key has in flight: misses that arrive meanwhile wait for it instead of starting their own. */
const lookupsInFlight = new WeakMap<IsolationContext, Map<string, Promise<void>>>();

/** GET /view: another key's file answers an empty 404, exactly like a file that does not exist. */
export async function getView(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller, query: URLSearchParams): Promise<void> {
  if (!caller.seesAll) {
    checkBoundedIds({ filename: query.get('filename'), subfolder: query.get('subfolder') });
    checkFileReference('filename', query.get('filename') ?? '', query.get('subfolder') ?? '');
    const id = fileIdOf(query.get('filename') ?? '', query.get('subfolder') ?? '', 'output', query.get('type'));
    const keyId = caller.key.key_id;
    if (ctx.ownership.ownerOf('file', id) !== keyId) {
      // Outputs are recorded when their history or events pass through; a file not seen yet may be in a recent run.
      await lookUpRecentOutputs(ctx, req, caller);
      if (ctx.ownership.ownerOf('file', id) !== keyId) return emptyNotFound(res);
    }
  }
  const backend = await backendServing(ctx, caller, query);
  if (!backend) return emptyNotFound(res);
  servedAsFile(res);
  await backend.proxy.download(req, res, { headers: caller.upstreamHeaders });
}

/**
 * The backend the file a `/view` query names is read from for the caller: any file for an admin key (see
 * backendOfFile), the key's own for a user key (see backendOfOwnFile; whether it owns the file is checked first).
 */
export function backendServing(ctx: IsolationContext, caller: IsolatedCaller, query: URLSearchParams): Promise<PoolBackend | undefined> {
  return caller.seesAll ? backendOfFile(ctx, query) : backendOfOwnFile(ctx, query, caller.key.key_id);
}

/** Gives an answer the headers of a served file (FILE_ANSWER_HEADERS): /view's, and user data files'. */
export function servedAsFile(res: ServerResponse): void {
  addResponseHeaders(res, FILE_ANSWER_HEADERS);
}

/** GET /view without a key (no flag, or --enable-api-auth): ComfyUI's answer, with the headers of a served file. */
export function getAnonymousView(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  servedAsFile(res);
  return ctx.pool.anonymous().proxy.download(req, res);
}

/** How long a backend may take to say whether it has a file. */
export const FILE_PROBE_TIMEOUT_MS = 5000;

/**
 * The backend that has the file `/view` asks for: the backend of the job that made it; for an
 * input file (uploads go to every backend) or a file no job is known to have made, the first
 * backend that answers a HEAD for it with 200 (with one backend, that one). Undefined when no
 * backend has it.
 */
async function backendOfFile(ctx: IsolationContext, query: URLSearchParams): Promise<PoolBackend | undefined> {
  if (!ctx.pool.several) return ctx.pool.all[0];
  const producer = ctx.jobs.jobs.producerOf(query.get('type') ?? 'output', query.get('subfolder') ?? '', query.get('filename') ?? '');
  if (producer) return ctx.pool.bound(producer.backend);
  for (const backend of probedBackends(ctx)) if (await hasFile(backend, query)) return backend;
  return undefined;
}

/** The backends a file may be asked of: those up first, then those not known to be down. */
function probedBackends(ctx: IsolationContext): PoolBackend[] {
  return [...ctx.pool.up(), ...ctx.pool.all.filter((backend) => backend.health.current !== 'up' && !backend.isDown())];
}

/** Whether the backend answers a HEAD of the `/view` query with 200. */
async function hasFile(backend: PoolBackend, query: URLSearchParams): Promise<boolean> {
  return (await fileProbe(backend, query)) === true;
}

/** Whether the backend has the file the `/view` query names: 200 yes, 404 no; undefined when it says neither in time. */
async function fileProbe(backend: PoolBackend, query: URLSearchParams): Promise<boolean | undefined> {
  const status = await backend.proxy.probe(`/api/view?${query}`, FILE_PROBE_TIMEOUT_MS, 'HEAD').catch(() => 0);
  return status === 200 ? true : status === 404 ? false : undefined;
}

/**
 * The backend a user key's file is served from. With several backends, ComfyUI numbers outputs per
 * backend, so one name may be another file, another key's, on each: an output or temp file is served
 * from the backend of the key's own job that made it, and only while that job is the newest to make a
 * file of that name (the key's older file of the name is then not told apart, and not served). When no
 * job is known to have made it (its outputs are recorded a moment after its events pass, or the job was
 * forgotten), it is served only from a backend that alone has a file of the name, when every backend says
 * whether it has one. Inputs go to every
 * backend under one name, and are found as backendOfFile finds them.
 */
async function backendOfOwnFile(ctx: IsolationContext, query: URLSearchParams, keyId: string): Promise<PoolBackend | undefined> {
  const file = namedFileOf(query.get('filename') ?? '', query.get('subfolder') ?? '', 'output', query.get('type'));
  if (!ctx.pool.several || file.type === 'input') return backendOfFile(ctx, query);
  const producer = ctx.jobs.jobs.producerOf(file.type, file.subfolder, posix.basename(file.filename));
  if (producer) return producer.key_id === keyId ? ctx.pool.bound(producer.backend) : undefined;
  // A backend that is down, or does not say whether it has the file, may hold the key's own: the one that answers yes is then another key's.
  const answers = await Promise.all(ctx.pool.all.map((backend) => (backend.isDown() ? Promise.resolve(undefined) : fileProbe(backend, query))));
  if (answers.includes(undefined)) return undefined;
  const holding = ctx.pool.all.filter((_, i) => answers[i] === true);
  return holding.length === 1 ? holding[0] : undefined;
}

/** Records the outputs of the key's `VIEW_LOOKUPS` most recent prompts: at most that many upstream requests, shared by concurrent misses. */
function lookUpRecentOutputs(ctx: IsolationContext, req: IncomingMessage, caller: IsolatedCaller): Promise<void> {
  let inFlight = lookupsInFlight.get(ctx);
  if (!inFlight) lookupsInFlight.set(ctx, (inFlight = new Map()));
  const keyId = caller.key.key_id;
  let lookup = inFlight.get(keyId);
  if (!lookup) {
    lookup = recordRecentOutputs(ctx, req, caller, VIEW_LOOKUPS).finally(() => inFlight.delete(keyId));
    inFlight.set(keyId, lookup);
  }
  return lookup;
}

/**
 * POST /upload/image and /upload/mask: the stored file, as ComfyUI names it in its answer, becomes the
 * caller's. With several backends it goes to each (see sendUpload), and becomes the caller's only when
 * every one stored it under the same name. A user key's form is read as it streams on (see UploadFormReader) and refused before
 * ComfyUI can act on it when it uploads anywhere but input, overwrites another key's file, overwrites
 * a file with an image its policy's max_width, max_height or max_batch_size refuses, or masks an image that is not the key's.
 */
export async function postUpload(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  let reader: UploadFormReader | null = null;
  /** The claim an overwriting upload of a user key makes before ComfyUI writes: the file id it holds, once it resolves (released if ComfyUI did not store it). */
  const claimed: EarlyClaim = {};
  if (!caller.seesAll) {
    const boundary = multipartBoundary(req.headers['content-type']);
    if (boundary === null) {
      throw invalidRequest('An upload must be multipart/form-data with a boundary.', [
        { field: 'content-type', problem: 'not multipart/form-data; boundary=…' },
      ]);
    }
    const policy = effectivePolicy(caller.key, ctx.defaultPolicy);
    const form = (reader = new UploadFormReader(
      boundary,
      (parts) => checkUserUpload(ctx, caller.key.key_id, policy, parts, claimed),
      imageHeadOfUpload(policy),
    ));
    req.pipe(form);
    // A refused form still reads the client's body to its end, so the client gets the answer.
    form.once('error', () => req.resume());
    req.once('close', () => {
      if (!req.complete) form.destroy(new Error('the client went away mid-upload'));
    });
  }
  const keyId = caller.key.key_id;
  let answer;
  try {
    answer = await sendUpload(ctx, req, caller, reader);
  } catch (error) {
    await releaseUnless(ctx, keyId, claimed, undefined);
    throw reader?.refusal ?? error;
  }
  const stored = storedFileOf(answer);
  const storedId = stored ? uploadedFileId(stored.type, stored.subfolder, stored.name) : undefined;
  await releaseUnless(ctx, keyId, claimed, storedId);
  // Another key's overwriting upload of the same name claimed it first: the name (and what ComfyUI now holds under it) is that key's.
  if (storedId && (await ctx.ownership.claim('file', storedId, keyId)) !== keyId && !caller.seesAll) throw fileNameTaken();
  relayAnswer(res, answer);
}

/** An overwriting upload's claim of its file, made as its form ends: the file id it holds once granted (undefined when refused). */
interface EarlyClaim {
  made?: Promise<string | undefined>;
}

/**
 * Releases the upload's early claim unless it is of `storedId`, the file ComfyUI said it stored. A claim still
 * in flight (ComfyUI answered, or the upload failed, before the form's end was checked) is waited for first,
 * so that no claim outlives an upload that wrote nothing under its name.
 */
async function releaseUnless(ctx: IsolationContext, keyId: string, claimed: EarlyClaim, storedId: string | undefined): Promise<void> {
  const fileId = await claimed.made?.catch(() => undefined);
  if (fileId !== undefined && fileId !== storedId) await ctx.ownership.release('file', fileId, keyId).catch(() => undefined);
}

/**
 * Sends the upload (the checked form of a user key, else the client's body) to every backend that is
 * not confirmed down, so that a prompt loading the file can run on any of them (see uploadToEach); with
 * one such backend, to it alone. A user key's upload needs every backend: one that missed a key's file
 * would store another key's upload of that name (or of the next name ComfyUI picks) under it, and serve
 * that in its place.
 * @throws GatewayError 502 UPLOAD_INCOMPLETE, before anything is sent, for a user key's upload while a backend is down
 */
function sendUpload(ctx: IsolationContext, req: IncomingMessage, caller: IsolatedCaller, reader: UploadFormReader | null): Promise<UpstreamAnswer> {
  const down = ctx.pool.several && reader ? ctx.pool.all.filter((backend) => backend.isDown()) : [];
  if (down.length > 0) {
    const refusal = uploadIncomplete(down.map((backend) => ({ backend: backend.name, problem: "is down, and a user key's upload must reach every backend" })));
    reader!.destroy(refusal);
    return Promise.reject(refusal);
  }
  const backends = ctx.pool.all.filter((backend) => !backend.isDown());
  if (backends.length > 1) return uploadToEach(backends, req, reader ?? req, caller.upstreamHeaders);
  return ctx.pool.any().proxy.fetch(req, { headers: caller.upstreamHeaders, ...(reader ? { body: reader } : {}) });
}

/**
 * What ComfyUI's upload reads of the form (the first part of each name), checked for a user key (whose
 * prompt policy is `policy`). An upload that overwrites must hold an image within the policy's max_width,
 * max_height and max_batch_size limits (see checkOverwritingImage), and claims its file before ComfyUI writes it (its end waits for the claim), so
 * that two keys' uploads of one name at once, on one replica or several, cannot both pass: the
 * second key gets 403, and an upload without overwrite that ComfyUI stored under the name meanwhile
 * gets 409 (postUpload).
 */
function checkUserUpload(
  ctx: IsolationContext,
  keyId: string,
  policy: PromptPolicy | null,
  parts: ReadonlyMap<string, FormPart>,
  claimed: EarlyClaim,
): void | Promise<void> {
  const text = (name: string): string | undefined => {
    const part = parts.get(name);
    return part && part.filename === null ? part.value : undefined;
  };
  const type = parts.get('type');
  if (type && (type.filename !== null || type.value !== 'input')) {
    throw forbidden('User keys upload to input only: leave the type field out or send type=input.');
  }
  const subfolder = text('subfolder') ?? '';
  const filename = parts.get('image')?.filename ?? null;
  checkBoundedIds({ subfolder, filename });
  if (filename !== null) checkFileReference('image', filename, subfolder);
  else checkFileReference('subfolder', '', subfolder);
  let unclaimed: string | undefined;
  if (filename !== null && overwrites(parts)) {
    const id = uploadedFileId('input', subfolder, filename);
    const owner = ctx.ownership.ownerOf('file', id);
    if (owner !== undefined && owner !== keyId) throw fileOfAnotherKey();
    checkOverwritingImage(policy, parts.get('image')!);
    if (owner === undefined) unclaimed = id;
  }
  // ComfyUI reads original_ref with Python's json.loads, which takes NaN and Infinity: it is read so here, and one that cannot be read is refused.
  const refText = text('original_ref');
  const originalRef = refText === undefined ? undefined : (parseComfyJson(refText) as { filename?: unknown; subfolder?: unknown; type?: unknown } | undefined);
  if (refText !== undefined && (typeof originalRef !== 'object' || originalRef === null || Array.isArray(originalRef))) {
    throw invalidRequest('original_ref must be a JSON object naming the image the mask is for.', [{ field: 'original_ref', problem: 'not a JSON object' }]);
  }
  if (typeof originalRef?.filename === 'string') {
    const { filename: name, subfolder: folder, type: refType } = originalRef;
    checkBoundedId('original_ref.filename', name);
    checkFileReference('original_ref', name, typeof folder === 'string' ? folder : '');
    const id = fileIdOf(
      posix.basename(name),
      posix.join(typeof folder === 'string' ? folder : '', posix.dirname(name)),
      'output',
      typeof refType === 'string' ? refType : null,
    );
    if (ctx.ownership.ownerOf('file', id) !== keyId) throw forbidden('original_ref names an image this key did not upload or produce.');
    // The mask goes to every backend, and each would read its own file of that name: the same name on each only for an upload.
    if (ctx.pool.several && !id.startsWith('input/')) throw forbidden('With several backends, a mask is made of an uploaded image (type input) only.');
  }
  if (unclaimed === undefined) return;
  const id = unclaimed;
  const made = ctx.ownership.claim('file', id, keyId).then((owner) => (owner === keyId ? id : undefined));
  claimed.made = made;
  return made.then((owned) => {
    if (owned === undefined) throw fileOfAnotherKey();
  });
}

const fileOfAnotherKey = (): GatewayError => forbidden('That file belongs to another key: upload without overwrite, or under another name.');
