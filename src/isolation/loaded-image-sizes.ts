// The sizes of the images a prompt's loaders name, read from the start of each file through ComfyUI's /view, for a policy that limits sizes.

import type { PoolBackend } from '../backends/backend-pool.js';
import { invalidRequest } from '../errors.js';
import { headerBytesWanted, headerSize, type ImageSize } from '../policy/image-header.js';
import { isImageLoader, loadedImageFile, loadedImageKey } from '../policy/loaded-images.js';
import { nodesAsChecked, type NodeReplacements, type PromptNode } from '../policy/node-replacements.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { fileReferenceProblem, type NamedFile } from './files.js';
import { backendServing, FILE_PROBE_TIMEOUT_MS } from './view.js';

/** Most distinct image files a prompt may load under a size limit: each costs a read of ComfyUI. */
export const MAX_LOADED_IMAGES = 64;

/** The first read of a file: a PNG, GIF, BMP or WebP header is at its start, and nearly every JPEG's frame header within it. */
const FIRST_READ_BYTES = 64 * 1024;

/**
 * The size of each image file the prompt's image loaders name (nodes as nodesAsChecked lists them), by
 * loadedImageKey: its header, read with ranged GETs of `/view` from the backend that serves it to the caller
 * (see backendServing). A file is left out, so that its loader counts as of unknown size, when it is not a
 * user key's own (a name that could read as another file included), no backend serves it, ComfyUI does not
 * answer, or its header is not one imageHeaderSize reads within MAX_HEADER_BYTES.
 * @throws GatewayError 400 INVALID_REQUEST for a prompt loading more than MAX_LOADED_IMAGES distinct files
 */
export async function readLoadedImageSizes(
  ctx: IsolationContext,
  caller: IsolatedCaller,
  prompt: unknown,
  replacements: NodeReplacements,
): Promise<Map<string, ImageSize>> {
  const files = new Map<string, NamedFile>();
  for (const [, node] of nodesAsChecked(prompt, replacements)) {
    if (typeof (node as Partial<PromptNode> | null)?.class_type !== 'string' || !isImageLoader(node as PromptNode)) continue;
    const file = loadedImageFile(node as PromptNode);
    if (file) files.set(loadedImageKey(file), file);
  }
  if (files.size > MAX_LOADED_IMAGES) {
    throw invalidRequest(
      `The prompt loads ${files.size} image files, and under this key's max_width or max_height the gateway reads the size of at most ${MAX_LOADED_IMAGES}: split it.`,
      [{ field: 'prompt', problem: `loads more than ${MAX_LOADED_IMAGES} image files` }],
    );
  }
  const sizes = new Map<string, ImageSize>();
  await Promise.all(
    [...files].map(async ([key, file]) => {
      const size = await readImageSize(ctx, caller, file);
      if (size) sizes.set(key, size);
    }),
  );
  return sizes;
}

/** The size of one loaded file the caller may read, from its header; undefined when it cannot be learnt (see readLoadedImageSizes). */
async function readImageSize(ctx: IsolationContext, caller: IsolatedCaller, file: NamedFile): Promise<ImageSize | undefined> {
  const own =
    caller.seesAll ||
    (fileReferenceProblem(file.filename, file.subfolder) === null && ctx.ownership.ownerOf('file', loadedImageKey(file)) === caller.key.key_id);
  if (!own) return undefined;
  const query = new URLSearchParams({ filename: file.filename, subfolder: file.subfolder, type: file.type });
  const backend = await backendServing(ctx, caller, query).catch(() => undefined);
  if (!backend) return undefined;
  let head = Buffer.alloc(0);
  let wanted = FIRST_READ_BYTES;
  for (;;) {
    const part = await readRange(backend, caller, query, head.length, wanted);
    if (part === undefined) return undefined;
    head = Buffer.concat([head, part]);
    // Each further read at least doubles what is read: a file costs at most five reads.
    const next = headerBytesWanted(head);
    if (next === 0) return headerSize(head);
    // The file ended before its header did.
    if (head.length < wanted) return undefined;
    wanted = next;
  }
}

/**
 * Bytes `start` to `end` (exclusive) of the file a `/view` query names, or fewer when the file ends first: a
 * 206 for that range, or a 200 of the whole file from its start (for a ComfyUI that ignores Range; a file
 * longer than the range is then cut off and refused). Undefined for any other answer, or none.
 */
async function readRange(backend: PoolBackend, caller: IsolatedCaller, query: URLSearchParams, start: number, end: number): Promise<Buffer | undefined> {
  const answer = await backend.proxy
    .fetch(null, {
      method: 'GET',
      path: `/api/view?${query}`,
      headers: { ...caller.upstreamHeaders, range: `bytes=${start}-${end - 1}` },
      timeoutMs: FILE_PROBE_TIMEOUT_MS,
      maxBytes: end - start,
    })
    .catch(() => undefined);
  if (answer?.status === 206 && String(answer.headers['content-range']).startsWith(`bytes ${start}-`)) return answer.body;
  return answer?.status === 200 && start === 0 ? answer.body : undefined;
}
