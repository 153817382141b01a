// The largest width, height or batch a prompt's node can output, found by walking its input links upstream to nodes of literal size.

import { inputValue } from '../isolation/input-value.js';
import { BATCH_REPEATS, BATCH_UNKNOWN, joinedDimensions, joinSpacing, resizesToMatch } from './joins.js';
import { inputBaseName, inputLimits } from './limited-inputs.js';
import { literalNumber } from './literal-number.js';
import { isImageLoader, loadedImageBatch, loadedSide, type LoadedSizes } from './loaded-images.js';
import { isMediaLoader, loadedMediaBatch, loadedMediaSide } from './loaded-media.js';
import { inputsNamed, nodeInputs } from './node-inputs.js';
import { NodeWalk } from './node-walk.js';
import type { PromptNode } from './node-replacements.js';

/** A side of an image or latent, in pixels. */
export type Side = 'width' | 'height';

/** What the walk bounds: a side, or the batch (how many images or latents, a video's frames counted as images). */
export type Dimension = Side | 'batch';

/** Inputs that fix a side of a node's output (at most that many pixels). */
const SIZE_INPUTS: Readonly<Record<Side, readonly string[]>> = {
  width: ['width', 'target_width', 'largest_size', 'longer_size'],
  height: ['height', 'target_height', 'largest_size', 'longer_size'],
};

/** Inputs that multiply the size of the image or latent a node is given (LatentUpscaleBy, ImageScaleBy, ResizeImageMaskNode, SD_4XUpscale_Conditioning). */
export const FACTOR_INPUTS: readonly string[] = ['scale_by', 'multiplier', 'scale_ratio'];

/** Inputs that make a node's output size its own: a side none of them fixes follows the input's aspect ratio or pixel count. */
const RESIZE_INPUTS: ReadonlySet<string> = new Set([...SIZE_INPUTS.width, ...SIZE_INPUTS.height, 'shorter_size', 'megapixels', ...FACTOR_INPUTS]);

/** Core nodes that pad the image they are given: the inputs added to each side. */
export const PADDING_INPUTS: ReadonlyMap<string, Readonly<Record<Side, readonly string[]>>> = new Map([
  ['ImagePadForOutpaint', { width: ['left', 'right'], height: ['top', 'bottom'] }],
]);

/** Core nodes that turn what they are given by their `rotation` (`none`, `90 degrees`, `180 degrees`, `270 degrees`). */
const ROTATORS: ReadonlySet<string> = new Set(['ImageRotate', 'LatentRotate']);

/**
 * How a node turns what it is given: `keeps` its sides (not a rotator, or a literal `none` or `180 degrees`),
 * `swaps` them (a literal `90 degrees` or `270 degrees`: ComfyUI reads the start of the option), or `unknown`
 * (the rotation is linked, or not a string).
 */
export function sidesTurn(node: PromptNode): 'keeps' | 'swaps' | 'unknown' {
  if (!ROTATORS.has(node.class_type)) return 'keeps';
  const rotation = inputValue(nodeInputs(node).rotation);
  if (typeof rotation !== 'string') return 'unknown';
  return rotation.startsWith('90') || rotation.startsWith('270') ? 'swaps' : 'keeps';
}

/** Core nodes whose output size comes from a model file, which the prompt does not show. */
export const MODEL_UPSCALERS: ReadonlySet<string> = new Set(['ImageUpscaleWithModel', 'LTXVLatentUpsampler']);

/** Inputs the walk does not follow: they carry models, conditioning and sampling settings, not pixels or latents. */
const NOT_PIXELS: ReadonlySet<string> = new Set([
  'model',
  'clip',
  'vae',
  'positive',
  'negative',
  'conditioning',
  'control_net',
  'clip_vision',
  'clip_vision_output',
  'style_model',
  'upscale_model',
  'sampler',
  'sigmas',
  'noise',
  'guider',
  // A join's or a rotator's settings, which a link may give (a primitive node's value).
  'direction',
  'match_image_size',
  'spacing_width',
  'rotation',
]);

