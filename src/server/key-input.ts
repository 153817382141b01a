// Validates the bodies of key creation and key updates; every problem is reported, nothing is guessed.

import { invalidRequest } from '../errors.js';
import { checkOutboundUrl, OutboundUrlError } from '../net/outbound.js';
import { normalizedPolicy, policyProblems, type PromptPolicy } from '../policy/schema.js';
import { isQuota } from '../store/key-record.js';
import { holdsUnstorableText, isStorableText } from '../store/storable-text.js';
import { KEY_QUOTA_FIELDS, MAX_KEY_QUOTA, type KeyPatch, type KeyQuotas, type KeyRole } from '../store/types.js';

export const MAX_NAME_LENGTH = 200;
export const MAX_RATE_LIMIT = 10_000_000;
export const MAX_METADATA_BYTES = 16 * 1024;

export interface CreateKeyInput extends Partial<KeyQuotas> {
  name?: string;
  rate_limit?: number;
  metadata?: Record<string, unknown>;
  role?: KeyRole;
  expires_at?: number | null;
  policy?: PromptPolicy | null;
  webhook_url?: string | null;
}

/** The fields the management API lets a client change. */
export type KeyUpdateInput = Pick<
  KeyPatch,
  'name' | 'rate_limit' | 'is_active' | 'role' | 'metadata' | 'expires_at' | 'policy' | 'webhook_url' | keyof KeyQuotas
>;

/** Latest expiry accepted: far beyond any real use, but still a time (year 5138). */
const MAX_EXPIRES_AT = 1e11;

interface Problem {
  field: string;
  problem: string;
}

const CREATE_FIELDS = ['name', 'rate_limit', 'metadata', 'role', 'expires_at', ...KEY_QUOTA_FIELDS, 'policy', 'webhook_url'];
const PATCH_FIELDS = ['name', 'rate_limit', 'is_active', 'role', 'metadata', 'expires_at', ...KEY_QUOTA_FIELDS, 'policy', 'webhook_url'];

/** The longest webhook URL accepted. */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

/** What each quota field counts, for error messages. */
const QUOTA_UNITS: Record<keyof KeyQuotas, string> = {
  max_queued: 'jobs held, queued or running at once',
  max_running: 'jobs running at once',
  daily_execution_seconds: 'seconds of ComfyUI execution per UTC day',
};

/**
 * Checks a `POST /api/keys` body (an empty body means all defaults).
 * @throws GatewayError INVALID_REQUEST listing each bad field.
 */
export function parseCreateKey(body: unknown): CreateKeyInput {
  return check(body ?? {}, CREATE_FIELDS);
}

/**
 * Checks a `PATCH /api/keys/{id}` body; at least one field is needed.
 * @throws GatewayError INVALID_REQUEST listing each bad field.
 */
export function parsePatchKey(body: unknown): KeyUpdateInput {
  const patch = check(body, PATCH_FIELDS) as KeyUpdateInput;
  if (Object.keys(patch).length === 0) {
    throw invalidRequest('Nothing to update: send at least one of ' + PATCH_FIELDS.join(', ') + '.', [{ field: 'body', problem: 'no fields' }]);
  }
  return patch;
}

/**
 * Checks the `webhook_url` of a checked key body, if it sets one: http(s), and not a loopback, private
 * or link-local address unless `allowPrivate` (`--webhook-allow-private`).
 * @throws GatewayError INVALID_REQUEST naming webhook_url
 */
export async function checkKeyWebhookUrl(input: { webhook_url?: string | null }, allowPrivate: boolean): Promise<void> {
  if (typeof input.webhook_url !== 'string') return;
  try {
    await checkOutboundUrl(input.webhook_url, allowPrivate, '--webhook-allow-private');
  } catch (error) {
    if (!(error instanceof OutboundUrlError)) throw error;
    throw invalidRequest(`Invalid request: webhook_url ${error.message}.`, [{ field: 'webhook_url', problem: error.message }]);
  }
}

/** Longest grace period for a rotated-out secret: 30 days. */
export const MAX_ROTATION_GRACE_SECONDS = 30 * 86_400;

/**
 * Checks a rotation body: `{grace_seconds?}` (default 0: the old secret stops working at once).
 * @throws GatewayError INVALID_REQUEST
 */
export function parseRotateKey(body: unknown): { grace_seconds: number } {
  const fields = check(body ?? {}, ['grace_seconds']);
  const grace = fields.grace_seconds ?? 0;
  if (typeof grace !== 'number' || !Number.isInteger(grace) || grace < 0 || grace > MAX_ROTATION_GRACE_SECONDS) {
    throw invalidRequest(`grace_seconds must be a whole number from 0 to ${MAX_ROTATION_GRACE_SECONDS}.`, [
      { field: 'grace_seconds', problem: 'out of range' },
    ]);
  }
  return { grace_seconds: grace };
}

