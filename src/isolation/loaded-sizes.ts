// The sizes of the images and latents a prompt's loaders name, read from the start of each file (or the whole image) through ComfyUI's /view, for a policy that limits sizes.

import type { PoolBackend } from '../backends/backend-pool.js';
import { invalidRequest } from '../errors.js';
import { bytesWantedBy, headerReadBy, type HeaderReader } from '../policy/file-header.js';
import { imageFrames, MAX_WHOLE_IMAGE_BYTES } from '../policy/image-frames.js';
import { headerSize, imageHeaderSize } from '../policy/image-header.js';
import { latentHeaderSize, type LatentSize } from '../policy/latent-header.js';
import { isImageLoader, loadedImageFile, loadedImageKey, namesOneFile, sideLimits, type LoadedImage } from '../policy/loaded-images.js';
import { loadedLatentFile, loadedLatentKey } from '../policy/loaded-media.js';
import { nodesAsChecked, type NodeReplacements, type PromptNode } from '../policy/node-replacements.js';
import type { PromptPolicy } from '../policy/schema.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { fileReferenceProblem, type NamedFile } from './files.js';
import { backendServing, FILE_PROBE_TIMEOUT_MS } from './view.js';

/** Most distinct files a prompt may load under a size limit: each costs a read of ComfyUI. */
export const MAX_LOADED_IMAGES = 64;

/** Files read at once for one prompt: at most 16 MiB of whole images in memory per prompt. */
const READS_AT_ONCE = 4;

/** The first read of a file: a PNG, GIF, BMP or WebP header is at its start, and nearly every JPEG's frame header and latent's header within it. */
const FIRST_READ_BYTES = 64 * 1024;

/** A file a loader names, and how it is read: its header, or (`whole`) an image read whole for its size and batch. */
interface LoadedFile {
  file: NamedFile;
  read: HeaderReader<LoadedImage | LatentSize> | 'whole';
}

/**
 * The sizes of the files the prompt's loaders name (nodes as nodesAsChecked lists them) that `policy` holds to
 * a limit: each image an image loader names under max_width, max_height or max_batch_size (by loadedImageKey;
 * under max_batch_size it is read whole, up to MAX_WHOLE_IMAGE_BYTES, for the images it holds, see readWholeImage), and each latent
 * LoadLatent names (by loadedLatentKey; the caller reads them under max_width, max_height, max_batch_size or
 * max_frames). Each is read from its header, with ranged GETs of `/view` from the backend that serves it to the
 * caller (see backendServing). A file is left out, so that its loader counts as of unknown size, when it is not a
 * user key's own (a name that could read as another file included), no backend serves it, ComfyUI does not
 * answer, or its header is not one imageHeaderSize (or latentHeaderSize) reads within MAX_HEADER_BYTES.
 * @throws GatewayError 400 INVALID_REQUEST for a prompt loading more than MAX_LOADED_IMAGES distinct files
 */
export async function readLoadedSizes(
  ctx: IsolationContext,
  caller: IsolatedCaller,
  prompt: unknown,
  replacements: NodeReplacements,
  policy: PromptPolicy,
): Promise<Map<string, LoadedImage | LatentSize>> {
  const images = sideLimits(policy).length > 0 || policy.max_batch_size !== undefined;
  const files = new Map<string, LoadedFile>();
  for (const [, given] of nodesAsChecked(prompt, replacements)) {
    if (typeof (given as Partial<PromptNode> | null)?.class_type !== 'string') continue;
    const node = given as PromptNode;
    const image = images && isImageLoader(node) ? loadedImageFile(node) : undefined;
    if (image) files.set(loadedImageKey(image), { file: image, read: policy.max_batch_size === undefined ? imageHeaderSize : 'whole' });
    const latent = loadedLatentFile(node);
    if (latent) files.set(loadedLatentKey(latent), { file: latent, read: latentHeaderSize });
  }
  if (files.size > MAX_LOADED_IMAGES) {
    throw invalidRequest(
      `The prompt loads ${files.size} image or latent files, and under this key's size limits the gateway reads the size of at most ${MAX_LOADED_IMAGES}: split it.`,
      [{ field: 'prompt', problem: `loads more than ${MAX_LOADED_IMAGES} image or latent files` }],
    );
  }
  const sizes = new Map<string, LoadedImage | LatentSize>();
  const listed = [...files];
  // A few at a time: an image read whole holds up to MAX_WHOLE_IMAGE_BYTES until it is read.
  for (let i = 0; i < listed.length; i += READS_AT_ONCE) {
    await Promise.all(
      listed.slice(i, i + READS_AT_ONCE).map(async ([key, { file, read }]) => {
        const source = await sourceOf(ctx, caller, file);
        const size = source && (await (read === 'whole' ? readWholeImage(source, file) : readHeader(source, read)));
        if (size) sizes.set(key, size);
      }),
    );
  }
  return sizes;
}

/** Where a loaded file is read: the backend that serves it to the caller, and its `/view` query. */
interface FileSource {
  backend: PoolBackend;
  caller: IsolatedCaller;
  query: URLSearchParams;
}

/** Where one loaded file the caller may read is read; undefined when it may not, or no backend serves it (see readLoadedSizes). */
async function sourceOf(ctx: IsolationContext, caller: IsolatedCaller, file: NamedFile): Promise<FileSource | undefined> {
  const own =
    caller.seesAll ||
    (fileReferenceProblem(file.filename, file.subfolder) === null && ctx.ownership.ownerOf('file', loadedImageKey(file)) === caller.key.key_id);
  if (!own) return undefined;
  const query = new URLSearchParams({ filename: file.filename, subfolder: file.subfolder, type: file.type });
  const backend = await backendServing(ctx, caller, query).catch(() => undefined);
  return backend && { backend, caller, query };
}

/**
 * The size of an image read whole (its first MAX_WHOLE_IMAGE_BYTES and one more, so that a longer file shows),
 * with the batch its loader makes of it when the whole file, under a name FFmpeg reads as that one file, shows it
 * (see imageFrames and namesOneFile); undefined when its header gives no size.
 */
async function readWholeImage({ backend, caller, query }: FileSource, file: NamedFile): Promise<LoadedImage | undefined> {
  const head = await readRange(backend, caller, query, 0, MAX_WHOLE_IMAGE_BYTES + 1);
  const size = head && headerSize(head);
  if (!size) return undefined;
  const batch = head.length <= MAX_WHOLE_IMAGE_BYTES && namesOneFile(file) ? imageFrames(head) : undefined;
  return batch === undefined ? size : { ...size, batch };
}

/** What `read` finds in the header of one loaded file; undefined when it cannot be learnt (see readLoadedSizes). */
async function readHeader<T extends object>({ backend, caller, query }: FileSource, read: HeaderReader<T>): Promise<T | undefined> {
  let head = Buffer.alloc(0);
  let wanted = FIRST_READ_BYTES;
  for (;;) {
    const part = await readRange(backend, caller, query, head.length, wanted);
    if (part === undefined) return undefined;
    head = Buffer.concat([head, part]);
    // Each further read at least doubles what is read: a file costs at most five reads.
    const next = bytesWantedBy(read, head);
    if (next === 0) return headerReadBy(read, head);
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
