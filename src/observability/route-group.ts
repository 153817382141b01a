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
  const segments = path.split('/');
  const first = (segments[1] === 'api' ? segments[2] : segments[1])?.toLowerCase() ?? '';
  return GROUPS[first] ?? (first === '' ? 'frontend' : 'other');
}