/** The audit action of an update: `key.disable`/`key.enable` when it only switches the key off or on. */
export function auditActionOf(patch: KeyUpdateInput): string {
  const fields = Object.keys(patch);
  if (fields.length === 1 && fields[0] === 'is_active') return patch.is_active ? 'key.enable' : 'key.disable';
  return 'key.update';
}

/** The size of `value` as UTF-8 JSON text, or undefined when it is nested too deeply to write (JSON.stringify runs out of stack). */
function jsonBytes(value: unknown): number | undefined {
  try {
    return Buffer.byteLength(JSON.stringify(value));
  } catch {
    return undefined;
  }
}

function check(body: unknown, allowed: string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest('The body must be a JSON object.', [{ field: 'body', problem: 'not an object' }]);
  }
  const problems: Problem[] = [];
  const fields = body as Record<string, unknown>;
  for (const field of Object.keys(fields)) {
    if (!allowed.includes(field)) problems.push({ field, problem: `unknown field; allowed: ${allowed.join(', ')}` });
  }
  if ('name' in fields) {
    const name = fields.name;
    if (typeof name !== 'string' || name.trim().length === 0) problems.push({ field: 'name', problem: 'must be a non-empty string' });
    else if (name.length > MAX_NAME_LENGTH) problems.push({ field: 'name', problem: `must be at most ${MAX_NAME_LENGTH} characters` });
    // eslint-disable-next-line no-control-regex
    else if (/[\u0000-\u001f\u007f]/.test(name)) problems.push({ field: 'name', problem: 'must not contain control characters' });
    else if (!isStorableText(name)) problems.push({ field: 'name', problem: 'must be valid Unicode text (an unpaired surrogate such as \\ud800 is not)' });
  }
  if ('rate_limit' in fields) {
    const limit = fields.rate_limit;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_RATE_LIMIT) {
      problems.push({ field: 'rate_limit', problem: `must be a whole number from 1 to ${MAX_RATE_LIMIT} (requests per hour)` });
    }
  }
  if ('metadata' in fields) {
    const metadata = fields.metadata;
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
      problems.push({ field: 'metadata', problem: 'must be a JSON object' });
    } else {
      const bytes = jsonBytes(metadata);
      if (bytes === undefined) problems.push({ field: 'metadata', problem: 'is nested too deeply' });
      else if (bytes > MAX_METADATA_BYTES) problems.push({ field: 'metadata', problem: `must be at most ${MAX_METADATA_BYTES} bytes as UTF-8 JSON` });
      else if (holdsUnstorableText(metadata))
        problems.push({ field: 'metadata', problem: 'must not hold \\u0000 or an unpaired surrogate (such as \\ud800) in any key or string' });
    }
  }
  if ('role' in fields && fields.role !== 'user' && fields.role !== 'admin') {
    problems.push({ field: 'role', problem: 'must be "user" or "admin"' });
  }
  if ('expires_at' in fields && fields.expires_at !== null) {
    const at = fields.expires_at;
    if (typeof at !== 'number' || !Number.isFinite(at) || at < 0 || at > MAX_EXPIRES_AT) {
      problems.push({ field: 'expires_at', problem: 'must be a Unix time in seconds, or null for never' });
    }
  }
  for (const field of KEY_QUOTA_FIELDS) {
    if (field in fields && fields[field] !== null && !isQuota(fields[field])) {
      problems.push({ field, problem: `must be a whole number from 1 to ${MAX_KEY_QUOTA} (${QUOTA_UNITS[field]}), or null for no limit` });
    }
  }
  if ('is_active' in fields && typeof fields.is_active !== 'boolean') {
    problems.push({ field: 'is_active', problem: 'must be true or false' });
  }
  if ('policy' in fields && fields.policy !== null) problems.push(...policyProblems(fields.policy));
  if ('webhook_url' in fields && fields.webhook_url !== null) {
    const url = fields.webhook_url;
    if (typeof url !== 'string' || url === '') problems.push({ field: 'webhook_url', problem: 'must be an http(s) URL, or null for none' });
    else if (url.length > MAX_WEBHOOK_URL_LENGTH) problems.push({ field: 'webhook_url', problem: `must be at most ${MAX_WEBHOOK_URL_LENGTH} characters` });
  }
  if (problems.length > 0) {
    throw invalidRequest(`Invalid request: ${problems.map((p) => `${p.field} ${p.problem}`).join('; ')}.`, problems);
  }
  if ('policy' in fields && fields.policy !== null) return { ...fields, policy: normalizedPolicy(fields.policy as PromptPolicy) };
  return fields;
}
