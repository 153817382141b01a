// A key's prompt policy: its shape, and the strict check of a policy given by a client, a file or a store.

/** Node-count and size limits of a policy: each a whole number from 1 to MAX_POLICY_LIMIT. */
export const POLICY_LIMIT_FIELDS = [
  'max_width',
  'max_height',
  'max_batch_size',
  'max_steps',
  'max_frames',
  'max_prompt_bytes',
  'max_execution_seconds',
] as const;

/** The glob-list fields of a policy. */
export const POLICY_GLOB_FIELDS = ['allow_nodes', 'deny_nodes'] as const;

export type PolicyLimitField = (typeof POLICY_LIMIT_FIELDS)[number];

/** What a key's prompts may hold; every field is optional, and an absent one allows anything. */
export type PromptPolicy = Partial<Record<PolicyLimitField, number>> & {
  /** Globs (`*` for any run of characters) of node class_types; with it, each node must match one. */
  allow_nodes?: string[];
  /** Globs of node class_types refused; deny wins over allow. */
  deny_nodes?: string[];
  /** Refuses POST /prompt altogether. */
  workflows_only?: boolean;
};

/** The largest limit a policy may set (it fits a PostgreSQL `integer`, like the job quotas). */
export const MAX_POLICY_LIMIT = 1_000_000_000;
/** Most globs in one list. */
export const MAX_POLICY_GLOBS = 200;
/** Longest glob. */
export const MAX_POLICY_GLOB_LENGTH = 200;

const FIELDS: readonly string[] = [...POLICY_GLOB_FIELDS, ...POLICY_LIMIT_FIELDS, 'workflows_only'];

/** One thing wrong with a policy: the field (`policy.max_width`) and what is wrong. */
export interface PolicyProblem {
  field: string;
  problem: string;
}

/**
 * Every problem of a policy value, each naming its field under `prefix` (`policy.max_steps`); empty
 * when it is a valid policy. Unknown fields, wrong types and numbers out of range are all problems.
 */
export function policyProblems(value: unknown, prefix = 'policy'): PolicyProblem[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [{ field: prefix, problem: 'must be a JSON object or null' }];
  const problems: PolicyProblem[] = [];
  const policy = value as Record<string, unknown>;
  for (const field of Object.keys(policy)) {
    if (!FIELDS.includes(field)) problems.push({ field: `${prefix}.${field}`, problem: `unknown field; allowed: ${FIELDS.join(', ')}` });
  }
  for (const field of POLICY_GLOB_FIELDS) {
    if (!(field in policy)) continue;
    const globs = policy[field];
    if (!Array.isArray(globs) || globs.length > MAX_POLICY_GLOBS || !globs.every(isGlob)) {
      problems.push({
        field: `${prefix}.${field}`,
        problem: `must be a list of at most ${MAX_POLICY_GLOBS} node class_type globs (non-empty printable strings of at most ${MAX_POLICY_GLOB_LENGTH} characters, * for any run)`,
      });
    }
  }
  for (const field of POLICY_LIMIT_FIELDS) {
    if (field in policy && !isLimit(policy[field]))
      problems.push({ field: `${prefix}.${field}`, problem: `must be a whole number from 1 to ${MAX_POLICY_LIMIT}` });
  }
  if ('workflows_only' in policy && typeof policy.workflows_only !== 'boolean')
    problems.push({ field: `${prefix}.workflows_only`, problem: 'must be true or false' });
  return problems;
}

/** A copy of a checked policy with only its known fields, in a fixed order (what stores and answers hold). */
export function normalizedPolicy(policy: PromptPolicy): PromptPolicy {
  const result: Record<string, unknown> = {};
  for (const field of FIELDS) if (policy[field as keyof PromptPolicy] !== undefined) result[field] = policy[field as keyof PromptPolicy];
  return result as PromptPolicy;
}

/** Reads a stored or configured policy: the policy, or a message listing its problems. */
export function parsePolicy(value: unknown, prefix = 'policy'): PromptPolicy | string {
  const problems = policyProblems(value, prefix);
  if (problems.length > 0) return problems.map((p) => `${p.field} ${p.problem}`).join('; ');
  return normalizedPolicy(value as PromptPolicy);
}

function isLimit(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= MAX_POLICY_LIMIT;
}

function isGlob(value: unknown): value is string {
  // eslint-disable-next-line no-control-regex
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_POLICY_GLOB_LENGTH && !/[\u0000-\u001f\u007f]/.test(value);
}
