// The inputs of a workflow run: checked against the workflow's declarations, then set in a copy of its graph.

import { copyJson } from '../json/exact-json.js';
import type { WorkflowInput, WorkflowRecord } from '../store/types.js';
import { isObject, valueProblem, type Problem } from './definition.js';

/** Where a run's image input comes from: a file the key uploaded, base64 bytes (raw or a data: URL), or an http(s) URL. */
export type ImageSource = { kind: 'upload'; name: string } | { kind: 'base64'; data: string; contentType: string | null } | { kind: 'url'; url: string };

/** A run's inputs once checked: the value of each non-image input (given or default), and the source of each image input. */
export interface CheckedInputs {
  values: Record<string, unknown>;
  images: Record<string, ImageSource>;
}

const DATA_URL = /^data:([^;,]*)((?:;[^;,]*)*),/i;

/**
 * Checks a run's `inputs` against the workflow: every given input must be declared and fit its type,
 * range or values; every declared input without a default must be given. Problems are added to
 * `problems` as `{field: "inputs.<name>", problem}`, all of them.
 */
export function checkRunInputs(workflow: WorkflowRecord, given: unknown, problems: Problem[]): CheckedInputs {
  const checked: CheckedInputs = { values: {}, images: {} };
  if (given !== undefined && !isObject(given)) {
    problems.push({ field: 'inputs', problem: 'not an object of input name to value' });
    return checked;
  }
  const inputs = given ?? {};
  for (const name of Object.keys(inputs)) {
    if (!Object.hasOwn(workflow.inputs, name)) problems.push({ field: `inputs.${name.slice(0, 64)}`, problem: 'unknown input' });
  }
  for (const [name, input] of Object.entries(workflow.inputs)) {
    const field = `inputs.${name}`;
    if (!Object.hasOwn(inputs, name)) {
      if (Object.hasOwn(input, 'default')) checked.values[name] = input.default;
      else problems.push({ field, problem: 'missing (it has no default)' });
      continue;
    }
    const value = inputs[name];
    if (input.type === 'image') {
      const source = imageSourceOf(value);
      if (typeof source === 'string') problems.push({ field, problem: source });
      else checked.images[name] = source;
      continue;
    }
    const problem = valueProblem(input, value);
    if (problem !== null) problems.push({ field, problem });
    else checked.values[name] = value;
  }
  return checked;
}

/** The source an image input's value names, or what is wrong with it. */
function imageSourceOf(value: unknown): ImageSource | string {
  const expected = 'not an image: give the name of a file this key uploaded, {"base64": "..."}, a data: URL or {"url": "https://..."}';
  if (typeof value === 'string') {
    if (value === '') return expected;
    const data = DATA_URL.exec(value);
    if (data) {
      if (!data[2]!.toLowerCase().split(';').includes('base64')) return 'a data: URL must be base64-encoded (data:image/png;base64,...)';
      return { kind: 'base64', data: value.slice(data[0].length), contentType: data[1]!.toLowerCase() || null };
    }
    return { kind: 'upload', name: value };
  }
  if (!isObject(value)) return expected;
  const keys = Object.keys(value);
  if (keys.length !== 1) return 'an image object has exactly one field: base64 or url';
  if (typeof value.base64 === 'string') return { kind: 'base64', data: value.base64, contentType: null };
  if (typeof value.url === 'string') return { kind: 'url', url: value.url };
  return expected;
}

/**
 * A copy of the workflow's graph with each input's value set on its node input (image inputs by the
 * stored file's name, `images`). The workflow's own graph is left as it is; its numbers and the values
 * keep the texts they were read with (see parseExactJson).
 */
export function buildPrompt(workflow: WorkflowRecord, values: Record<string, unknown>): Record<string, unknown> {
  const prompt = copyJson(workflow.prompt);
  for (const [name, value] of Object.entries(values)) {
    const input: WorkflowInput | undefined = workflow.inputs[name];
    if (!input) continue;
    const node = prompt[input.node] as { inputs: Record<string, unknown> };
    node.inputs[input.input] = value;
  }
  return prompt;
}
