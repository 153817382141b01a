// The key-management, usage, audit, backend and webhook-delivery endpoints (/api/keys, /api/usage, /api/audit, /api/gateway/backends, /api/gateway/webhooks/deliveries), with who may call each.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { usableKeyError, type Caller } from '../auth/authenticate.js';
import { createdKeyBody, creationAuditDetails, newKey, rotatedKey } from '../auth/new-key.js';
import type { AuthMode } from '../config/schema.js';
import type { BackendJson } from '../backends/backend-pool.js';
import { authRequired, forbidden, invalidRequest, keyCreationFailed, keyNotFound, methodNotAllowed, storeUnavailable, webhooksDisabled } from '../errors.js';
import { toPublicKey } from '../store/key-record.js';
import type { AuditStore, KeyRecord, KeyStore, SessionStore, UsageStore, WebhookDeliveryStore } from '../store/types.js';
import { dailySeries } from '../usage/daily-series.js';
import { nextKeyPage } from '../usage/key-page.js';
import { getDelivery, listDeliveries } from '../webhooks/deliveries-api.js';
import { signingSecret } from '../webhooks/signature.js';
import { usageStats } from '../usage/report.js';
import { readJsonBody } from './body.js';
import { auditActionOf, checkKeyWebhookUrl, parseCreateKey, parsePatchKey, parseRotateKey } from './key-input.js';
import { sendJson, sendJsonStream } from './respond.js';
import type { GatewayRoute } from './routes.js';
import { usageReportPage, usageReportParts } from './usage-of-all.js';

export interface AdminApiContext {
  mode: AuthMode;
  keys: KeyStore;
  usage: UsageStore;
  audit: AuditStore;
  sessions: SessionStore;
  /** Why a request without a key is not local management (null when it is). */
  whyNotLocal(req: IncomingMessage): string | null;
  /** The client's address, as written to the audit trail. */
  clientIp(req: IncomingMessage): string;
  /** Current time in Unix seconds. */
  now(): number;
  /** Every ComfyUI backend as it is now, in configuration order. */
  backends(): BackendJson[];
  /** `--webhook-allow-private`: a key's webhook_url may name a private address. */
  webhookAllowPrivate: boolean;
  /** `--webhook-secret`, from which each key's signing secret is derived; null: no webhooks. */
  webhookSecret: string | null;
  /** The webhook deliveries, for GET /api/gateway/webhooks/deliveries[/{id}]. */
  deliveries: WebhookDeliveryStore;
}

/**
 * Who is managing: an admin (`actor` is its key_id, or `local` for this machine without a key), a user
 * key, or the first-key bootstrap.
 */
type Principal = { kind: 'admin'; actor: string } | { kind: 'user'; key: KeyRecord } | { kind: 'bootstrap' };

const MAX_USAGE_DAYS = 365;
const DEFAULT_USAGE_DAYS = 30;
const MAX_AUDIT_ENTRIES = 1000;
const DEFAULT_PAGE_KEYS = 100;
const MAX_PAGE_KEYS = 1000;
const MAX_CURSOR_LENGTH = 256;

/**
 * Answers a management route. Admin keys may do everything; a user key may read its own key and usage;
 * a request without a key may manage only from this machine and only outside required mode, except the
 * very first key in required mode (which becomes an admin key).
 * @throws GatewayError (401, 403, 404, 405, 400, 503) for the caller to send.
 */
