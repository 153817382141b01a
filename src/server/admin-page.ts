// Serves the admin dashboard (the static files in admin/) to admin keys; others get the sign-in page or a clear refusal.

import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import type { Caller } from '../auth/authenticate.js';
import { LOGIN_PAGE_CSP } from './login-page.js';
import { pageHeaders } from './security-headers.js';

/** The dashboard's files, shipped beside dist/ in the package. */
const ADMIN_DIR = resolve(import.meta.dirname, '../../../admin');

/** The browser build of uPlot (the execution chart), served from the installed package: the page loads nothing from elsewhere. */
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot'));

const HTML = 'text/html; charset=utf-8';
const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

const FILES: Record<string, { path: string; type: string }> = {
  '/admin': { path: resolve(ADMIN_DIR, 'index.html'), type: HTML },
  '/admin/': { path: resolve(ADMIN_DIR, 'index.html'), type: HTML },
  '/admin/dashboard.js': { path: resolve(ADMIN_DIR, 'dashboard.js'), type: JS },
  '/admin/dashboard.css': { path: resolve(ADMIN_DIR, 'dashboard.css'), type: CSS },
  '/admin/vendor/uplot.js': { path: resolve(UPLOT_DIR, 'uPlot.esm.js'), type: JS },
  '/admin/vendor/uplot.css': { path: resolve(UPLOT_DIR, 'uPlot.min.css'), type: CSS },
};

/** The dashboard may load only its own script and style, and talk only to this gateway. */
const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const NOT_AN_ADMIN = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Not an admin · comfy-gate</title>
<style>body { font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 4rem auto; padding: 0 1rem; }</style></head>
<body>
<h1>Not an admin</h1>
<p>You are signed in with a user key. The dashboard is for admin keys only.</p>
<form method="post" action="/logout"><button type="submit">Sign out and use another key</button></form>
</body></html>
`;

/** True for the paths the dashboard is served under. */
export function isAdminPagePath(path: string): boolean {
  return path === '/admin' || path.startsWith('/admin/');
}

/**
 * Answers GET /admin and its assets: anonymous callers go to /login, user keys get a 403 page that says
 * why, admin keys get the file.
 */
export async function handleAdminPage(res: ServerResponse, caller: Caller, path: string, method: string): Promise<void> {
  if (caller.kind === 'anonymous') {
    res.writeHead(302, { location: `/login?next=${encodeURIComponent('/admin')}`, 'content-length': '0' });
    res.end();
    return;
  }
  if (caller.key.role !== 'admin') return send(res, 403, 'text/html; charset=utf-8', Buffer.from(NOT_AN_ADMIN), LOGIN_PAGE_CSP);
  const entry = FILES[path];
  if (!entry || (method !== 'GET' && method !== 'HEAD')) return send(res, 404, 'text/plain; charset=utf-8', Buffer.from('Not found\n'));
  send(res, 200, entry.type, await readFile(entry.path));
}

function send(res: ServerResponse, status: number, type: string, body: Buffer, csp = DASHBOARD_CSP): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': body.length,
    ...pageHeaders(csp),
  });
  res.end(body);
}
