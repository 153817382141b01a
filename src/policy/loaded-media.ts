// Nodes that load a video, a latent or a 3D scene from a file, and the size, batch and frame checks of what they load.

import type { PolicyViolation } from '../errors.js';
import { inputValue } from '../isolation/input-value.js';
import type { NamedFile } from '../isolation/files.js';
import { LATENT_SPATIAL_FACTOR, LATENT_TEMPORAL_FACTOR, type LatentSize } from './latent-header.js';
import { loadedFileNamed, loadedImageKey, sideLimits, type LoadedSizes } from './loaded-images.js';
import type { PromptNode } from './node-replacements.js';
import { nodeInputs } from './node-inputs.js';
import type { PromptPolicy } from './schema.js';

/**
 * Core nodes that load from a file something other than an image LoadImage sizes, and what: a video, which
 * PyAV decodes at its own size and length (LoadVideo, comfy_extras/nodes_video.py); a latent, a safetensors
 * file's `latent_tensor` (LoadLatent, nodes.py); a 3D scene's images, loaded as LoadImage loads them, and
 * its recorded video (Load3D, Load3DAnimation).
 */
const MEDIA_LOADERS: ReadonlyMap<string, 'video' | 'latent' | 'scene'> = new Map([
  ['LoadVideo', 'video'],
  ['LoadLatent', 'latent'],
  ['Load3D', 'scene'],
  ['Load3DAnimation', 'scene'],
]);

/** Whether ComfyUI loads a video, a latent or a 3D scene from a file for a node of this class (see MEDIA_LOADERS). */
export function isMediaLoader(node: PromptNode): boolean {
  return MEDIA_LOADERS.has(node.class_type);
}

/** What the gateway reads of a loaded latent. */
const LATENT_READ =
  'the gateway reads the safetensors header (at most 1 MiB) of a file named as text (not a link) that the key may load, ' +
  'whose latent_tensor has 4 or 5 dimensions';

/** Why a loader is refused under a limit: what is not read, and what to do instead. */
const UNREAD = {
  video: {
    size:
      'the size of a loaded video is not read, and with max_width or max_height set what a node loads must be within them: ' +
      'load its frames as images (LoadImage), or use a key whose policy sets neither limit',
    frames:
      'the number of frames of a loaded video is not read, and with max_frames set a loaded video must be within it: ' +
      'load its frames as images (LoadImage), or use a key whose policy does not set max_frames',
  },
  latent: {
    size: `the size of the loaded latent could not be read, and with max_width or max_height set what a node loads must be within them: ${LATENT_READ}`,
    batch: `the batch of the loaded latent could not be read, and with max_batch_size set a loaded latent must be within it: ${LATENT_READ}`,
    frames: `the frames of the loaded latent could not be read, and with max_frames set a loaded latent must be within it: ${LATENT_READ}`,
  },
  scene: {
    size:
      'the sizes of the images a 3D scene loads are not read, and with max_width or max_height set what a node loads must be within them: ' +
      'use a key whose policy sets neither limit',
    batch:
      'the images a 3D scene loads are not read, and LoadImage, which loads them, makes a batch of every frame of a file: with max_batch_size ' +
      'set what a node loads must be within it: use a key whose policy does not set max_batch_size',
    frames:
      'the number of frames of the video a 3D scene loads as its recording is not read, and with max_frames set a loaded video must be within it: ' +
      'leave its recording empty, or use a key whose policy does not set max_frames',
  },
} as const;

/** Whether a 3D scene loader loads a recorded video: its `image` object names a `recording` (ComfyUI loads it unless it is empty). */
function loadsRecording(node: PromptNode): boolean {
  const image = inputValue(nodeInputs(node).image);
  if (typeof image !== 'object' || image === null || Array.isArray(image)) return true;
  const recording = inputValue((image as Record<string, unknown>).recording);
  return recording !== undefined && recording !== '';
}

/** The file a LoadLatent node names: its `latent` input when it is text, in input unless annotated; undefined for any other node. */
export function loadedLatentFile(node: PromptNode): NamedFile | undefined {
  return MEDIA_LOADERS.get(node.class_type) === 'latent' ? loadedFileNamed(nodeInputs(node).latent, 'input') : undefined;
}

/** The key of a loaded latent file in LoadedSizes (apart from the same file loaded as an image). */
export function loadedLatentKey(file: NamedFile): string {
  return `latent ${loadedImageKey(file)}`;
}