export async function handleAdminRoute(route: GatewayRoute, req: IncomingMessage, res: ServerResponse, caller: Caller, ctx: AdminApiContext): Promise<void> {
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  const query = new URLSearchParams(req.url?.split('?')[1] ?? '');
  switch (route.name) {
    case 'keys':
      if (method === 'GET') {
        requireAdmin(principalOf(caller, req, ctx));
        if (!query.has('limit') && !query.has('after'))
          return sendJson(res, 200, {
            keys: ctx.keys
              .list()
              .sort((a, b) => a.created_at - b.created_at)
              .map(toPublicKey),
          });
        const { limit, after } = parsePage(query);
        const page = await nextKeyPage([ctx.keys.ids()], after, limit);
        const keys = page.keyIds.flatMap((id) => ctx.keys.get(id) ?? []).map(toPublicKey);
        return sendJson(res, 200, { keys, next_cursor: page.nextCursor });
      }
      if (method === 'POST') return createKey(req, res, principalOf(caller, req, ctx, { bootstrap: true }), ctx);
      throw methodNotAllowed(['GET', 'POST']);
    case 'key': {
      const principal = principalOf(caller, req, ctx);
      if (method === 'GET') return showKey(res, route.keyId, principal, ctx);
      if (method === 'PATCH') return updateKey(req, res, route.keyId, requireAdmin(principal), ctx);
      if (method === 'DELETE') return deleteKey(req, res, route.keyId, requireAdmin(principal), ctx);
      throw methodNotAllowed(['GET', 'PATCH', 'DELETE']);
    }
    case 'key-rotate':
      if (method !== 'POST') throw methodNotAllowed(['POST']);
      return rotateKey(req, res, route.keyId, requireAdmin(principalOf(caller, req, ctx)), ctx);
    case 'key-webhook-secret':
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      return showWebhookSecret(req, res, route.keyId, principalOf(caller, req, ctx), presentedKeyHash(caller, ctx), ctx);
    case 'usage': {
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      if (caller.kind !== 'key') throw authRequired();
      const days = parseDays(query);
      const key = caller.key;
      const body: Record<string, unknown> = { key_id: key.key_id, key_name: key.name, usage_stats: usageStats(ctx.usage, key.key_id, days, ctx.now()) };
      if (byDay(query)) body.daily = dailySeries(ctx.usage, key.key_id, days, ctx.now());
      return sendJson(res, 200, body);
    }
    case 'usage-all': {
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      requireAdmin(principalOf(caller, req, ctx));
      const report = { days: parseDays(query), withDaily: byDay(query), ...parsePage(query) };
      const page = await usageReportPage(ctx.keys, ctx.usage, report);
      return sendJsonStream(res, 200, usageReportParts(ctx.usage, report, page, ctx.now()));
    }
    case 'audit': {
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      requireAdmin(principalOf(caller, req, ctx));
      const since = parseNumber(query, 'since', 0, 0, 1e11);
      const limit = parseNumber(query, 'limit', 100, 1, MAX_AUDIT_ENTRIES);
      return sendJson(res, 200, { entries: await ctx.audit.list({ since, limit: Math.floor(limit) }) });
    }
    case 'backends':
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      requireAdmin(principalOf(caller, req, ctx));
      return sendJson(res, 200, { backends: ctx.backends() });
    case 'webhook-deliveries':
    case 'webhook-delivery':
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      requireAdmin(principalOf(caller, req, ctx));
      return route.name === 'webhook-deliveries' ? listDeliveries(res, query, ctx.deliveries) : getDelivery(res, route.deliveryId, ctx.deliveries);
    default:
      throw new Error(`not a management route: ${route.name}`);
  }
}

function principalOf(caller: Caller, req: IncomingMessage, ctx: AdminApiContext, options: { bootstrap?: boolean } = {}): Principal {
  if (caller.kind === 'key') return caller.key.role === 'admin' ? { kind: 'admin', actor: caller.key.key_id } : { kind: 'user', key: caller.key };
  const notLocal = ctx.whyNotLocal(req);
  if (notLocal)
    throw authRequired(`An admin key is required: without a key, keys are managed only from this machine, and this request is not local (${notLocal}).`);
  if (ctx.mode !== 'required') return { kind: 'admin', actor: 'local' };
  if (options.bootstrap && ctx.keys.isPristine()) return { kind: 'bootstrap' };
  throw authRequired();
}

function requireAdmin(principal: Principal): string {
  if (principal.kind !== 'admin') throw forbidden('This needs an admin key.');
  return principal.actor;
}

/** Appends to the audit trail; a change that was made is not undone when its audit line cannot be written. */
async function audit(
  ctx: AdminApiContext,
  req: IncomingMessage,
  actor: string,
  action: string,
  keyId: string,
  details?: Record<string, unknown>,
): Promise<void> {
  await ctx.audit.append({ ts: ctx.now(), actor, action, key_id: keyId, ip: ctx.clientIp(req), ...(details ? { details } : {}) }).catch(() => undefined);
}

