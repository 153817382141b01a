// The security headers on the gateway's own answers: its pages (sign-in, dashboard) and its JSON.

/** On every answer of the gateway's own: a browser must not guess another type than the one sent. */
export const NO_SNIFF = { 'x-content-type-options': 'nosniff' } as const;

/**
 * On the gateway's own pages and their files: `csp` (which carries `frame-ancestors 'none'`), no
 * framing for older browsers, no sniffing, no caching, and a referrer only within the site.
 * `same-origin` rather than `no-referrer`: under `no-referrer` a browser sends `Origin: null` with
 * the page's own form posts, which the cross-site check refuses.
 */
export function pageHeaders(csp: string): Record<string, string> {
  return { ...NO_SNIFF, 'content-security-policy': csp, 'x-frame-options': 'DENY', 'referrer-policy': 'same-origin', 'cache-control': 'no-store' };
}
