// Nodes that load an image file by name, and the max_width/max_height check of the image they load, by the size its header gives.

import { posix } from 'node:path';
import type { PolicyViolation } from '../errors.js';
import { fileId, namedFileOf, type NamedFile } from '../isolation/files.js';
import { inputValue } from '../isolation/input-value.js';
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

/**
 * The sizes of the files a prompt's loaders name: images by loadedImageKey, latents by loadedLatentKey (a
 * size that could not be read is missing); or `later` when they are not read yet (a run's check before its
 * images are stored): loaders are then not checked, and the check made on the prompt sent reads them.
 */
export type LoadedSizes = ReadonlyMap<string, ImageSize | LatentSize> | 'later';

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

/**
 * The longest side of the image a loader node loads: ComfyUI turns an image whose EXIF or XMP orientation
 * says so (Pillow's exif_transpose, or the decoder's display matrix), and that tag may sit anywhere in a
 * PNG or WebP file, so either side may be the longer one. Undefined when the size is not known.
 */
export function loadedSide(node: PromptNode, sizes: LoadedSizes): number | undefined {
  const file = loadedImageFile(node);
  const size = file && sizes !== 'later' ? sizes.get(loadedImageKey(file)) : undefined;
  return size && Math.max(size.width, size.height);
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
 * The max_width/max_height violations of an image loader (none for any other node, when the policy sets
 * neither limit, or when `sizes` are read later): the image it loads must be known, and its longest side
 * within each limit set (see imageSizeViolations), whatever the prompt does with it after.
 */
export function loadedImageViolations(policy: PromptPolicy, nodeId: string, node: PromptNode, sizes: LoadedSizes): PolicyViolation[] {
  if (!isImageLoader(node) || sizes === 'later') return [];
  const file = loadedImageFile(node);
  return imageSizeViolations(policy, nodeId, file && sizes.get(loadedImageKey(file)), LOADED_REASONS);
}