async function createKey(req: IncomingMessage, res: ServerResponse, principal: Principal, ctx: AdminApiContext): Promise<void> {
  if (principal.kind === 'user') throw forbidden('This needs an admin key.');
  const input = parseCreateKey(await readJsonBody(req));
  await checkKeyWebhookUrl(input, ctx.webhookAllowPrivate);
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
  await audit(ctx, req, bootstrap ? 'bootstrap' : principal.actor, 'key.create', record.key_id, creationAuditDetails(record));
  sendJson(res, 200, createdKeyBody(record, apiKey));
}

function showKey(res: ServerResponse, keyId: string, principal: Principal, ctx: AdminApiContext): void {
  if (principal.kind === 'user' && principal.key.key_id !== keyId) throw forbidden('A user key may read only its own record.');
  if (principal.kind === 'bootstrap') throw authRequired();
  const record = ctx.keys.get(keyId);
  if (!record) throw keyNotFound();
  sendJson(res, 200, { ...toPublicKey(record), usage_stats: usageStats(ctx.usage, keyId, DEFAULT_USAGE_DAYS, ctx.now()) });
}

/** The hash of the API key a key caller presented: in its header, or the one its browser session was signed in with; null without a key. */
function presentedKeyHash(caller: Caller, ctx: AdminApiContext): string | null {
  if (caller.kind !== 'key') return null;
  const { credential } = caller;
  return credential.via === 'header' ? credential.keyHash : (ctx.sessions.find(credential.sessionId, ctx.now())?.keyHash ?? null);
}

/**
 * The signing secret of a key's webhook deliveries: an admin may read any key's current one, a user
 * key its own, of the API key it presented. During a rotation's grace period the rotated-out API key
 * thus reads the secret that stops with it, never its replacement's, which a leaked key would
 * otherwise take past the grace. Each read is in the audit trail.
 */
async function showWebhookSecret(
  req: IncomingMessage,
  res: ServerResponse,
  keyId: string,
  principal: Principal,
  presentedHash: string | null,
  ctx: AdminApiContext,
): Promise<void> {
  if (principal.kind === 'user' && principal.key.key_id !== keyId) throw forbidden('A user key may read only its own webhook signing secret.');
  if (principal.kind === 'bootstrap') throw authRequired();
  if (ctx.webhookSecret === null) throw webhooksDisabled('its keys have no signing secret; start the gateway with --webhook-secret');
  const record = ctx.keys.get(keyId);
  if (!record) throw keyNotFound();
  await audit(ctx, req, principal.kind === 'admin' ? principal.actor : keyId, 'key.webhook_secret', keyId);
  const keyHash = principal.kind === 'user' ? presentedHash : record.key_hash;
  // A session that ended since the request was identified.
  if (keyHash === null) throw authRequired();
  sendJson(res, 200, { key_id: keyId, webhook_secret: signingSecret(ctx.webhookSecret, keyId, keyHash) });
}

/**
 * Applies a patch. A key that is unusable (disabled, expired) before or after it loses its browser
 * sessions; they end before a key is enabled again or its expiry cleared, so none comes back.
 */
async function updateKey(req: IncomingMessage, res: ServerResponse, keyId: string, actor: string, ctx: AdminApiContext): Promise<void> {
  const patch = parsePatchKey(await readJsonBody(req));
  const current = ctx.keys.get(keyId);
  if (!current) throw keyNotFound();
  await checkKeyWebhookUrl(patch, ctx.webhookAllowPrivate);
  if (usableKeyError(current, ctx.now())) {
    await ctx.sessions.deleteForKey(keyId).catch((error: unknown) => {
      throw storeUnavailable(error);
    });
  }
  const updated = await ctx.keys.update(keyId, patch).catch((error: unknown) => {
    throw storeUnavailable(error);
  });
  if (!updated) throw keyNotFound();
  // Only frees them: a session of an unusable key is refused, and deleted, when next used.
  if (usableKeyError(updated, ctx.now())) await ctx.sessions.deleteForKey(keyId).catch(() => undefined);
  await audit(ctx, req, actor, auditActionOf(patch), keyId, { ...patch });
  sendJson(res, 200, { message: 'API key updated.', key: toPublicKey(updated) });
}

