// A prompt node's inputs as the policy reads them: the inputs object, and inputs found by the last part of their name.

import { inputValue } from '../isolation/input-value.js';
import { inputBaseName } from './limited-inputs.js';
import type { PromptNode } from './node-replacements.js';

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