/** What the latent a LoadLatent node loads may decode to (see LatentSize); undefined for any other node, or when it is not known. */
function loadedLatent(node: PromptNode, sizes: LoadedSizes): LatentSize | undefined {
  const file = loadedLatentFile(node);
  const size = file && sizes !== 'later' ? sizes.get(loadedLatentKey(file)) : undefined;
  return size && 'batch' in size ? (size as LatentSize) : undefined;
}

/** The largest `side` a loader of a video, a latent or a 3D scene outputs: a latent's, as read; undefined when not known. */
export function loadedMediaSide(node: PromptNode, side: 'width' | 'height', sizes: LoadedSizes): number | undefined {
  return loadedLatent(node, sizes)?.[side];
}

/** The largest batch such a loader outputs, a video's frames counted as images: a latent's batch times its frames; undefined when not known. */
export function loadedMediaBatch(node: PromptNode, sizes: LoadedSizes): number | undefined {
  const latent = loadedLatent(node, sizes);
  return latent && latent.batch * (latent.frames ?? 1);
}

const SIDE_LIMIT = { width: 'max_width', height: 'max_height' } as const;

/**
 * The violations of a loader of a video, a latent or a 3D scene (none for any other node, or when `sizes`
 * are read later), under each limit what it loads could break: max_width/max_height, max_frames for a video
 * (and a 3D scene's recording) or a latent, and max_batch_size for a latent or a 3D scene (its images). A latent whose header was read
 * is held to them by what it may decode to (see LatentSize: each side, its batch, its frames); anything not
 * read refuses the loader as `unbounded` (under max_width/max_height once, for the first one set), with the reason.
 */
export function loadedMediaViolations(policy: PromptPolicy, nodeId: string, node: PromptNode, sizes: LoadedSizes): PolicyViolation[] {
  const loads = MEDIA_LOADERS.get(node.class_type);
  if (loads === undefined || sizes === 'later') return [];
  const reasons = UNREAD[loads];
  const latent = loadedLatent(node, sizes);
  if (latent) return latentViolations(policy, nodeId, latent);
  const violation = (rule: MediaLimit, value: 'unbounded', reason: string): PolicyViolation => ({ node_id: nodeId, rule, limit: policy[rule], value, reason });
  const violations: PolicyViolation[] = [];
  const [side] = sideLimits(policy);
  if (side !== undefined) violations.push(violation(side, 'unbounded', reasons.size));
  if (policy.max_batch_size !== undefined && 'batch' in reasons) violations.push(violation('max_batch_size', 'unbounded', reasons.batch));
  if (policy.max_frames !== undefined && (loads !== 'scene' || loadsRecording(node))) violations.push(violation('max_frames', 'unbounded', reasons.frames));
  return violations;
}

/** The limits a loader of a video, a latent or a 3D scene is held to. */
type MediaLimit = 'max_width' | 'max_height' | 'max_batch_size' | 'max_frames';

/**
 * The violations of a latent of a known size (see LatentSize) that node `nodeId` loads (null for an upload
 * a prompt may load): each side over its limit, its batch over max_batch_size, its frames over max_frames.
 */
export function latentViolations(policy: PromptPolicy, nodeId: string | null, latent: LatentSize): PolicyViolation[] {
  const violation = (rule: MediaLimit, value: number, reason: string): PolicyViolation => ({ node_id: nodeId, rule, limit: policy[rule], value, reason });
  const shape = `${latent.width / LATENT_SPATIAL_FACTOR}×${latent.height / LATENT_SPATIAL_FACTOR}`;
  const sides = (['width', 'height'] as const).filter((side) => latent[side] > (policy[SIDE_LIMIT[side]] ?? Infinity));
  return [
    ...sides.map((side) =>
      violation(
        SIDE_LIMIT[side],
        latent[side],
        `the latent is ${shape}, and the gateway does not know which VAE decodes it: it is held to ${LATENT_SPATIAL_FACTOR} pixels ` +
          'to each of its own (the largest factor of ComfyUI latent formats); load a smaller latent, or an image (LoadImage)',
      ),
    ),
    ...(latent.batch > (policy.max_batch_size ?? Infinity) ? [violation('max_batch_size', latent.batch, `the latent holds a batch of ${latent.batch}`)] : []),
    ...(latent.frames !== undefined && latent.frames > (policy.max_frames ?? Infinity)
      ? [
          violation(
            'max_frames',
            latent.frames,
            `the latent is a video latent of up to ${latent.frames} frames once decoded (${LATENT_TEMPORAL_FACTOR} to each latent frame after the first, the most of ComfyUI latent formats)`,
          ),
        ]
      : []),
  ];
}
