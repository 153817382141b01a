// Nodes that join what they are given: images side by side (ImageStitch), latents along a side or in time (LatentConcat), batches together.

import { literalNumber } from './literal-number.js';
import type { PromptNode } from './node-replacements.js';
import { inputsNamed, nodeInputs } from './node-inputs.js';
import type { Dimension, Side } from './size-bound.js';

const SIDES: readonly Side[] = ['width', 'height'];

/** Core nodes that put their batches one after the other (ComfyUI's nodes.py, comfy_extras/nodes_latent.py and nodes_post_processing.py). */
const BATCH_JOINS: ReadonlySet<string> = new Set([
  'ImageBatch',
  'LatentBatch',
  'BatchImagesNode',
  'BatchMasksNode',
  'BatchLatentsNode',
  'BatchImagesMasksLatentsNode',
]);

/** Core nodes that repeat the batch they are given `amount` times. */
export const BATCH_REPEATS: ReadonlySet<string> = new Set(['RepeatLatentBatch', 'RepeatImageBatch']);

/** Core nodes whose batch comes from something the walk does not bound: LatentCutToBatch makes a batch of a latent's frames. */
export const BATCH_UNKNOWN: ReadonlySet<string> = new Set(['LatentCutToBatch']);

/** The dimensions a `direction` (ImageStitch, and custom nodes that name it so) or LatentConcat's `dim` joins along. */
const JOINED_BY_DIRECTION: ReadonlyMap<string, readonly Dimension[]> = new Map([
  ['right', ['width']],
  ['left', ['width']],
  ['horizontal', ['width']],
  ['down', ['height']],
  ['up', ['height']],
  ['vertical', ['height']],
  ['x', ['width']],
  ['-x', ['width']],
  ['y', ['height']],
  ['-y', ['height']],
  ['t', ['batch']],
  ['-t', ['batch']],
]);

/**
 * The dimensions a node given two or more images or latents joins them along, so that they add up: the batch
 * for a batch join (a core one, or any node whose class_type holds `Batch`); and the side its `direction`
 * (or LatentConcat's `dim`) names; both sides when that is not a literal the gateway knows (a link, say),
 * and the batch too for LatentConcat. Empty for any other node.
 */
export function joinedDimensions(node: PromptNode): readonly Dimension[] {
  const joined = new Set<Dimension>();
  if (BATCH_JOINS.has(node.class_type) || node.class_type.includes('Batch')) joined.add('batch');
  const concat = node.class_type === 'LatentConcat';
  const directions = inputsNamed(nodeInputs(node), [concat ? 'dim' : 'direction']);
  if (directions.length === 0 && concat) directions.push(undefined);
  for (const direction of directions) {
    const named = typeof direction === 'string' ? JOINED_BY_DIRECTION.get(direction) : undefined;
    for (const dimension of named ?? (concat ? [...SIDES, 'batch' as const] : SIDES)) joined.add(dimension);
  }
  return [...joined];
}

/**
 * Whether a side join resizes the later images to match the first one, keeping their own aspect ratio
 * (ImageStitch's `match_image_size`): then the joined side follows an aspect ratio the prompt does not fix.
 * Only a literal `false` reads as no (ComfyUI reads any other value as Python's bool() does).
 */
export function resizesToMatch(node: PromptNode): boolean {
  const [match] = inputsNamed(nodeInputs(node), ['match_image_size']);
  return match !== undefined && match !== false;
}

/**
 * The pixels a side join puts between two images: `spacing_width`, which ImageStitch rounds up to an even
 * number; 0 without it; undefined when it is linked or text.
 */
export function joinSpacing(node: PromptNode): number | undefined {
  let largest = 0;
  for (const spacing of inputsNamed(nodeInputs(node), ['spacing_width'])) {
    const number = literalNumber(spacing);
    if (number === 'text' || Array.isArray(spacing)) return undefined;
    if (typeof number !== 'number' || !(number > 0)) continue;
    if (!Number.isFinite(number)) return undefined;
    const whole = Math.ceil(number);
    largest = Math.max(largest, whole + (whole % 2));
  }
  return largest;
}
