// Browser sign-in: GET/POST /login and POST /logout, turning an API key into a server-side session cookie.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { hashApiKey } from '../auth/api-key.js';
import { keyOfPlaintext } from '../auth/authenticate.js';
import type { ClientAddressing } from '../auth/client-addressing.js';
import type { AuthFailureLimiter } from '../auth/failure-limiter.js';
import { sessionCookie, sessionIdOf } from '../auth/session-cookie.js';
import { forbidden, GatewayError, invalidRequest, methodNotAllowed, storeUnavailable } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { AuditStore, KeyRecord, KeyStore, SessionStore } from '../store/types.js';
import { MAX_MANAGEMENT_BODY_BYTES, readBody } from './body.js';
import { LOGIN_PAGE_CSP, loginPage } from './login-page.js';
import { sendJson } from './respond.js';
import { pageHeaders } from './security-headers.js';

export interface LoginContext {
  keys: KeyStore;
  sessions: SessionStore;
  audit: AuditStore;
  addressing: ClientAddressing;
  failures: AuthFailureLimiter;
  sessionTtlSeconds: number;
  log: Logger;
  now(): number;
  /** Counts a sign-in as a request of its key: sets the rate-limit headers, or throws 429 over the limit. */
  countRequest(res: ServerResponse, key: KeyRecord): void | Promise<void>;
}

/**
 * A `next` target that stays on this site: a path, never `//host` or `/\\host`; anything else becomes `/`.
 * What a Location header cannot carry (DEL and every character beyond ASCII) comes back percent-encoded
 * as UTF-8, as a browser would have asked for the path, so the redirect to it can always be written.
 */
export function safeNext(next: string | null | undefined): string {
  // eslint-disable-next-line no-control-regex
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\') || /[\u0000-\u001f\\]/.test(next)) return '/';
  return next.replace(/[^\u0020-\u007e]+/g, percentEncoded);
}

