// Which headers cross the gateway: hop-by-hop headers stop here (RFC 9110 §7.6.1), our credentials never reach ComfyUI.

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { isBearerAuthorization } from '../auth/credentials.js';
import { cookieWithoutSession } from '../auth/session-cookie.js';

/** Connection-specific headers, not forwarded in either direction (RFC 9110 §7.6.1, RFC 9112 §9.6). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

/** Request headers the gateway sets or consumes itself. */
const NOT_FORWARDED = new Set([
  ...HOP_BY_HOP,
  'host',
  'expect',
  'x-api-key',
  // ComfyUI 403s any request that says it is cross-site; the gateway has decided who may call.
  'sec-fetch-site',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

/** WebSocket handshake headers that the gateway's own upstream handshake replaces. */
const WEBSOCKET_HANDSHAKE = new Set(['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-accept']);

export type OutgoingHeaders = Record<string, string | string[]>;

/**
 * The headers to send to ComfyUI for this request. The gateway's session cookie is removed. `Origin` is rewritten to ComfyUI's own origin so its
 * Host/Origin check passes for browser requests that came through the gateway; `X-Forwarded-*` tell
 * ComfyUI who the client was.
 */
export function upstreamRequestHeaders(req: IncomingMessage, upstreamOrigin: string, options: { websocket?: boolean } = {}): OutgoingHeaders {
  const incoming = req.headers;
  const listed = connectionListed(incoming.connection);
  const headers: OutgoingHeaders = {};
  for (const name in incoming) {
    if (NOT_FORWARDED.has(name) || listed?.has(name)) continue;
    if (options.websocket && WEBSOCKET_HANDSHAKE.has(name)) continue;
    const value = incoming[name];
    if (value === undefined) continue;
    if (name === 'authorization' && isBearerAuthorization(value as string)) continue;
    if (name === 'cookie') {
      const rest = cookieWithoutSession(value as string);
      if (rest !== undefined) headers.cookie = rest;
      continue;
    }
    headers[name] = name === 'origin' ? upstreamOrigin : value;
  }
  const clientAddress = req.socket.remoteAddress ?? '';
  const priorFor = incoming['x-forwarded-for'];
  headers['x-forwarded-for'] = priorFor ? `${priorFor}, ${clientAddress}` : clientAddress;
  headers['x-forwarded-proto'] = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  if (incoming.host) headers['x-forwarded-host'] = incoming.host;
  return headers;
}

/**
 * ComfyUI's response headers without the hop-by-hop ones. An HTML page gets frame protection:
 * `X-Frame-Options: DENY` and a policy of `frame-ancestors 'none'`, or, with `frameAncestors`, a policy
 * of `frame-ancestors` those origins. The policy is added beside any ComfyUI sets: a browser enforces
 * every policy it is given, so ComfyUI's own directives still hold.
 */
export function downstreamResponseHeaders(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
  frameAncestors: readonly string[] = [],
): OutgoingHeaders {
  const listed = connectionListed(headers.connection);
  const result: OutgoingHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    result[name] = value;
  }
  if (isPage(result['content-type'])) protectFromFraming(result, frameAncestors);
  return result;
}

/** A content type of a document a browser may render in a frame (any case, any parameters). */
const PAGE_TYPE = /^\s*(?:text\/html|application\/xhtml\+xml)\s*(?:;|$)/i;

/** The last content type found not to be a page: nearly every answer of a route repeats its content type, read once. */
let lastNotPage: string | undefined;

/** Whether a content type is a document a browser may render in a frame. */
function isPage(contentType: string | string[] | undefined): boolean {
  if (contentType === undefined || contentType === lastNotPage) return false;
  if (PAGE_TYPE.test(String(contentType))) return true;
  if (typeof contentType === 'string') lastNotPage = contentType;
  return false;
}

function protectFromFraming(headers: OutgoingHeaders, frameAncestors: readonly string[]): void {
  const policy = `frame-ancestors ${frameAncestors.length > 0 ? frameAncestors.join(' ') : "'none'"}`;
  const upstream = headers['content-security-policy'];
  headers['content-security-policy'] = upstream === undefined ? policy : [...(Array.isArray(upstream) ? upstream : [upstream]), policy];
  if (frameAncestors.length === 0) headers['x-frame-options'] = 'DENY';
}

/** A Connection header that only says whether to keep the connection, as nearly every one does: it lists no header to drop. */
const PERSISTENCE_ONLY = /^[\t ]*(?:keep-alive|close)[\t ]*$/i;

/** The headers a Connection header lists (RFC 9110 §7.6.1), lower-cased, to drop with it; null when it lists none. */
function connectionListed(connection: string | string[] | undefined): Set<string> | null {
  if (!connection || connection === 'keep-alive' || connection === 'close') return null;
  if (typeof connection === 'string' && PERSISTENCE_ONLY.test(connection)) return null;
  const value = Array.isArray(connection) ? connection.join(',') : connection;
  const names = value
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name && name !== 'close' && name !== 'keep-alive');
  return names.length > 0 ? new Set(names) : null;
}
