// Nodes that load an image file by name, and the max_width/max_height and max_batch_size checks of the image they load, by what its file gives.

import { posix } from 'node:path';
import type { PolicyViolation } from '../errors.js';
import { fileId, namedFileOf, type NamedFile } from '../isolation/files.js';
import { inputValue } from '../isolation/input-value.js';
import { MAX_WHOLE_IMAGE_BYTES } from './image-frames.js';
import type { ImageSize } from './image-header.js';
import type { LatentSize } from './latent-header.js';
import type { PromptNode } from './node-replacements.js';
import { nodeInputs } from './node-inputs.js';
import type { PromptPolicy } from './schema.js';

/** Core nodes that load the image file their `image` input names, at its own size, and the folder a name without annotation is in. */
const IMAGE_LOADERS: ReadonlyMap<string, 'input' | 'output'> = new Map([
  ['LoadImage', 'input'],
  ['LoadImageMask', 'input'],
  ['LoadImageOutput', 'output'],
  // A LoadImage whose widget is a camera: its width and height are the camera's, the file is loaded as it is.
  ['WebcamCapture', 'input'],
]);

/** What is read of a loaded image: its size, and the batch its loader makes of it when that is known (see imageFrames). */
export interface LoadedImage extends ImageSize {
  batch?: number;
}

/**
 * The sizes of the files a prompt's loaders name: images by loadedImageKey, latents by loadedLatentKey (a
 * size that could not be read is missing); or `later` when they are not read yet (a run's check before its
 * images are stored): loaders are then not checked, and the check made on the prompt sent reads them.
 */
export type LoadedSizes = ReadonlyMap<string, LoadedImage | LatentSize> | 'later';

/** Whether ComfyUI loads an image file for a node of this class (see IMAGE_LOADERS). */
export function isImageLoader(node: PromptNode): boolean {
  return IMAGE_LOADERS.has(node.class_type);
}

/** The file an image loader node names: its `image` input when it is text (read as ComfyUI reads the name); undefined otherwise. */
export function loadedImageFile(node: PromptNode): NamedFile | undefined {
  const folder = IMAGE_LOADERS.get(node.class_type);
  return folder === undefined ? undefined : loadedFileNamed(nodeInputs(node).image, folder);
}

/** The file a loader's input names, in `folder` unless annotated, as ComfyUI reads the name; undefined for a value that is not text, or empty. */
export function loadedFileNamed(input: unknown, folder: 'input' | 'output'): NamedFile | undefined {
  const name = inputValue(input);
  if (typeof name !== 'string' || name === '') return undefined;
  const subfolder = posix.dirname(name);
  return namedFileOf(posix.basename(name), subfolder === '.' ? '' : subfolder, folder);
}

/** The key of a loaded file in LoadedSizes: its ownership id. */
export function loadedImageKey(file: NamedFile): string {
  return fileId(file.type, file.subfolder, file.filename);
}

/** What is read of the image a loader node loads; undefined when nothing is. */
function loadedImage(node: PromptNode, sizes: LoadedSizes): LoadedImage | undefined {
  const file = loadedImageFile(node);
  return file && sizes !== 'later' ? sizes.get(loadedImageKey(file)) : undefined;
}

/**
 * The longest side of the image a loader node loads: ComfyUI turns an image whose EXIF or XMP orientation
 * says so (Pillow's exif_transpose, or the decoder's display matrix), and that tag may sit anywhere in a
 * PNG or WebP file, so either side may be the longer one. Undefined when the size is not known.
 */
export function loadedSide(node: PromptNode, sizes: LoadedSizes): number | undefined {
  const size = loadedImage(node, sizes);
  return size && Math.max(size.width, size.height);
}

/** The batch an image loader node makes of the file it loads (its images, see imageFrames); undefined when not known. */
export function loadedImageBatch(node: PromptNode, sizes: LoadedSizes): number | undefined {
  return loadedImage(node, sizes)?.batch;
}

/**
 * Whether ComfyUI reads a loaded file's name as the name of that one file: PyAV's FFmpeg reads a name holding
 * `%` (a numbered sequence such as `a%d.png`) or a glob character as a pattern, and loads every file it
 * matches as one more frame. The batch of a file so named is not known.
 */
