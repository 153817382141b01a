// Checks a prompt against its key's prompt policy before it is admitted: node globs, sizes, steps, frames and body size.

import { promptPolicy, type PolicyViolation } from '../errors.js';
import { inputValue } from '../isolation/input-value.js';
import { jsonNumber } from '../json/exact-json.js';
import { replacedNode, type NodeReplacements, type PromptNode } from './node-replacements.js';
import type { KeyRecord } from '../store/types.js';
import type { PolicyLimitField, PromptPolicy } from './schema.js';

/** The limit a node input is read against. */
type InputLimit = Extract<PolicyLimitField, 'max_width' | 'max_height' | 'max_batch_size' | 'max_steps' | 'max_frames'>;

const LATENT_IMAGE = { width: 'max_width', height: 'max_height', batch_size: 'max_batch_size' } as const;
const LATENT_VIDEO = { ...LATENT_IMAGE, length: 'max_frames' } as const;
const SCALE = { width: 'max_width', height: 'max_height' } as const;
const STEPS = { steps: 'max_steps' } as const;

/**
 * The node types whose inputs a policy reads, and the limit each input is held to. Documented in
 * docs/api.md ("Prompt policy"); nodes of other types are checked only against allow_nodes/deny_nodes.
 */
export const POLICY_NODE_INPUTS: Readonly<Record<string, Readonly<Record<string, InputLimit>>>> = {
  EmptyLatentImage: LATENT_IMAGE,
  EmptySD3LatentImage: LATENT_IMAGE,
  EmptyHunyuanLatentVideo: LATENT_VIDEO,
  EmptyMochiLatentVideo: LATENT_VIDEO,
  EmptyLTXVLatentVideo: LATENT_VIDEO,
  ImageScale: SCALE,
  LatentUpscale: SCALE,
  RepeatLatentBatch: { amount: 'max_batch_size' },
  KSampler: STEPS,
  KSamplerAdvanced: STEPS,
  BasicScheduler: STEPS,
  KarrasScheduler: STEPS,
  ExponentialScheduler: STEPS,
  PolyexponentialScheduler: STEPS,
  LaplaceScheduler: STEPS,
  VPScheduler: STEPS,
  BetaSamplingScheduler: STEPS,
  SDTurboScheduler: STEPS,
  AlignYourStepsScheduler: STEPS,
  GITSScheduler: STEPS,
  OptimalStepsScheduler: STEPS,
};

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
 * allow_nodes, then each input read).
 * A node whose class_type ComfyUI replaces (`replacements`, from its GET /node_replacements) is checked
 * as it is and as the node ComfyUI runs in its place.
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
): void {
  const violations = promptViolations(policy, prompt, bodyBytes, origin, replacements);
  if (violations.length > 0) throw promptPolicy(violations.slice(0, MAX_VIOLATIONS));
}

/** Every violation of `policy` by a prompt (the `prompt` field of the body) sent in a body of `bodyBytes`; see checkPrompt. */
export function promptViolations(
  policy: PromptPolicy,
  prompt: unknown,
  bodyBytes: number,
  origin: PromptOrigin = {},
  replacements: NodeReplacements = new Map(),
): PolicyViolation[] {
  const violations: PolicyViolation[] = [];
  if (policy.workflows_only === true && origin.workflow !== true) violations.push({ node_id: null, rule: 'workflows_only', limit: true, value: null });
  if (policy.max_prompt_bytes !== undefined && bodyBytes > policy.max_prompt_bytes) {
    violations.push({ node_id: null, rule: 'max_prompt_bytes', limit: policy.max_prompt_bytes, value: bodyBytes });
  }
  if (typeof prompt !== 'object' || prompt === null || Array.isArray(prompt)) return violations;
  const globs = { deny: policy.deny_nodes?.map(globPattern), allow: policy.allow_nodes?.map(globPattern) };
  for (const [nodeId, node] of Object.entries(prompt as Record<string, unknown>)) {
    if (violations.length >= MAX_VIOLATIONS) break;
    if (typeof node !== 'object' || node === null) continue;
    const { class_type: classType, inputs } = node as { class_type?: unknown; inputs?: unknown };
    if (typeof classType !== 'string') continue;
    const given = { class_type: classType, inputs };
    const replaced = replacedNode(given, replacements);
    for (const form of replaced ? [given, replaced] : [given]) violations.push(...nodeViolations(policy, globs, nodeId, form));
  }
  return violations;
}

/** The violations of one node: deny_nodes, allow_nodes, then each input read. */
function nodeViolations(policy: PromptPolicy, globs: { deny?: RegExp[]; allow?: RegExp[] }, nodeId: string, node: PromptNode): PolicyViolation[] {
  const { class_type: classType, inputs } = node;
  const violations: PolicyViolation[] = [];
  const denied = globs.deny?.findIndex((pattern) => pattern.test(classType)) ?? -1;
  if (denied >= 0) violations.push({ node_id: nodeId, rule: 'deny_nodes', limit: policy.deny_nodes![denied], value: classType });
  else if (globs.allow && !globs.allow.some((pattern) => pattern.test(classType))) {
    violations.push({ node_id: nodeId, rule: 'allow_nodes', limit: policy.allow_nodes, value: classType });
  }
  const read = POLICY_NODE_INPUTS[classType];
  if (!read || typeof inputs !== 'object' || inputs === null) return violations;
  for (const [input, rule] of Object.entries(read)) {
    const limit = policy[rule];
    const given = inputValue((inputs as Record<string, unknown>)[input]);
    if (limit === undefined || given === undefined) continue;
    if (Array.isArray(given)) violations.push({ node_id: nodeId, rule, limit, value: 'linked' });
    else {
      const value = literalNumber(given);
      if (value === 'text' || (value !== undefined && value > limit)) violations.push({ node_id: nodeId, rule, limit, value });
    }
  }
  return violations;
}

/**
 * An INT input's literal as the gateway compares it: a number, or a string holding one. Any other string
 * is `'text'`: ComfyUI reads it with Python's int(), which takes more than JavaScript's Number does
 * (`"1_000"`, digits of other scripts, other whitespace). Undefined for anything else (ComfyUI refuses
 * it, or reads a boolean as 0 or 1).
 */
function literalNumber(value: unknown): number | 'text' | undefined {
  const number = jsonNumber(value);
  if (number !== undefined) return Number.isNaN(number) ? undefined : number;
  if (typeof value !== 'string') return undefined;
  const read = value.trim() === '' ? NaN : Number(value);
  return Number.isNaN(read) ? 'text' : read;
}

/** A whole-string, case-sensitive match for a glob where `*` stands for any run of characters. */
export function globPattern(glob: string): RegExp {
  const body = glob
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`, 's');
}