/**
 * The node id an input links to, as ComfyUI's validation reads a link: any two-item list whose first item is a
 * node id, whatever its slot is written as (`0`, `-0`, `0.0`), and such a list wrapped as `{"__value__": [...]}`,
 * which validation unwraps in place, so the graph runs it as a link. Undefined for any other value.
 */
export function linkedNode(raw: unknown): string | undefined {
  const value = inputValue(raw);
  return Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' ? value[0] : undefined;
}

/** The node ids a node's image and latent inputs link to (the inputs the walk follows), in input order. */
function pixelLinks(node: PromptNode): string[] {
  const links: string[] = [];
  for (const [input, value] of Object.entries(nodeInputs(node))) {
    const linked = NOT_PIXELS.has(inputBaseName(input)) ? undefined : linkedNode(value);
    if (linked !== undefined) links.push(linked);
  }
  return links;
}

/** Whether a node links to an image or latent to resize (an input the walk follows). */
export function linksPixels(node: PromptNode): boolean {
  return pixelLinks(node).length > 0;
}

/**
 * Bounds of the sizes and batches a prompt's nodes output, each found once per node (so a walk costs at most
 * the prompt's size). An image loader's sides are the longest side of the image it loads (see loadedSide);
 * its batch, the images its file holds when they are known (see loadedImageBatch). A loaded latent's are what it may decode to (see LatentSize); a
 * loaded video's or 3D scene's are not known. A rotator's sides are the other sides of what it is given when it turns
 * a quarter, and the longer of them when its rotation is not a literal (see sidesTurn). A bound is undefined (unknown) when the walk reaches an image
 * loader of unknown size, a node of no literal size (or batch) that has no links to follow, a link to no node, a cycle, a chain of more than MAX_WALK_DEPTH
 * links, a model upscaler, a side a node derives from its input's aspect ratio or pixel count, or a batch
 * made from a latent's frames (BATCH_UNKNOWN).
 */
export class SizeBounds {
  private readonly walk: NodeWalk;

  /**
   * `formsOf` gives a node id's forms: the node as sent, and as ComfyUI runs it when it replaces its class; none for an unknown id.
   * `loaded` are the sizes of the images the prompt loads.
   */
  constructor(
    formsOf: (nodeId: string) => readonly PromptNode[],
    private readonly loaded: LoadedSizes,
  ) {
    this.walk = new NodeWalk(formsOf);
  }

  /** The largest `dimension` of what node `nodeId` outputs (the largest over its forms), or undefined when unknown. */
  output(nodeId: string, dimension: Dimension, depth = 0): number | undefined {
    return this.walk.largest(`${dimension}:${nodeId}`, nodeId, depth, (form) => this.made(form, dimension, depth));
  }

  /**
   * The largest `dimension` of what a node is given: the largest over the nodes its inputs link to (but
   * NOT_PIXELS), unknown when one of them is or when it links to none.
   */
  given(node: PromptNode, dimension: Dimension, depth = 0): number | undefined {
    let largest: number | undefined;
    for (const linked of pixelLinks(node)) {
      const bound = this.output(linked, dimension, depth + 1);
      if (bound === undefined) return undefined;
      largest = Math.max(largest ?? 0, bound);
    }
    return largest;
  }

  /** The dimensions along which a node joins what it is given (see joinedDimensions): none unless it is given two or more images or latents. */
  joins(node: PromptNode): readonly Dimension[] {
    return pixelLinks(node).length > 1 ? joinedDimensions(node) : [];
  }

  /** The largest `dimension` one form of a node outputs. */
  made(node: PromptNode, dimension: Dimension, depth = 0): number | undefined {
    if (this.joins(node).includes(dimension)) return this.joined(node, dimension, depth);
    return dimension === 'batch' ? this.batch(node, depth) : this.side(node, dimension, depth);
  }

