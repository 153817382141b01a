// The browser session cookie: an opaque random id, HttpOnly and SameSite=Lax; over HTTPS Secure and named with the `__Host-` prefix.

import type { IncomingHttpHeaders } from 'node:http';

/** The cookie's name over plain HTTP, where the `__Host-` prefix (which needs Secure) cannot be used. */
const PLAIN_NAME = 'comfy_gate_session';
/** Its name over HTTPS: browsers let only a secure page of this very host set it, and only with Path=/ and no Domain. */
const HOST_ONLY_NAME = `__Host-${PLAIN_NAME}`;

/** The session cookie's name: `__Host-comfy_gate_session` when it is Secure, else `comfy_gate_session`. */
function sessionCookieName(secure: boolean): string {
  return secure ? HOST_ONLY_NAME : PLAIN_NAME;
}

/**
 * The session id in the request's Cookie header: the value of its one cookie named as over this
 * scheme (see `sessionCookieName`). Undefined when there is none, and when there are several: the
 * gateway sets one, so another was set by another page (another port of the host, a sibling
 * subdomain) to shadow it, and no cookie of the request is trusted to tell whose session it is.
 */
export function sessionIdOf(headers: IncomingHttpHeaders, secure: boolean): string | undefined {
  const name = sessionCookieName(secure);
  const sessions = cookiePairs(headers.cookie ?? '').filter((pair) => pair.name === name);
  return sessions.length === 1 ? sessions[0]!.value || undefined : undefined;
}

/** The Cookie header without the session cookie under either name (ComfyUI never sees it), or undefined when nothing is left. */
export function cookieWithoutSession(cookie: string): string | undefined {
  const rest = cookiePairs(cookie).filter((pair) => pair.name !== PLAIN_NAME && pair.name !== HOST_ONLY_NAME);
  return rest.length > 0 ? rest.map((pair) => pair.text).join('; ') : undefined;
}

/** The Set-Cookie value that stores a session id for `maxAgeSeconds`, or clears it when the id is null; named and flagged for the scheme. */
export function sessionCookie(id: string | null, maxAgeSeconds: number, secure: boolean): string {
  const parts = [`${sessionCookieName(secure)}=${id ?? ''}`, 'Path=/', 'HttpOnly', 'SameSite=Lax', `Max-Age=${id === null ? 0 : Math.floor(maxAgeSeconds)}`];
  if (secure) parts.push('Secure');
  return parts.join('; ');
}

/** The cookies of a Cookie header: each pair's trimmed text, and its name and value (before and after the first `=`, trimmed). */
function cookiePairs(cookie: string): Array<{ text: string; name: string; value: string }> {
  return cookie
    .split(';')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((text) => {
      const equals = text.indexOf('=');
      return equals < 0 ? { text, name: text, value: '' } : { text, name: text.slice(0, equals).trim(), value: text.slice(equals + 1).trim() };
    });
}
