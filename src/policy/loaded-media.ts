// Nodes that load a video, a latent or a 3D scene from a file, and the size, batch and frame checks of what they load.

import type { PolicyViolation } from '../errors.js';
import { inputValue } from '../isolation/input-value.js';
import { sideLimits, type LoadedImageSizes } from './loaded-images.js';
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
    size:
      'the size of a loaded latent is not read, and with max_width or max_height set what a node loads must be within them: ' +
      'load an image (LoadImage) and encode it, or use a key whose policy sets neither limit',
    batch:
      'the batch of a loaded latent is not read, and with max_batch_size set a loaded latent must be within it: ' +
      'load an image (LoadImage) and encode it, or use a key whose policy does not set max_batch_size',
    frames:
      'the frames of a loaded latent are not read, and with max_frames set a loaded latent must be within it: ' +
      'load an image (LoadImage) and encode it, or use a key whose policy does not set max_frames',
  },
  scene: {
    size:
      'the sizes of the images a 3D scene loads are not read, and with max_width or max_height set what a node loads must be within them: ' +
      'use a key whose policy sets neither limit',
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

/**
 * The violations of a loader of a video, a latent or a 3D scene (none for any other node, or when `sizes`
 * are read later): what it loads is not read, so each limit it could break refuses it as `unbounded`, with
 * the reason: max_width/max_height (the first one set), max_frames for a video (and a 3D scene's recording)
 * or a latent, and max_batch_size for a latent.
 */
export function loadedMediaViolations(policy: PromptPolicy, nodeId: string, node: PromptNode, sizes: LoadedImageSizes): PolicyViolation[] {
  const loads = MEDIA_LOADERS.get(node.class_type);
  if (loads === undefined || sizes === 'later') return [];
  const reasons = UNREAD[loads];
  const unbounded = (rule: keyof PromptPolicy & ('max_width' | 'max_height' | 'max_batch_size' | 'max_frames'), reason: string): PolicyViolation => ({
    node_id: nodeId,
    rule,
    limit: policy[rule],
    value: 'unbounded',
    reason,
  });
  const violations: PolicyViolation[] = [];
  const [side] = sideLimits(policy);
  if (side !== undefined) violations.push(unbounded(side, reasons.size));
  if (policy.max_batch_size !== undefined && 'batch' in reasons) violations.push(unbounded('max_batch_size', reasons.batch));
  if (policy.max_frames !== undefined && (loads !== 'scene' || loadsRecording(node))) violations.push(unbounded('max_frames', reasons.frames));
  return violations;
}
