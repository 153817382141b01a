// Which node inputs the prompt policy reads, by input name on every node, and the limit each one is held to.

import type { PolicyLimitField } from './schema.js';

/** A limit read from a node input. */
export type InputLimit = Extract<PolicyLimitField, 'max_width' | 'max_height' | 'max_batch_size' | 'max_steps' | 'max_frames'>;

const BOTH_SIDES: readonly InputLimit[] = ['max_width', 'max_height'];

/**
 * The limits read from an input of this name on any node (a dynamic input such as `resize_type.width` is
 * read by its last part). Documented in docs/api.md ("Inputs read").
 */
const LIMITS_BY_NAME: ReadonlyMap<string, readonly InputLimit[]> = new Map([
  ['width', ['max_width']],
  ['target_width', ['max_width']],
  ['height', ['max_height']],
  ['target_height', ['max_height']],
  // One side of the result is this size, and which one depends on the image: held to both limits.
  ['largest_size', BOTH_SIDES],
  ['longer_size', BOTH_SIDES],
  ['shorter_size', BOTH_SIDES],
  ['batch_size', ['max_batch_size']],
  ['steps', ['max_steps']],
  ['length', ['max_frames']],
  ['video_frames', ['max_frames']],
  ['num_frames', ['max_frames']],
  ['frames_number', ['max_frames']],
  ['frame_count', ['max_frames']],
]);

/** Core nodes that name a limited quantity otherwise. */
const LIMITS_BY_NODE: ReadonlyMap<string, ReadonlyMap<string, readonly InputLimit[]>> = new Map([
  ['RepeatLatentBatch', new Map([['amount', ['max_batch_size']]])],
  ['RepeatImageBatch', new Map([['amount', ['max_batch_size']]])],
  // Its latent holds layers + 1 frames, which LatentCutToBatch makes a batch of images.
  ['EmptyQwenImageLayeredLatentImage', new Map([['layers', ['max_frames', 'max_batch_size']]])],
]);

/**
 * Core nodes whose input of a limited name means something else: how many items of a batch to keep (never
 * more than it has), and the sizes SDXL's text encoders write into the conditioning (often set above the
 * image's, to steer the model), which make no image.
 */
const NOT_LIMITED: ReadonlyMap<string, readonly string[]> = new Map([
  ['LatentFromBatch', ['length']],
  ['ImageFromBatch', ['length']],
  ['CLIPTextEncodeSDXL', ['width', 'height', 'target_width', 'target_height']],
  ['CLIPTextEncodeSDXLRefiner', ['width', 'height']],
]);

/** The last part of an input name: `resize_type.width` (an input of a dynamic combo) is read as `width`. */
export function inputBaseName(input: string): string {
  return input.slice(input.lastIndexOf('.') + 1);
}

/** The limits an input of a node is held to; empty when the policy does not read it. */
export function inputLimits(classType: string, input: string): readonly InputLimit[] {
  const byNode = LIMITS_BY_NODE.get(classType)?.get(input);
  if (byNode) return byNode;
  if (NOT_LIMITED.get(classType)?.includes(input)) return [];
  return LIMITS_BY_NAME.get(inputBaseName(input)) ?? [];
}