export function namesOneFile(file: NamedFile): boolean {
  return !/[%*?[\]{}]/.test(`${file.subfolder}/${file.filename}`);
}

const SIDE_LIMITS = ['max_width', 'max_height'] as const;

/** The max_width/max_height rules `policy` sets (none for no policy). */
export function sideLimits(policy: PromptPolicy | null): Array<(typeof SIDE_LIMITS)[number]> {
  return SIDE_LIMITS.filter((rule) => policy?.[rule] !== undefined);
}

/** Why an image's size breaks the limits: when it could not be read, and when it is over them. */
export interface SizeReasons {
  unread: string;
  over: (size: ImageSize) => string;
}

/**
 * The max_width/max_height violations of an image of `size` (undefined when it could not be read, which breaks
 * the first limit set): its longer side is held to each limit set, since ComfyUI turns an image its EXIF
 * orientation says is turned.
 */
export function imageSizeViolations(policy: PromptPolicy, nodeId: string | null, size: ImageSize | undefined, reasons: SizeReasons): PolicyViolation[] {
  const limited = sideLimits(policy);
  if (limited.length === 0) return [];
  if (!size) return [{ node_id: nodeId, rule: limited[0]!, limit: policy[limited[0]!], value: 'unbounded', reason: reasons.unread }];
  const side = Math.max(size.width, size.height);
  const reason = reasons.over(size);
  return limited.filter((rule) => side > policy[rule]!).map((rule) => ({ node_id: nodeId, rule, limit: policy[rule], value: side, reason }));
}

const LOADED_REASONS: SizeReasons = {
  unread:
    'the size of the loaded image could not be read, and with max_width or max_height set a loaded image must be within them: ' +
    'the gateway reads PNG, JPEG, WebP, GIF and BMP files named as text (not a link) that the key may load',
  over: (size) =>
    `the loaded image is ${size.width}×${size.height}, and ComfyUI turns an image its EXIF orientation says is turned, so each side is held ` +
    'to the longer one: scale the image down before uploading it',
};

/**
 * The max_batch_size violation of an image of which a loader makes a batch of `batch` (undefined when that is not
 * known, which breaks the limit as `unbounded`), with `reason`; none when the policy does not set max_batch_size.
 */
export function imageBatchViolations(policy: PromptPolicy, nodeId: string | null, batch: number | undefined, reason: string): PolicyViolation[] {
  const limit = policy.max_batch_size;
  if (limit === undefined || (batch !== undefined && batch <= limit)) return [];
  return [{ node_id: nodeId, rule: 'max_batch_size', limit, value: batch ?? 'unbounded', reason }];
}

const LOADED_BATCH_REASON =
  'LoadImage makes a batch of every frame of the file it loads (an animated GIF, PNG or WebP, or images appended after the first), ' +
  `and with max_batch_size set the gateway must know it holds one image: it reads a file of at most ${MAX_WHOLE_IMAGE_BYTES / 1024 / 1024} MiB ` +
  'named as text (not a link, no % or glob character) that the key may load, and knows a still PNG, a JPEG (not a multi-picture one) or a simple (not extended) WebP: ' +
  'save the image as such a file, or use a key whose policy does not set max_batch_size';

/**
 * The violations of an image loader (none for any other node, or when `sizes` are read later): under
 * max_width/max_height the image it loads must be known, and its longest side within each limit set (see
 * imageSizeViolations), whatever the prompt does with it after; under max_batch_size the batch it makes of
 * its file must be known and within it.
 */
export function loadedImageViolations(policy: PromptPolicy, nodeId: string, node: PromptNode, sizes: LoadedSizes): PolicyViolation[] {
  if (!isImageLoader(node) || sizes === 'later') return [];
  const image = loadedImage(node, sizes);
  return [...imageSizeViolations(policy, nodeId, image, LOADED_REASONS), ...imageBatchViolations(policy, nodeId, image?.batch, LOADED_BATCH_REASON)];
}
