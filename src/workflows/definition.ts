// A workflow as an admin registers it: its name, its graph and its typed inputs, checked strictly before it is stored.

import { invalidRequest } from '../errors.js';
import { isBoundedId } from '../isolation/ids.js';
import { exactNumberKey, jsonNumber, stringifyExactJson } from '../json/exact-json.js';
import { compareJsonNumbers, isWholeJsonNumber } from '../json/number-order.js';
import type { OpenAiImagesMapping, WorkflowInput, WorkflowInputType, WorkflowRecord } from '../store/types.js';

/** What a workflow's name may be: lowercase letters, digits, `-` and `_`, 1 to 64 characters. */
export const WORKFLOW_NAME = /^[a-z0-9_-]{1,64}$/;
/** What an input's name may be: a letter or `_`, then letters, digits and `_`, up to 64 characters. */
export const INPUT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** Most inputs one workflow may declare. */
export const MAX_WORKFLOW_INPUTS = 100;
/** Most values of an enum input. */
export const MAX_ENUM_VALUES = 1000;
/** Longest description, of a workflow or of an input. */
export const MAX_DESCRIPTION_LENGTH = 2000;
/** Largest registration body (the graph with its inputs). */
export const MAX_WORKFLOW_BODY_BYTES = 4 * 1024 * 1024;

export const WORKFLOW_INPUT_TYPES: readonly WorkflowInputType[] = ['integer', 'number', 'string', 'boolean', 'enum', 'image'];

const BODY_FIELDS = new Set(['prompt', 'description', 'inputs', 'openai_images']);
/** Each field of an `openai_images` mapping, and the type of the input it must name. */
const OPENAI_FIELDS: Readonly<Record<keyof OpenAiImagesMapping, WorkflowInputType>> = { prompt: 'string', width: 'integer', height: 'integer', n: 'integer' };
const INPUT_FIELDS = new Set(['node', 'input', 'type', 'default', 'min', 'max', 'values', 'description']);

/** One thing wrong with a request: the field and what is wrong with it. */
export type Problem = { field: string; problem: string };

/** A workflow as registered, before the store adds its times. */
export type WorkflowDefinition = Omit<WorkflowRecord, 'created_at' | 'updated_at'>;

/** Whether `value` is a plain JSON object (not an array, nor a number parseExactJson kept as its text). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && jsonNumber(value) === undefined;
}

/**
 * Reads a registration body strictly (read with parseExactJson, so the graph's numbers and the inputs' defaults go to ComfyUI as written): `prompt` (an API-format graph: node ids to `{class_type, inputs}`),
 * `description` (optional) and `inputs` (each binding a node's existing input, with a type, its bounds
 * and a default that fits them). Every problem is listed, not only the first.
 * @throws GatewayError 400 INVALID_REQUEST listing every problem
 */
export function parseWorkflowDefinition(name: string, body: unknown): WorkflowDefinition {
  const problems: Problem[] = [];
  if (!WORKFLOW_NAME.test(name)) problems.push({ field: 'name', problem: 'not 1 to 64 lowercase letters, digits, - or _' });
  if (!isObject(body)) {
    throw invalidRequest('The body must be a JSON object with prompt and inputs.', [
      ...problems,
      { field: 'body', problem: body === undefined ? 'empty' : 'not an object' },
    ]);
  }
  for (const field of Object.keys(body)) if (!BODY_FIELDS.has(field)) problems.push({ field: field.slice(0, 64), problem: 'unknown field' });
  const { prompt, description, inputs, openai_images: openAi } = body;
  const graph = isObject(prompt) ? prompt : null;
  if (!graph) problems.push({ field: 'prompt', problem: prompt === undefined ? 'missing' : 'not an object (the API-format graph)' });
  else problems.push(...graphProblems(graph));
  problems.push(...descriptionProblems('description', description));
  if (inputs !== undefined && !isObject(inputs)) problems.push({ field: 'inputs', problem: 'not an object of input name to input' });
  const declared = isObject(inputs) ? inputs : {};
  if (Object.keys(declared).length > MAX_WORKFLOW_INPUTS) problems.push({ field: 'inputs', problem: `more than ${MAX_WORKFLOW_INPUTS} inputs` });
  const bound = new Map<string, string>();
  for (const [inputName, definition] of Object.entries(declared).slice(0, MAX_WORKFLOW_INPUTS)) {
    const field = `inputs.${inputName.slice(0, 64)}`;
    if (!INPUT_NAME.test(inputName) || inputName === '__proto__')
      problems.push({ field, problem: 'not a name of letters, digits and _ (1 to 64, not starting with a digit)' });
    problems.push(...inputProblems(field, definition, graph));
    if (isObject(definition) && typeof definition.node === 'string' && typeof definition.input === 'string') {
      const target = JSON.stringify([definition.node, definition.input]);
      const other = bound.get(target);
      if (other !== undefined) problems.push({ field, problem: `sets the same node input as inputs.${other}` });
      else bound.set(target, inputName);
    }
  }
  if (openAi !== undefined && openAi !== null) problems.push(...openAiProblems(openAi, declared));
  if (problems.length > 0) throw invalidRequest('The workflow is not valid.', problems);
  return {
    name,
    prompt: graph!,
    description: typeof description === 'string' ? description : null,
    inputs: declared as Record<string, WorkflowInput>,
    ...(isObject(openAi) ? { openai_images: openAi as unknown as OpenAiImagesMapping } : {}),
  };
}

