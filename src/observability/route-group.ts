// A small, fixed set of names for what a request was about, for metric labels (never the raw path: cardinality).

const GROUPS: Record<string, string> = {
  prompt: 'prompt',
  queue: 'queue',
  history: 'history',
  interrupt: 'queue',
  view: 'view',
  upload: 'upload',
  ws: 'websocket',
  object_info: 'object_info',
  system_stats: 'system',
  features: 'system',
  userdata: 'userdata',
  settings: 'userdata',
  users: 'userdata',
  internal: 'internal',
  jobs: 'jobs',
  keys: 'keys',
  usage: 'usage',
  audit: 'audit',
  login: 'sign_in',
  logout: 'sign_in',
  admin: 'dashboard',
  healthz: 'health',
  readyz: 'health',
  metrics: 'metrics',
};

/** The route group of a path, e.g. `/api/history/abc` → `history`; anything unlisted is `other`. */
export function routeGroup(path: string): string {
  // The first segment starts after the first slash; after `api/`, the second is the one that counts.
  const start = path.indexOf('/') + 1;
  let first = start === 0 ? '' : segmentFrom(path, start);
  if (first === 'api') first = segmentFrom(path, start + 'api/'.length);
  // Every name of GROUPS is in lower case: a segment that is one needs no lower-casing (nearly every request's).
  if (Object.hasOwn(GROUPS, first)) return GROUPS[first]!;
  first = first.toLowerCase();
  return GROUPS[first] ?? (first === '' ? 'frontend' : 'other');
}

/** The path segment that starts at `start`, up to the next slash, found without splitting the whole path. */
function segmentFrom(path: string, start: number): string {
  if (start > path.length) return '';
  const end = path.indexOf('/', start);
  return path.slice(start, end === -1 ? path.length : end);
}
