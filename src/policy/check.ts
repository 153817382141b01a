// Checks a prompt against its key's prompt policy before it is admitted: node globs, sizes, steps, frames and body size.

import { promptPolicy, type PolicyViolation } from '../errors.js';
import { inputValue } from '../isolation/input-value.js';
import { joinViolations } from './join-checks.js';
import { inputLimits } from './limited-inputs.js';
import { literalNumber } from './literal-number.js';
import { loadedImageViolations, type LoadedSizes } from './loaded-images.js';
import { loadedMediaViolations } from './loaded-media.js';
import { replacedNodes, type NodeReplacements, type PromptNode } from './node-replacements.js';
import { resizeViolations } from './resize-checks.js';
import { nodeInputs } from './node-inputs.js';
import { SigmaSteps, sigmaStepViolations } from './sigma-steps.js';
import { SizeBounds } from './size-bound.js';
import type { KeyRecord } from '../store/types.js';
import type { PromptPolicy } from './schema.js';

/** Most violations listed in one refusal. */
const MAX_VIOLATIONS = 50;

/**
 * The policy that applies to a key: its own, or, for a user key without one, the default policy
 * (`--default-policy`). Admin keys are held only to their own; null when none applies.
 */
export function effectivePolicy(key: Pick<KeyRecord, 'role' | 'policy'>, defaultPolicy: PromptPolicy | null): PromptPolicy | null {
  return key.policy ?? (key.role === 'user' ? defaultPolicy : null);
}

/** Where a prompt comes from: a registered workflow's run passes `workflows_only` (every other rule still applies). */
export interface PromptOrigin {
  workflow?: boolean;
}

/**
 * Refuses a prompt that breaks `policy`, listing every violation (up to 50), in the order: workflows_only
 * (unless the prompt is a registered workflow's), max_prompt_bytes, then node by node (deny_nodes,
 * allow_nodes, each input read, then the size a resizing node makes, then what a joining node makes: see
 * resizeViolations and joinViolations; then the image a loader loads, by its size in `loaded`, see loadedImageViolations;
 * then the steps an extender of sigmas makes, see sigmaStepViolations).
 * Inputs are read by name on every node (see inputLimits).
 * A node whose class_type ComfyUI replaces (`replacements`, from its GET /node_replacements) is checked
 * as it is and as each node a backend runs in its place.
 * A linked input (`[node_id, slot]`) of a limited field is a violation too: its value is known only
 * when ComfyUI runs the graph. A value wrapped as `{"__value__": v}` is read as v (ComfyUI unwraps it).
 * A numeric string counts as its number (ComfyUI converts it); any other string is a violation (see literalNumber).
 * @throws GatewayError 403 PROMPT_POLICY
 */
export function checkPrompt(
  policy: PromptPolicy,
  prompt: unknown,
  bodyBytes: number,
  origin: PromptOrigin = {},
  replacements: NodeReplacements = new Map(),
  loaded: LoadedSizes = new Map(),
): void {
  const violations = promptViolations(policy, prompt, bodyBytes, origin, replacements, loaded);
  if (violations.length > 0) throw promptPolicy(violations.slice(0, MAX_VIOLATIONS));
}

/** Every violation of `policy` by a prompt (the `prompt` field of the body) sent in a body of `bodyBytes`; see checkPrompt. */
export function promptViolations(
  policy: PromptPolicy,
  prompt: unknown,
  bodyBytes: number,
  origin: PromptOrigin = {},
  replacements: NodeReplacements = new Map(),
  loaded: LoadedSizes = new Map(),
): PolicyViolation[] {
  const violations: PolicyViolation[] = [];
  if (policy.workflows_only === true && origin.workflow !== true) violations.push({ node_id: null, rule: 'workflows_only', limit: true, value: null });
  if (policy.max_prompt_bytes !== undefined && bodyBytes > policy.max_prompt_bytes) {
    violations.push({ node_id: null, rule: 'max_prompt_bytes', limit: policy.max_prompt_bytes, value: bodyBytes });
  }
  if (typeof prompt !== 'object' || prompt === null || Array.isArray(prompt)) return violations;
  const globs = { deny: policy.deny_nodes?.map(globPattern), allow: policy.allow_nodes?.map(globPattern) };
  const forms = new Map<string, PromptNode[]>();
  for (const [nodeId, node] of Object.entries(prompt as Record<string, unknown>)) {
    if (typeof node !== 'object' || node === null) continue;
    const { class_type: classType, inputs } = node as { class_type?: unknown; inputs?: unknown };
    if (typeof classType !== 'string') continue;
    const given = { class_type: classType, inputs };
    forms.set(nodeId, [given, ...replacedNodes(given, replacements)]);
  }
  const bounds = new SizeBounds((nodeId) => forms.get(nodeId) ?? [], loaded);
  const steps = new SigmaSteps((nodeId) => forms.get(nodeId) ?? []);
  for (const [nodeId, nodeForms] of forms) {
    if (violations.length >= MAX_VIOLATIONS) break;
    for (const form of nodeForms) {
      violations.push(
        ...nodeViolations(policy, globs, nodeId, form, bounds),
        ...loadedImageViolations(policy, nodeId, form, loaded),
        ...loadedMediaViolations(policy, nodeId, form, loaded),
        ...sigmaStepViolations(policy, nodeId, form, steps),
      );
    }
  }
  return violations;
}

/** The violations of one node: deny_nodes, allow_nodes, each input read, then the size it makes when it resizes, then what it makes when it joins. */
function nodeViolations(
  policy: PromptPolicy,
  globs: { deny?: RegExp[]; allow?: RegExp[] },
  nodeId: string,
  node: PromptNode,
  bounds: SizeBounds,
): PolicyViolation[] {
  const { class_type: classType } = node;
  const violations: PolicyViolation[] = [];
  const denied = globs.deny?.findIndex((pattern) => pattern.test(classType)) ?? -1;
  if (denied >= 0) violations.push({ node_id: nodeId, rule: 'deny_nodes', limit: policy.deny_nodes![denied], value: classType });
  else if (globs.allow && !globs.allow.some((pattern) => pattern.test(classType))) {
    violations.push({ node_id: nodeId, rule: 'allow_nodes', limit: policy.allow_nodes, value: classType });
  }
  for (const [input, raw] of Object.entries(nodeInputs(node))) {
    const given = inputValue(raw);
    if (given === undefined) continue;
    for (const rule of inputLimits(classType, input)) {
      const limit = policy[rule];
      if (limit === undefined) continue;
      if (Array.isArray(given)) violations.push({ node_id: nodeId, rule, limit, value: 'linked' });
      else {
        const value = literalNumber(given);
        if (value === 'text' || (value !== undefined && value > limit)) violations.push({ node_id: nodeId, rule, limit, value });
      }
    }
  }
  violations.push(...resizeViolations(policy, nodeId, node, bounds), ...joinViolations(policy, nodeId, node, bounds));
  return violations;
}

/** A whole-string, case-sensitive match for a glob where `*` stands for any run of characters. */
export function globPattern(glob: string): RegExp {
  const body = glob
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`, 's');
}
