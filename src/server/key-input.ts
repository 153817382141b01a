// Validates the bodies of key creation and key updates; every problem is reported, nothing is guessed.

import { invalidRequest } from '../errors.js';
import type { KeyPatch, KeyRole } from '../store/types.js';

export const MAX_NAME_LENGTH = 200;
export const MAX_RATE_LIMIT = 10_000_000;
export const MAX_METADATA_BYTES = 16 * 1024;

export interface CreateKeyInput {
  name?: string;
  rate_limit?: number;
  metadata?: Record<string, unknown>;
  role?: KeyRole;
}

interface Problem {
  field: string;
  problem: string;
}

const CREATE_FIELDS = ['name', 'rate_limit', 'metadata', 'role'];
const PATCH_FIELDS = ['name', 'rate_limit', 'is_active', 'role', 'metadata'];

/**
 * Checks a `POST /api/keys` body (an empty body means all defaults).
 * @throws GatewayError INVALID_REQUEST listing each bad field.
 */
export function parseCreateKey(body: unknown): CreateKeyInput {
  return check(body ?? {}, CREATE_FIELDS) as CreateKeyInput;
}

/**
 * Checks a `PATCH /api/keys/{id}` body; at least one field is needed.
 * @throws GatewayError INVALID_REQUEST listing each bad field.
 */
export function parsePatchKey(body: unknown): KeyPatch {
  const patch = check(body, PATCH_FIELDS) as KeyPatch;
  if (Object.keys(patch).length === 0) {
    throw invalidRequest('Nothing to update: send at least one of ' + PATCH_FIELDS.join(', ') + '.', [
      { field: 'body', problem: 'no fields' },
    ]);
  }
  return patch;
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
    } else if (JSON.stringify(metadata).length > MAX_METADATA_BYTES) {
      problems.push({ field: 'metadata', problem: `must be at most ${MAX_METADATA_BYTES} bytes as JSON` });
    }
  }
  if ('role' in fields && fields.role !== 'user' && fields.role !== 'admin') {
    problems.push({ field: 'role', problem: 'must be "user" or "admin"' });
  }
  if ('is_active' in fields && typeof fields.is_active !== 'boolean') {
    problems.push({ field: 'is_active', problem: 'must be true or false' });
  }
  if (problems.length > 0) {
    throw invalidRequest(`Invalid request: ${problems.map((p) => `${p.field} ${p.problem}`).join('; ')}.`, problems);
  }
  return fields;
}