/** `text` as UTF-8 bytes, each written `%XX` (a lone surrogate becomes the bytes of U+FFFD). */
function percentEncoded(text: string): string {
  return Array.from(Buffer.from(text, 'utf8'), (byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

/** GET /login (the page) and POST /login (form or JSON). */
export async function handleLogin(req: IncomingMessage, res: ServerResponse, ctx: LoginContext): Promise<void> {
  const query = new URLSearchParams(req.url?.split('?')[1] ?? '');
  if (req.method === 'GET' || req.method === 'HEAD') return sendPage(res, 200, safeNext(query.get('next')));
  if (req.method !== 'POST') throw methodNotAllowed(['GET', 'POST']);
  if ((req.headers.origin !== undefined || req.headers.referer !== undefined) && !ctx.addressing.isSameOrigin(req)) {
    throw forbidden('Sign-in must come from this site.');
  }
  const isJson = String(req.headers['content-type'] ?? '').includes('application/json');
  const raw = (
    await readBody(req, MAX_MANAGEMENT_BODY_BYTES, () => invalidRequest('The body is too large.', [{ field: 'body', problem: 'over 64 KiB' }]))
  ).toString('utf8');
  const { apiKey, next } = isJson ? jsonFields(raw) : formFields(raw);
  const key = keyOfPlaintext(apiKey, ctx.keys);
  if (key instanceof GatewayError) {
    const ip = ctx.addressing.clientIp(req);
    if (ctx.failures.recordFailure(ip, Date.now())) ctx.log.warn({ event: 'auth_failures_blocked', ip }, 'too many failed authentications; address blocked');
    if (isJson) throw key;
    return sendPage(res, 401, next, key.code === 'KEY_DISABLED' ? 'That key is disabled.' : 'That key is not valid.');
  }
  try {
    await ctx.countRequest(res, key);
  } catch (error) {
    if (isJson || !(error instanceof GatewayError)) throw error;
    return sendPage(res, error.status, next, error.message, error.headers);
  }
  const keyHash = hashApiKey(apiKey);
  const now = ctx.now();
  const lifetime = sessionLifetime(key, keyHash, ctx.sessionTtlSeconds, now);
  let created;
  try {
    created = await ctx.sessions.create(key.key_id, keyHash, lifetime, now);
  } catch (error) {
    throw storeUnavailable(error, 'session');
  }
  const ip = ctx.addressing.clientIp(req);
  ctx.log.info({ event: 'sign_in', key_id: key.key_id, ip }, 'signed in');
  await ctx.audit.append({ ts: ctx.now(), actor: key.key_id, action: 'session.sign_in', key_id: key.key_id, ip }).catch(() => undefined);
  const cookie = sessionCookie(created.id, lifetime, ctx.addressing.isHttps(req));
  if (isJson) {
    return sendJson(res, 200, { ok: true, key_id: key.key_id, role: key.role, expires_at: created.session.expiresAt }, { 'set-cookie': cookie });
  }
  res.writeHead(303, { location: next, 'set-cookie': cookie, 'content-length': '0', 'cache-control': 'no-store' });
  res.end();
}

/** POST /logout: ends the session and clears the cookie. Needs a request from this site (it changes state). */
export async function handleLogout(req: IncomingMessage, res: ServerResponse, ctx: LoginContext): Promise<void> {
  if (req.method !== 'POST') throw methodNotAllowed(['POST']);
  const secure = ctx.addressing.isHttps(req);
  const sessionId = sessionIdOf(req.headers, secure);
  if (sessionId && !ctx.addressing.isSameOrigin(req)) throw forbidden('Sign-out must come from this site.');
  const session = sessionId ? ctx.sessions.find(sessionId, ctx.now()) : undefined;
  if (sessionId) await ctx.sessions.delete(sessionId).catch((error: unknown) => Promise.reject(storeUnavailable(error, 'session')));
  if (session) {
    await ctx.audit
      .append({ ts: ctx.now(), actor: session.keyId, action: 'session.sign_out', key_id: session.keyId, ip: ctx.addressing.clientIp(req) })
      .catch(() => undefined);
  }
  const cookie = sessionCookie(null, 0, secure);
  if (String(req.headers.accept ?? '').includes('text/html')) {
    res.writeHead(303, { location: '/login', 'set-cookie': cookie, 'content-length': '0' });
    res.end();
    return;
  }
  sendJson(res, 200, { ok: true }, { 'set-cookie': cookie });
}

/**
 * How long a new session may last: the session TTL, cut to the key's expiry and, when signed in with a
 * rotated-out secret, to the end of its grace period. A later change to the key never lengthens it.
 */
function sessionLifetime(key: KeyRecord, keyHash: string, ttlSeconds: number, now: number): number {
  const ends = [now + ttlSeconds, key.expires_at, keyHash === key.key_hash ? null : key.previous_key_valid_until];
  return Math.min(...ends.filter((end): end is number => end !== null)) - now;
}

function sendPage(res: ServerResponse, status: number, next: string, error?: string, headers: Record<string, string> = {}): void {
  const html = loginPage(next, error);
  res.writeHead(status, {
    ...headers,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    ...pageHeaders(LOGIN_PAGE_CSP),
  });
  res.end(html);
}

function jsonFields(raw: string): { apiKey: string; next: string } {
  let body: { api_key?: unknown; next?: unknown };
  try {
    body = JSON.parse(raw) as typeof body;
  } catch {
    throw invalidRequest('The body is not valid JSON.', [{ field: 'body', problem: 'not JSON' }]);
  }
  if (typeof body?.api_key !== 'string') throw invalidRequest('api_key is required.', [{ field: 'api_key', problem: 'missing' }]);
  return { apiKey: body.api_key, next: safeNext(typeof body.next === 'string' ? body.next : null) };
}

function formFields(raw: string): { apiKey: string; next: string } {
  const form = new URLSearchParams(raw);
  return { apiKey: (form.get('api_key') ?? '').trim(), next: safeNext(form.get('next')) };
}
