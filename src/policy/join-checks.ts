// The max_width/max_height/max_batch_size checks of nodes that make more than any one thing they are given: joins and batch repeats.

import type { PolicyViolation } from '../errors.js';
import { BATCH_REPEATS, resizesToMatch } from './joins.js';
import type { PromptNode } from './node-replacements.js';
import type { PromptPolicy } from './schema.js';
import type { Dimension, SizeBounds } from './size-bound.js';

const LIMIT = { width: 'max_width', height: 'max_height', batch: 'max_batch_size' } as const;

const SIDE_UNFIXED_REASON =
  'it joins images side by side, so this side is the sum of theirs, and the size of one of them is not fixed by the prompt ' +
  '(it comes from a loaded file, a link, or a node the gateway cannot follow), or the spacing or direction is linked: ' +
  'join only images a node of literal width and height makes, resized first where needed (ImageScale), with literal settings';
const MATCH_REASON =
  "with match_image_size, image2 is resized to image1's height (or width) keeping its own aspect ratio, so the joined side " +
  'is not fixed by the prompt: set match_image_size to false and give image2 the size you want first (ImageScale with width and height)';
const SIDE_OVER_REASON = 'it joins images side by side: this side is the sum of theirs (with the spacing); join smaller images, or fewer';
const BATCH_UNFIXED_REASON =
  'it joins batches, so its batch is the sum of theirs, and the batch of one of them is not fixed by the prompt (a loaded image or ' +
  'video holds as many images as it has frames; a link; a node the gateway cannot follow): join only batches of literal batch_size';
const BATCH_OVER_REASON = 'it joins batches, so its batch is the sum of theirs (a video counts its frames): join fewer or smaller batches (batch_size, amount)';
const REPEAT_OVER_REASON = 'it repeats a batch of more than one: its batch is the batch it is given times amount; lower amount or the batch_size upstream';

/**
 * The violations of a node that makes more than any one input: a join (see SizeBounds.joins) is held, on
 * each dimension it joins whose limit the policy sets, to the size or batch it makes, which must be known
 * and within the limit; a batch repeat (`amount`) given a known batch of more than one, to the batch it makes.
 * Each carries a `reason`.
 */
export function joinViolations(policy: PromptPolicy, nodeId: string, node: PromptNode, bounds: SizeBounds): PolicyViolation[] {
  const violations: PolicyViolation[] = [];
  const violation = (dimension: Dimension, value: unknown, reason: string): PolicyViolation => ({
    node_id: nodeId,
    rule: LIMIT[dimension],
    limit: policy[LIMIT[dimension]],
    value,
    reason,
  });
  for (const dimension of bounds.joins(node)) {
    const limit = policy[LIMIT[dimension]];
    if (limit === undefined) continue;
    const made = bounds.made(node, dimension);
    const side = dimension !== 'batch';
    if (made === undefined)
      violations.push(violation(dimension, 'unbounded', !side ? BATCH_UNFIXED_REASON : resizesToMatch(node) ? MATCH_REASON : SIDE_UNFIXED_REASON));
    else if (made > limit) violations.push(violation(dimension, made, side ? SIDE_OVER_REASON : BATCH_OVER_REASON));
  }
  const batchLimit = policy.max_batch_size;
  if (batchLimit !== undefined && BATCH_REPEATS.has(node.class_type) && (bounds.given(node, 'batch') ?? 0) > 1) {
    const made = bounds.made(node, 'batch');
    if (made !== undefined && made > batchLimit) violations.push(violation('batch', made, REPEAT_OVER_REASON));
  }
  return violations;
}
