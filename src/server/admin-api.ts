// The key-management and usage endpoints (/api/keys, /api/usage), with who may call each.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Caller } from '../auth/authenticate.js';
import { isDirectLoopback } from '../auth/client-address.js';
import { createdKeyBody, newKey } from '../auth/new-key.js';
import type { AuthMode } from '../config/schema.js';
import { authRequired, forbidden, invalidRequest, keyCreationFailed, keyNotFound, methodNotAllowed, storeUnavailable } from '../errors.js';
import { toPublicKey } from '../store/key-record.js';
import type { KeyRecord, KeyStore, UsageStore } from '../store/types.js';
import { usageStats } from '../usage/report.js';
import { readJsonBody } from './body.js';
import { parseCreateKey, parsePatchKey } from './key-input.js';
import { sendJson } from './respond.js';
import type { GatewayRoute } from './routes.js';

export interface AdminApiContext {
  mode: AuthMode;
  keys: KeyStore;
  usage: UsageStore;
  /** Current time in Unix seconds. */
  now(): number;
}

/** Who is managing: an admin (a key, or the local operator without one), a user key, or the first-key bootstrap. */
type Principal = { kind: 'admin' } | { kind: 'user'; key: KeyRecord } | { kind: 'bootstrap' };

const MAX_USAGE_DAYS = 365;
const DEFAULT_USAGE_DAYS = 30;

/**
 * Answers a management route. Admin keys may do everything; a user key may read its own key and usage;
 * a request without a key may manage only from this machine and only outside required mode, except the
 * very first key in required mode (which becomes an admin key).
 * @throws GatewayError (401, 403, 404, 405, 400, 503) for the caller to send.
 */
export async function handleAdminRoute(route: GatewayRoute, req: IncomingMessage, res: ServerResponse, caller: Caller, ctx: AdminApiContext): Promise<void> {
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  switch (route.name) {
    case 'keys':
      if (method === 'GET') {
        requireAdmin(principalOf(caller, req, ctx));
        return listKeys(res, ctx);
      }
      if (method === 'POST') return createKey(req, res, principalOf(caller, req, ctx, { bootstrap: true }), ctx);
      throw methodNotAllowed(['GET', 'POST']);
    case 'key': {
      const principal = principalOf(caller, req, ctx);
      if (method === 'GET') return showKey(res, route.keyId, principal, ctx);
      if (method === 'PATCH' || method === 'DELETE') requireAdmin(principal);
      if (method === 'PATCH') return updateKey(req, res, route.keyId, ctx);
      if (method === 'DELETE') return deleteKey(res, route.keyId, ctx);
      throw methodNotAllowed(['GET', 'PATCH', 'DELETE']);
    }
    case 'usage': {
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      if (caller.kind !== 'key') throw authRequired();
      const days = parseDays(req.url);
      sendJson(res, 200, { key_id: caller.key.key_id, key_name: caller.key.name, usage_stats: usageStats(ctx.usage, caller.key.key_id, days, ctx.now()) });
      return;
    }
    case 'usage-all': {
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      requireAdmin(principalOf(caller, req, ctx));
      const days = parseDays(req.url);
      const now = ctx.now();
      const keyIds = new Set([...ctx.keys.list().map((key) => key.key_id), ...ctx.usage.keyIds()]);
      sendJson(res, 200, { usage_stats: Object.fromEntries([...keyIds].map((id) => [id, usageStats(ctx.usage, id, days, now)])) });
      return;
    }
    default:
      throw new Error(`not a management route: ${route.name}`);
  }
}

function principalOf(caller: Caller, req: IncomingMessage, ctx: AdminApiContext, options: { bootstrap?: boolean } = {}): Principal {
  if (caller.kind === 'key') return caller.key.role === 'admin' ? { kind: 'admin' } : { kind: 'user', key: caller.key };
  if (!isDirectLoopback(req)) throw authRequired();
  if (ctx.mode !== 'required') return { kind: 'admin' };
  if (options.bootstrap && ctx.keys.isPristine()) return { kind: 'bootstrap' };
  throw authRequired();
}

function requireAdmin(principal: Principal): void {
  if (principal.kind !== 'admin') throw forbidden('This needs an admin key.');
}

function listKeys(res: ServerResponse, ctx: AdminApiContext): void {
  const keys = ctx.keys.list().sort((a, b) => a.created_at - b.created_at).map(toPublicKey);
  sendJson(res, 200, { keys });
}

async function createKey(req: IncomingMessage, res: ServerResponse, principal: Principal, ctx: AdminApiContext): Promise<void> {
  const input = parseCreateKey(await readJsonBody(req));
  if (principal.kind === 'user') throw forbidden('This needs an admin key.');
  const bootstrap = principal.kind === 'bootstrap';
  const { record, apiKey } = newKey(bootstrap ? { ...input, role: 'admin' } : input, ctx.now());
  let created: boolean;
  try {
    created = await ctx.keys.create(record, { onlyIfPristine: bootstrap });
    await ctx.usage.ensureCreated();
  } catch (error) {
    throw keyCreationFailed(error);
  }
  // Another first key won the race; this caller now needs a key like everyone else.
  if (!created) throw authRequired();
  sendJson(res, 200, createdKeyBody(record, apiKey));
}

function showKey(res: ServerResponse, keyId: string, principal: Principal, ctx: AdminApiContext): void {
  if (principal.kind === 'user' && principal.key.key_id !== keyId) throw forbidden('A user key may read only its own record.');
  if (principal.kind === 'bootstrap') throw authRequired();
  const record = ctx.keys.get(keyId);
  if (!record) throw keyNotFound();
  sendJson(res, 200, { ...toPublicKey(record), usage_stats: usageStats(ctx.usage, keyId, DEFAULT_USAGE_DAYS, ctx.now()) });
}

async function updateKey(req: IncomingMessage, res: ServerResponse, keyId: string, ctx: AdminApiContext): Promise<void> {
  const patch = parsePatchKey(await readJsonBody(req));
  if (!ctx.keys.get(keyId)) throw keyNotFound();
  const updated = await ctx.keys.update(keyId, patch).catch((error: unknown) => {
    throw storeUnavailable(error);
  });
  if (!updated) throw keyNotFound();
  sendJson(res, 200, { message: 'API key updated.', key: toPublicKey(updated) });
}

async function deleteKey(res: ServerResponse, keyId: string, ctx: AdminApiContext): Promise<void> {
  const deleted = await ctx.keys.delete(keyId).catch((error: unknown) => {
    throw storeUnavailable(error);
  });
  if (!deleted) throw keyNotFound();
  sendJson(res, 200, { message: 'API key deleted.' });
}

/** Reads `?days=N` (1 to 365, default 30). */
function parseDays(url: string | undefined): number {
  const query = url?.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
  const value = new URLSearchParams(query).get('days');
  if (value === null) return DEFAULT_USAGE_DAYS;
  if (!/^\d{1,3}$/.test(value) || Number(value) < 1 || Number(value) > MAX_USAGE_DAYS) {
    throw invalidRequest(`days must be a whole number from 1 to ${MAX_USAGE_DAYS}.`, [{ field: 'days', problem: `got ${JSON.stringify(value)}` }]);
  }
  return Number(value);
}