/**
 * What is wrong with an `openai_images` mapping: `prompt` (required) names a string input, `width` and
 * `height` (both or neither) and `n` integer inputs of the workflow; nothing else. Every other input
 * needs a default, since an OpenAI request cannot give it.
 */
function openAiProblems(mapping: unknown, inputs: Record<string, unknown>): Problem[] {
  if (!isObject(mapping)) return [{ field: 'openai_images', problem: 'not an object ({prompt, width?, height?, n?}), or null' }];
  const problems: Problem[] = [];
  for (const key of Object.keys(mapping)) {
    if (!Object.hasOwn(OPENAI_FIELDS, key)) problems.push({ field: `openai_images.${key.slice(0, 64)}`, problem: 'unknown field' });
  }
  for (const [field, type] of Object.entries(OPENAI_FIELDS)) {
    const named = mapping[field];
    if (named === undefined) {
      if (field === 'prompt') problems.push({ field: 'openai_images.prompt', problem: 'missing (the string input that takes the prompt)' });
      continue;
    }
    const input = typeof named === 'string' && Object.hasOwn(inputs, named) ? inputs[named] : undefined;
    if (!isObject(input)) problems.push({ field: `openai_images.${field}`, problem: 'not the name of one of the inputs' });
    else if (input.type !== type) problems.push({ field: `openai_images.${field}`, problem: `names an input of type ${String(input.type)}, not ${type}` });
  }
  const mapped = new Set(Object.values(mapping));
  for (const [name, input] of Object.entries(inputs)) {
    if (isObject(input) && !Object.hasOwn(input, 'default') && !mapped.has(name)) {
      problems.push({ field: 'openai_images', problem: `input ${name.slice(0, 64)} has no default, and no request field sets it` });
    }
  }
  if ((mapping.width === undefined) !== (mapping.height === undefined)) {
    problems.push({ field: 'openai_images', problem: 'width and height go together: give both (the request size) or neither' });
  }
  return problems;
}

/** What is wrong with a graph's shape: every node an object with a `class_type` and an `inputs` object, under a bounded id. */
function graphProblems(graph: Record<string, unknown>): Problem[] {
  const problems: Problem[] = [];
  if (Object.keys(graph).length === 0) problems.push({ field: 'prompt', problem: 'has no nodes' });
  for (const [id, node] of Object.entries(graph)) {
    const field = `prompt.${id.slice(0, 64)}`;
    if (!isBoundedId(id) || id === '' || id === '__proto__') problems.push({ field, problem: 'a node id must be 1 to 200 bytes of printable characters' });
    if (!isObject(node)) {
      problems.push({ field, problem: 'not a node object ({class_type, inputs})' });
      continue;
    }
    if (typeof node.class_type !== 'string' || node.class_type === '') problems.push({ field: `${field}.class_type`, problem: 'missing or not a string' });
    if (!isObject(node.inputs)) problems.push({ field: `${field}.inputs`, problem: 'missing or not an object' });
  }
  return problems;
}

function descriptionProblems(field: string, description: unknown): Problem[] {
  if (description === undefined) return [];
  if (typeof description !== 'string') return [{ field, problem: 'not a string' }];
  return description.length > MAX_DESCRIPTION_LENGTH ? [{ field, problem: `longer than ${MAX_DESCRIPTION_LENGTH} characters` }] : [];
}

/**
 * What is wrong with one input's definition. The node input it names must already be in the graph:
 * an input ComfyUI does not know would be refused when the workflow runs, so it is refused now.
 */