/**
 * Gives a key a new secret. Sessions signed in with the old secret end with it: at once without a
 * grace period, at its end otherwise (sessions are bound to the secret they were made with).
 */
async function rotateKey(req: IncomingMessage, res: ServerResponse, keyId: string, actor: string, ctx: AdminApiContext): Promise<void> {
  const { grace_seconds: grace } = parseRotateKey(await readJsonBody(req));
  const current = ctx.keys.get(keyId);
  if (!current) throw keyNotFound();
  const { patch, apiKey } = rotatedKey(current, grace, ctx.now());
  const updated = await ctx.keys.update(keyId, patch).catch((error: unknown) => {
    throw storeUnavailable(error);
  });
  if (!updated) throw keyNotFound();
  // Only frees them: no session outlives the secret it was made with.
  if (grace === 0) await ctx.sessions.deleteForKey(keyId).catch(() => undefined);
  await audit(ctx, req, actor, 'key.rotate', keyId, { grace_seconds: grace });
  sendJson(res, 200, {
    ...createdKeyBody(updated, apiKey),
    previous_key_valid_until: updated.previous_key_valid_until,
    message:
      grace > 0
        ? `Key rotated. The old secret works for ${grace} more seconds; save the new api_key now.`
        : "Key rotated. The old secret no longer works; save the new api_key now: it won't be shown again.",
  });
}

async function deleteKey(req: IncomingMessage, res: ServerResponse, keyId: string, actor: string, ctx: AdminApiContext): Promise<void> {
  const deleted = await ctx.keys.delete(keyId).catch((error: unknown) => {
    throw storeUnavailable(error);
  });
  if (!deleted) throw keyNotFound();
  // Only frees them: a session whose key is gone is refused, and key ids are never reused.
  await ctx.sessions.deleteForKey(keyId).catch(() => undefined);
  await audit(ctx, req, actor, 'key.delete', keyId);
  sendJson(res, 200, { message: 'API key deleted.' });
}

function byDay(query: URLSearchParams): boolean {
  const by = query.get('by');
  if (by !== null && by !== 'day') throw invalidRequest('by must be "day".', [{ field: 'by', problem: `got ${JSON.stringify(by)}` }]);
  return by === 'day';
}

/** Reads `?days=N` (1 to 365, default 30). */
function parseDays(query: URLSearchParams): number {
  const value = query.get('days');
  if (value === null) return DEFAULT_USAGE_DAYS;
  if (!/^\d{1,3}$/.test(value) || Number(value) < 1 || Number(value) > MAX_USAGE_DAYS) {
    throw invalidRequest(`days must be a whole number from 1 to ${MAX_USAGE_DAYS}.`, [{ field: 'days', problem: `got ${JSON.stringify(value)}` }]);
  }
  return Number(value);
}

/** Reads a page of keys: `?limit=N` (1 to 1000, default 100) and `?after=KEY_ID` (the previous page's `next_cursor`). */
function parsePage(query: URLSearchParams): { limit: number; after: string | null } {
  const limit = query.get('limit');
  if (limit !== null && (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_PAGE_KEYS)) {
    throw invalidRequest(`limit must be a whole number from 1 to ${MAX_PAGE_KEYS}.`, [{ field: 'limit', problem: `got ${JSON.stringify(limit)}` }]);
  }
  const after = query.get('after');
  if (after !== null && (after.length === 0 || after.length > MAX_CURSOR_LENGTH)) {
    throw invalidRequest(`after must be a key_id (the next_cursor of the previous page), 1 to ${MAX_CURSOR_LENGTH} characters.`, [
      { field: 'after', problem: `got ${after.length} characters` },
    ]);
  }
  return { limit: limit === null ? DEFAULT_PAGE_KEYS : Number(limit), after };
}

function parseNumber(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const value = query.get(name);
  if (value === null) return fallback;
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number) || number < min || number > max) {
    throw invalidRequest(`${name} must be a number from ${min} to ${max}.`, [{ field: name, problem: `got ${JSON.stringify(value)}` }]);
  }
  return number;
}
