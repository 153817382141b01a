// Refuses browser requests that another site started, as ComfyUI's own origin check does.

import type { IncomingMessage } from 'node:http';
import { presentedCredential } from './credentials.js';

/** Pages that a link from another site may open: they show a page and change nothing. */
const LANDING_PAGES = new Set(['/', '/login', '/admin']);

/**
 * Why a request must be refused as coming from another site, or null when it may go on; `ownOriginOf`
 * gives the gateway's own origin as the request's client sees it. Requests
 * that carry a key header are not browser requests (a page on another site cannot add one without
 * a CORS preflight, which this refuses) and are not checked. For the others:
 * - an `Origin` must be exactly the gateway's own origin; `Origin: null` (a sandboxed frame, a
 *   `file:` or `data:` page, a cross-site redirect) is refused too, since a page of this site never sends it;
 * - `Sec-Fetch-Site: cross-site` is refused for every method and path, as ComfyUI does;
 * - `Sec-Fetch-Site: same-site` (another port or subdomain) is refused except for a top-level page
 *   load, so such a page cannot fire requests (images, scripts, no-cors fetches, frames) at the gateway;
 * - with `allowFraming` (--frame-ancestors), a frame's page load is let through from any site: the
 *   browser then enforces the Content-Security-Policy frame-ancestors of the answer;
 * - a top-level page load of a landing page (`/`, `/login`, `/admin`), which only shows a page, is let
 *   through from any site, so a link to the gateway works.
 */
export function crossSiteRefusal(
  req: IncomingMessage,
  ownOriginOf: (req: IncomingMessage) => string,
  options: { allowFraming: boolean; path: string },
): string | null {
  const origin = req.headers.origin;
  const site = req.headers['sec-fetch-site'];
  const sameOriginSite = site === undefined || site === 'same-origin' || site === 'none';
  // Most requests name no site at all (API clients): nothing to compare, not even the gateway's own origin.
  if (origin === undefined && sameOriginSite) return null;
  if (presentedCredential(req.headers).kind !== 'none') return null;
  if (origin !== undefined) {
    const ownOrigin = ownOriginOf(req);
    if (origin.toLowerCase() !== ownOrigin) {
      return `This request came from a page of another site (Origin ${JSON.stringify(origin.slice(0, 200))}, expected ${ownOrigin}); a browser may use the gateway only from its own pages.`;
    }
  }
  if (sameOriginSite) return null;
  const mode = req.headers['sec-fetch-mode'];
  const dest = req.headers['sec-fetch-dest'];
  if (mode === 'navigate' && options.allowFraming && (dest === 'iframe' || dest === 'frame')) return null;
  const pageLoad = mode === 'navigate' && dest === 'document' && (req.method === 'GET' || req.method === 'HEAD');
  if (pageLoad && (site === 'same-site' || LANDING_PAGES.has(options.path))) return null;
  return `This request came from a page of another site (Sec-Fetch-Site: ${site.slice(0, 20)}); open the gateway's address directly instead.`;
}