function inputProblems(field: string, definition: unknown, graph: Record<string, unknown> | null): Problem[] {
  if (!isObject(definition)) return [{ field, problem: 'not an object ({node, input, type, ...})' }];
  const problems: Problem[] = [];
  for (const key of Object.keys(definition)) if (!INPUT_FIELDS.has(key)) problems.push({ field: `${field}.${key.slice(0, 64)}`, problem: 'unknown field' });
  const { node, input, type, min, max, values } = definition;
  if (typeof node !== 'string') problems.push({ field: `${field}.node`, problem: 'missing or not a string (a node id of the graph)' });
  else if (graph && !Object.hasOwn(graph, node))
    problems.push({ field: `${field}.node`, problem: `no node ${JSON.stringify(node.slice(0, 64))} in the graph` });
  if (typeof input !== 'string') problems.push({ field: `${field}.input`, problem: "missing or not a string (the name of that node's input)" });
  else if (typeof node === 'string' && graph && Object.hasOwn(graph, node)) {
    const nodeInputs = (graph[node] as { inputs?: unknown }).inputs;
    if (isObject(nodeInputs) && !Object.hasOwn(nodeInputs, input)) {
      problems.push({ field: `${field}.input`, problem: `node ${JSON.stringify(node.slice(0, 64))} has no input ${JSON.stringify(input.slice(0, 64))}` });
    }
  }
  if (typeof type !== 'string' || !(WORKFLOW_INPUT_TYPES as readonly string[]).includes(type)) {
    problems.push({ field: `${field}.type`, problem: `missing or not one of ${WORKFLOW_INPUT_TYPES.join(', ')}` });
    return [...problems, ...descriptionProblems(`${field}.description`, definition.description)];
  }
  const numeric = type === 'integer' || type === 'number';
  for (const [bound, value] of [
    ['min', min],
    ['max', max],
  ] as const) {
    if (value === undefined) continue;
    if (!numeric) problems.push({ field: `${field}.${bound}`, problem: 'only integer and number inputs have bounds' });
    else if (!isNumberOfType(value, type)) problems.push({ field: `${field}.${bound}`, problem: `not ${type === 'integer' ? 'a whole number' : 'a number'}` });
  }
  if ((compareJsonNumbers(min, max) ?? 0) > 0) problems.push({ field: `${field}.min`, problem: `greater than max (${String(max)})` });
  if (type === 'enum') {
    if (!Array.isArray(values) || values.length === 0 || values.length > MAX_ENUM_VALUES) {
      problems.push({ field: `${field}.values`, problem: `missing, or not a list of 1 to ${MAX_ENUM_VALUES} values` });
    } else if (!values.every((value) => typeof value === 'string' || isNumberOfType(value, 'number'))) {
      problems.push({ field: `${field}.values`, problem: 'each value must be a string or a number' });
    } else if (new Set(values.map(enumKey)).size !== values.length) problems.push({ field: `${field}.values`, problem: 'lists a value twice' });
  } else if (values !== undefined) problems.push({ field: `${field}.values`, problem: 'only enum inputs have values' });
  if (Object.hasOwn(definition, 'default')) {
    if (type === 'image') problems.push({ field: `${field}.default`, problem: 'an image input has no default: each run gives its image' });
    else {
      const problem = valueProblem(definition as unknown as WorkflowInput, definition.default);
      if (problem !== null) problems.push({ field: `${field}.default`, problem });
    }
  }
  return [...problems, ...descriptionProblems(`${field}.description`, definition.description)];
}

/**
 * What is wrong with a value given for a (non-image) input: its type, its range, or for an enum a value
 * not listed; null when it fits. Numbers are taken as JSON gives them: `"5"` is not an integer. Bounds are
 * compared as ComfyUI compares an input with its min and max, by the values Python reads (see
 * compareJsonNumbers: 18446744073709551616 is above 18446744073709551615); an enum's numbers by their exact value.
 */
export function valueProblem(input: WorkflowInput, value: unknown): string | null {
  switch (input.type) {
    case 'integer':
    case 'number': {
      if (!isNumberOfType(value, input.type)) return `not ${input.type === 'integer' ? 'a whole number' : 'a number'}`;
      if ((compareJsonNumbers(value, input.min) ?? 0) < 0) return `below the minimum ${String(input.min)}`;
      if ((compareJsonNumbers(value, input.max) ?? 0) > 0) return `above the maximum ${String(input.max)}`;
      return null;
    }
    case 'string':
      return typeof value === 'string' ? null : 'not a string';
    case 'boolean':
      return typeof value === 'boolean' ? null : 'not a boolean';
    case 'enum':
      return enumKey(value) !== null && Array.isArray(input.values) && input.values.some((listed) => enumKey(listed) === enumKey(value))
        ? null
        : `not one of ${stringifyExactJson(input.values ?? []).slice(0, 300)}`;
    case 'image':
      return null;
  }
}

/**
 * Whether `value` is a finite JSON number, and for `integer` a whole one as written (see isWholeJsonNumber).
 * ComfyUI takes `int()` of an INT input, so it runs `7.0` as 7, as the gateway does; it would also run `7.5`
 * and `1.0000000000000001` as 7 and 1, which the gateway refuses rather than have a run differ from its inputs.
 */
function isNumberOfType(value: unknown, type: 'integer' | 'number'): boolean {
  const number = jsonNumber(value);
  return number !== undefined && Number.isFinite(number) && (type === 'number' || isWholeJsonNumber(value));
}

/** What an enum value is compared by: a number by its exact value (`7` and `7.0` alike, as ComfyUI's `in` finds them), a string as its JSON text; null for anything else, which no listed value is. */
function enumKey(value: unknown): string | null {
  return exactNumberKey(value) ?? (typeof value === 'string' ? JSON.stringify(value) : null);
}
