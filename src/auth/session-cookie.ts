// The browser session cookie: an opaque random id, HttpOnly and SameSite=Lax, Secure over HTTPS.

import type { IncomingHttpHeaders } from 'node:http';

export const SESSION_COOKIE = 'comfy_gate_session';

/** The session id in the request's Cookie header, if any. */
export function sessionIdOf(headers: IncomingHttpHeaders): string | undefined {
  const cookie = headers.cookie;
  if (!cookie) return undefined;
  for (const part of cookie.split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === SESSION_COOKIE) return value.join('=') || undefined;
  }
  return undefined;
}

/** The Cookie header without the session cookie (ComfyUI never sees it), or undefined when nothing is left. */
export function cookieWithoutSession(cookie: string): string | undefined {
  const rest = cookie
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part && !part.startsWith(`${SESSION_COOKIE}=`));
  return rest.length > 0 ? rest.join('; ') : undefined;
}

/** The Set-Cookie value that stores a session id for `maxAgeSeconds`, or clears it when the id is null. */
export function sessionCookie(id: string | null, maxAgeSeconds: number, secure: boolean): string {
  const parts = [`${SESSION_COOKIE}=${id ?? ''}`, 'Path=/', 'HttpOnly', 'SameSite=Lax', `Max-Age=${id === null ? 0 : Math.floor(maxAgeSeconds)}`];
  if (secure) parts.push('Secure');
  return parts.join('; ');
}
