// The max_steps check of nodes that make more sampling steps than the sigmas they are given hold: ExtendIntermediateSigmas.

import type { PolicyViolation } from '../errors.js';
import { inputLimits } from './limited-inputs.js';
import { nodeInputs } from './node-inputs.js';
import type { PromptNode } from './node-replacements.js';
import { NodeWalk } from './node-walk.js';
import type { PromptPolicy } from './schema.js';
import { largestPositive, linkedNode } from './size-bound.js';

/** Core nodes that put `steps` - 1 sigmas between each two they are given: each step becomes `steps` steps. */
const EXTENDERS: ReadonlySet<string> = new Set(['ExtendIntermediateSigmas']);

/** Core nodes whose sigmas hold at most the steps of the sigmas they are given. */
const SIGMAS_THROUGH: ReadonlySet<string> = new Set(['SplitSigmas', 'SplitSigmasDenoise', 'FlipSigmas', 'SetFirstSigma']);

const UNFIXED_REASON =
  'it makes each step of the sigmas it is given `steps` steps, and those sigmas do not come from a scheduler of literal steps ' +
  '(through SplitSigmas, SplitSigmasDenoise, FlipSigmas or SetFirstSigma at most): link it to such a scheduler';
const OVER_REASON = 'it makes each step of the sigmas it is given `steps` steps: the sampler runs their product; lower either';

/** The most steps the sigmas of a prompt's nodes make, each found once per node (so a walk costs at most the prompt's size). */
export class SigmaSteps {
  private readonly walk: NodeWalk;

  /** `formsOf` gives a node id's forms: the node as sent, and as ComfyUI runs it when it replaces its class; none for an unknown id. */
  constructor(formsOf: (nodeId: string) => readonly PromptNode[]) {
    this.walk = new NodeWalk(formsOf);
  }

  /**
   * The most steps one form of a node's sigmas make: its literal `steps` (a scheduler), times the steps it is given
   * for an extender, or the steps it is given for a node that only splits, flips or sets them. Undefined when unknown:
   * a node of neither kind without literal steps, a link to no node, a cycle, or a chain of more than MAX_WALK_DEPTH links.
   */
  made(node: PromptNode, depth = 0): number | undefined {
    const given = (): number | undefined => {
      const linked = linkedNode(nodeInputs(node).sigmas);
      return linked === undefined ? undefined : this.output(linked, depth + 1);
    };
    if (SIGMAS_THROUGH.has(node.class_type)) return given();
    const steps = literalSteps(node);
    if (!EXTENDERS.has(node.class_type) || steps === undefined) return steps;
    const before = given();
    return before === undefined ? undefined : before * steps;
  }

  private output(nodeId: string, depth: number): number | undefined {
    return this.walk.largest(nodeId, nodeId, depth, (form) => this.made(form, depth));
  }
}

/** The largest literal of a node's inputs read as steps (see inputLimits); undefined when it has none, or one is not a literal above 0. */
function literalSteps(node: PromptNode): number | undefined {
  const inputs = nodeInputs(node);
  const given = Object.keys(inputs).filter((input) => inputLimits(node.class_type, input).includes('max_steps'));
  return given.length === 0 ? undefined : largestPositive(given.map((input) => inputs[input]));
}

/**
 * The max_steps violation of an extender (ExtendIntermediateSigmas): the steps it makes, the steps of the sigmas it is
 * given times its own `steps`, must be known and within the limit. None for any other node, or when the policy does not set max_steps.
 */
export function sigmaStepViolations(policy: PromptPolicy, nodeId: string, node: PromptNode, steps: SigmaSteps): PolicyViolation[] {
  const limit = policy.max_steps;
  if (limit === undefined || !EXTENDERS.has(node.class_type)) return [];
  const made = steps.made(node);
  if (made === undefined) return [{ node_id: nodeId, rule: 'max_steps', limit, value: 'unbounded', reason: UNFIXED_REASON }];
  return made > limit ? [{ node_id: nodeId, rule: 'max_steps', limit, value: made, reason: OVER_REASON }] : [];
}
