// The max_width/max_height checks of nodes that resize what they are given: factors, padding, total pixels, sides from the aspect ratio, model upscalers, rotations.

import type { PolicyViolation } from '../errors.js';
import { inputValue } from '../isolation/input-value.js';
import { literalNumber } from './literal-number.js';
import type { PromptNode } from './node-replacements.js';
import type { PromptPolicy } from './schema.js';
import { inputsNamed, nodeInputs } from './node-inputs.js';
import { FACTOR_INPUTS, linksPixels, literalSum, MODEL_UPSCALERS, PADDING_INPUTS, sidesTurn, type Side, type SizeBounds } from './size-bound.js';

const SIDES: readonly Side[] = ['width', 'height'];
const SIDE_LIMIT = { width: 'max_width', height: 'max_height' } as const;

/** Core nodes of a dynamic `resize_type` whose modes give one side and derive the other from the aspect ratio. */
const ONE_SIDE_MODES: ReadonlyMap<string, ReadonlyMap<string, Side>> = new Map([
  [
    'ResizeImageMaskNode',
    new Map<string, Side>([
      ['scale width', 'height'],
      ['scale height', 'width'],
    ]),
  ],
]);

const UNFIXED_REASON =
  'it enlarges an image or latent whose size the prompt does not fix (it comes from a loaded file, a link, or a node the gateway cannot follow): ' +
  'enlarge only what a node of literal width and height makes, or set the size itself (ImageScale, LatentUpscale)';
const ASPECT_REASON = "this side follows the input's aspect ratio, which the prompt does not fix: give both width and height";
const ROTATE_REASON =
  'it may turn the image a quarter, so its width becomes the height, and max_width and max_height differ: turn only what a node of ' +
  'literal width and height makes, whose sides, swapped, are within the limits, and give the rotation as a literal';
const MODEL_REASON =
  'the upscale factor comes from the model file, which the gateway cannot read: with max_width or max_height set, ' +
  'scale with ImageScale, ImageScaleBy or LatentUpscaleBy, within the limits, or use a key whose policy sets neither';

/**
 * The max_width/max_height violations of a node that resizes what it is given; none when the policy sets
 * neither limit. A factor (`scale_by`, `multiplier`) above 1 or padding above 0 is checked on the size
 * it makes: the bound of what the node is given (see SizeBounds), multiplied or padded, must be known and
 * within the limit. `megapixels` is held to max_width × max_height (one of them alone stands for both).
 * A side derived from the aspect ratio (`0` beside a given side, `shorter_size`, a one-side mode) and a
 * model upscaler are refused, with the reason. A rotator that may turn a quarter (see sidesTurn) is held, when the two
 * limits differ, to the sides it makes, which must be known and within them.
 */
export function resizeViolations(policy: PromptPolicy, nodeId: string, node: PromptNode, bounds: SizeBounds): PolicyViolation[] {
  const limited = SIDES.filter((side) => policy[SIDE_LIMIT[side]] !== undefined);
  if (limited.length === 0) return [];
  const inputs = nodeInputs(node);
  const violation = (side: Side, value: unknown, reason?: string): PolicyViolation => ({
    node_id: nodeId,
    rule: SIDE_LIMIT[side],
    limit: policy[SIDE_LIMIT[side]],
    value,
    ...(reason === undefined ? {} : { reason }),
  });
  if (MODEL_UPSCALERS.has(node.class_type)) return [violation(limited[0]!, 'model', MODEL_REASON)];

  const violations: PolicyViolation[] = [];
  /** Checks the size a node makes from what it is given; `grow` is undefined when the change is not a literal. */
  const checkGrown = (side: Side, grow: ((given: number) => number) | undefined, changed: unknown): void => {
    if (grow === undefined) {
      violations.push(violation(side, literalNumber(changed) === 'text' ? 'text' : 'linked'));
      return;
    }
    const given = bounds.given(node, side);
    if (given === undefined) violations.push(violation(side, 'unbounded', UNFIXED_REASON));
    else if (grow(given) > policy[SIDE_LIMIT[side]]!) violations.push(violation(side, Math.round(grow(given))));
  };

  for (const factor of inputsNamed(inputs, FACTOR_INPUTS)) {
    const number = literalNumber(factor);
    if ((number === undefined && !Array.isArray(factor)) || (typeof number === 'number' && number <= 1)) continue;
    for (const side of limited) checkGrown(side, typeof number === 'number' ? (given) => given * number : undefined, factor);
  }
  const padding = PADDING_INPUTS.get(node.class_type);
  for (const side of padding ? limited : []) {
    const pads = inputsNamed(inputs, padding![side]);
    const added = literalSum(pads);
    if (added === 0) continue;
    checkGrown(
      side,
      added === undefined ? undefined : (given) => given + added,
      pads.find((pad) => literalNumber(pad) === 'text'),
    );
  }
  for (const megapixels of inputsNamed(inputs, ['megapixels'])) {
    const number = literalNumber(megapixels);
    const pixelLimit = (policy.max_width ?? policy.max_height!) * (policy.max_height ?? policy.max_width!);
    if (number === undefined && !Array.isArray(megapixels)) continue;
    if (typeof number !== 'number') violations.push(violation(limited[0]!, number === 'text' ? 'text' : 'linked'));
    else if (number * 1024 * 1024 > pixelLimit) {
      violations.push(violation(limited[0]!, number, `${number} megapixels is more than max_width × max_height (${pixelLimit} pixels)`));
    }
  }
  for (const side of aspectSides(node)) if (limited.includes(side)) violations.push(violation(side, 'unbounded', ASPECT_REASON));
  if (sidesTurn(node) !== 'keeps' && policy.max_width !== policy.max_height) {
    for (const side of limited) {
      const made = bounds.made(node, side);
      if (made === undefined || made > policy[SIDE_LIMIT[side]]!) violations.push(violation(side, made ?? 'unbounded', ROTATE_REASON));
    }
  }
  return violations;
}

/**
 * The sides a node that is given an image or latent derives from its aspect ratio: a 0 beside a given
 * side, both for `shorter_size`, the other one in a one-side mode.
 */
function aspectSides(node: PromptNode): Side[] {
  const inputs = nodeInputs(node);
  if (!linksPixels(node)) return [];
  if (inputsNamed(inputs, ['shorter_size']).length > 0) return [...SIDES];
  const oneSide = ONE_SIDE_MODES.get(node.class_type)?.get(String(inputValue(inputs.resize_type)));
  if (oneSide) return [oneSide];
  const [width] = inputsNamed(inputs, ['width']);
  const [height] = inputsNamed(inputs, ['height']);
  const isZero = (value: unknown): boolean => literalNumber(value) === 0 && !Array.isArray(value);
  if (isZero(width) && !isZero(height) && height !== undefined) return ['width'];
  if (isZero(height) && !isZero(width) && width !== undefined) return ['height'];
  return [];
}