  /**
   * What a join makes along a dimension it joins: the sum of what it is given, with the spacing between
   * each two images; unknown when it resizes the later images to the first one's other side (their
   * aspect ratio then sets this side).
   */
  private joined(node: PromptNode, dimension: Dimension, depth: number): number | undefined {
    if (dimension !== 'batch' && resizesToMatch(node)) return undefined;
    const links = pixelLinks(node);
    const spacing = dimension === 'batch' ? 0 : joinSpacing(node);
    let total = spacing === undefined ? undefined : spacing * (links.length - 1);
    for (const linked of links) {
      if (total === undefined) break;
      total = sum(total, this.output(linked, dimension, depth + 1));
    }
    return total;
  }

  /**
   * The largest batch one form of a node outputs: what it is given times `amount` for a repeat; the
   * product of its literal batch and frame inputs (batch_size × length…: a video's frames become that
   * many images once decoded) when it has any; else the largest it is given.
   */
  private batch(node: PromptNode, depth: number): number | undefined {
    if (BATCH_UNKNOWN.has(node.class_type)) return undefined;
    if (isMediaLoader(node)) return loadedMediaBatch(node, this.loaded);
    if (isImageLoader(node)) return loadedImageBatch(node, this.loaded);
    const inputs = nodeInputs(node);
    if (BATCH_REPEATS.has(node.class_type)) return product(this.given(node, 'batch', depth), largestPositive(inputsNamed(inputs, ['amount'])));
    const counts = Object.keys(inputs).filter((input) =>
      inputLimits(node.class_type, input).some((limit) => limit === 'max_batch_size' || limit === 'max_frames'),
    );
    if (counts.length === 0) return this.given(node, 'batch', depth);
    return counts.reduce<number | undefined>((total, input) => product(total, largestPositive([inputValue(inputs[input])])), 1);
  }

  /** The largest `side` one form of a node outputs. */
  private side(node: PromptNode, side: Side, depth: number): number | undefined {
    if (isImageLoader(node)) return loadedSide(node, this.loaded);
    if (isMediaLoader(node)) return loadedMediaSide(node, side, this.loaded);
    const inputs = nodeInputs(node);
    if (MODEL_UPSCALERS.has(node.class_type)) return undefined;
    const turn = sidesTurn(node);
    const other: Side = side === 'width' ? 'height' : 'width';
    if (turn === 'swaps') return this.given(node, other, depth);
    if (turn === 'unknown') return largest(this.given(node, side, depth), this.given(node, other, depth));
    const padding = PADDING_INPUTS.get(node.class_type);
    if (padding) return sum(this.given(node, side, depth), literalSum(inputsNamed(inputs, padding[side])));
    const fixed = inputsNamed(inputs, SIZE_INPUTS[side]);
    if (fixed.length > 0) return largestPositive(fixed);
    const factors = inputsNamed(inputs, FACTOR_INPUTS);
    if (factors.length > 0) {
      const factor = largestPositive(factors);
      const given = this.given(node, side, depth);
      return factor === undefined || given === undefined ? undefined : given * factor;
    }
    if (Object.keys(inputs).some((input) => RESIZE_INPUTS.has(inputBaseName(input)))) return undefined;
    return this.given(node, side, depth);
  }
}

/** The largest of literal numbers above 0; undefined when one is not such a literal (0 stands for "from the aspect ratio"). */
export function largestPositive(values: readonly unknown[]): number | undefined {
  let largest = 0;
  for (const value of values) {
    const number = literalNumber(value);
    if (typeof number !== 'number' || !(number > 0)) return undefined;
    largest = Math.max(largest, number);
  }
  return largest;
}

/** The sum of literal numbers (a missing one counts 0); undefined when one is linked or text. */
export function literalSum(values: readonly unknown[]): number | undefined {
  let total = 0;
  for (const value of values) {
    const number = literalNumber(value);
    if (number === 'text' || Array.isArray(value)) return undefined;
    total += number ?? 0;
  }
  return total;
}

function largest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : Math.max(a, b);
}

function sum(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : a + b;
}

function product(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : a * b;
}
