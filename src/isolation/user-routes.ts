// Routes an operator opens to user keys with `--user-route [METHOD:]PATH_PREFIX`, for a custom node's API.

import { LOCKED_PREFIXES } from './route-table.js';

/** One opened prefix; `method` null means every method. */
export interface UserRoute {
  method: string | null;
  prefix: string;
}

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** Whether `path` is `prefix` or lies under it. */
function isUnder(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);
}

/**
 * Parses one `--user-route` value.
 * @returns the route, or the reason it cannot be opened.
 * @example parseUserRoute('POST:/my_node/run') → { method: 'POST', prefix: '/my_node/run' }
 */
export function parseUserRoute(value: string): UserRoute | string {
  const colon = value.indexOf(':');
  const method = colon > 0 && !value.startsWith('/') ? value.slice(0, colon).toUpperCase() : null;
  const prefix = method === null ? value : value.slice(colon + 1);
  if (method !== null && !METHODS.includes(method)) return `the method must be one of ${METHODS.join(', ')}, not ${JSON.stringify(value.slice(0, colon))}`;
  if (!/^(?:\/[A-Za-z0-9._~-]+)+\/?$/.test(prefix) || prefix.split('/').some((s) => s === '.' || s === '..')) {
    return `the path prefix must be a plain path such as /my_node/ (letters, digits, . _ ~ -), not ${JSON.stringify(prefix)}`;
  }
  const bare = prefix.startsWith('/api/') ? prefix.slice(4) : prefix;
  const locked = LOCKED_PREFIXES.find((lockedPrefix) => isUnder(prefix, lockedPrefix) || isUnder(bare, lockedPrefix) || isUnder(lockedPrefix, bare));
  if (locked) return `${locked} stays admin-only`;
  return { method, prefix: bare };
}

/** Whether an operator opened this request's route to user keys. Custom nodes' routes are also served under `/api`. */
export function isOpenedByOperator(routes: readonly UserRoute[], method: string, segments: readonly string[]): boolean {
  if (routes.length === 0 || segments.some((segment) => segment.includes('/'))) return false;
  const path = `/${segments.join('/')}`;
  const bare = path.startsWith('/api/') ? path.slice(4) : path;
  const asked = method === 'HEAD' ? 'GET' : method;
  return routes.some((route) => (route.method === null || route.method === asked) && isUnder(bare, route.prefix));
}
