// The largest width or height a prompt's node can output, found by walking its input links upstream to nodes of literal size.

import { inputValue } from '../isolation/input-value.js';
import { inputBaseName } from './limited-inputs.js';
import { literalNumber } from './literal-number.js';
import type { PromptNode } from './node-replacements.js';

/** A side of an image or latent, in pixels. */
export type Side = 'width' | 'height';

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
]);

/** Longest chain of links walked: a node further upstream counts as of unknown size. */
const MAX_DEPTH = 200;

/** The inputs of a prompt node, as an object (anything else reads as none). */
export function nodeInputs(node: PromptNode): Record<string, unknown> {
  return typeof node.inputs === 'object' && node.inputs !== null && !Array.isArray(node.inputs) ? (node.inputs as Record<string, unknown>) : {};
}

/** The values of the inputs whose last name part is one of `names`. */
export function inputsNamed(inputs: Record<string, unknown>, names: readonly string[]): unknown[] {
  return Object.keys(inputs)
    .filter((input) => names.includes(inputBaseName(input)))
    .map((input) => inputValue(inputs[input]));
}

/**
 * The node id an input links to, as ComfyUI's validation reads a link: any two-item list whose first item is a
 * node id, whatever its slot is written as (`0`, `-0`, `0.0`), and such a list wrapped as `{"__value__": [...]}`,
 * which validation unwraps in place, so the graph runs it as a link. Undefined for any other value.
 */
function linkedNode(raw: unknown): string | undefined {
  const value = inputValue(raw);
  return Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' ? value[0] : undefined;
}

/** Whether a node links to an image or latent to resize (an input the walk follows). */
export function linksPixels(node: PromptNode): boolean {
  return Object.entries(nodeInputs(node)).some(([input, value]) => !NOT_PIXELS.has(inputBaseName(input)) && linkedNode(value) !== undefined);
}

/**
 * Bounds of the sizes a prompt's nodes output, each side found once (so a walk costs at most the prompt's
 * size). A side is undefined (unknown) when the walk reaches a node of no literal size that has no links
 * to follow (a loader), a link to no node, a cycle, a chain of more than MAX_DEPTH links, a model
 * upscaler, or a side a node derives from its input's aspect ratio or pixel count.
 */
export class SizeBounds {
  private readonly found = new Map<string, number | null>();
  private readonly walking = new Set<string>();

  /** `formsOf` gives a node id's forms: the node as sent, and as ComfyUI runs it when it replaces its class; none for an unknown id. */
  constructor(private readonly formsOf: (nodeId: string) => readonly PromptNode[]) {}

  /** The largest `side` of what node `nodeId` outputs (the largest over its forms), or undefined when unknown. */
  output(nodeId: string, side: Side, depth = 0): number | undefined {
    const key = `${side}:${nodeId}`;
    const known = this.found.get(key);
    if (known !== undefined) return known ?? undefined;
    if (this.walking.has(key) || depth > MAX_DEPTH) return undefined;
    this.walking.add(key);
    const forms = this.formsOf(nodeId);
    let largest: number | undefined = forms.length > 0 ? 0 : undefined;
    for (const form of forms) {
      const bound = largest === undefined ? undefined : this.formOutput(form, side, depth);
      largest = bound === undefined ? undefined : Math.max(largest!, bound);
    }
    this.walking.delete(key);
    this.found.set(key, largest ?? null);
    return largest;
  }

  /**
   * The largest `side` of what a node is given: the largest over the nodes its inputs link to (but
   * NOT_PIXELS), unknown when one of them is or when it links to none.
   */
  given(node: PromptNode, side: Side, depth = 0): number | undefined {
    let largest: number | undefined;
    for (const [input, value] of Object.entries(nodeInputs(node))) {
      const linked = NOT_PIXELS.has(inputBaseName(input)) ? undefined : linkedNode(value);
      if (linked === undefined) continue;
      const bound = this.output(linked, side, depth + 1);
      if (bound === undefined) return undefined;
      largest = Math.max(largest ?? 0, bound);
    }
    return largest;
  }

  /** The largest `side` one form of a node outputs. */
  private formOutput(node: PromptNode, side: Side, depth: number): number | undefined {
    const inputs = nodeInputs(node);
    if (MODEL_UPSCALERS.has(node.class_type)) return undefined;
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
function largestPositive(values: readonly unknown[]): number | undefined {
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

function sum(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : a + b;
}
