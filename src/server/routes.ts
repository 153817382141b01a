// Which requests the gateway answers itself (health, keys, usage, jobs, runs, backends, webhook deliveries); everything else goes to ComfyUI.

/** A gateway endpoint matched on the raw path: exact, bare or under `/api`, as ComfyUI registers its routes. */
export type GatewayRoute =
  | { name: 'healthz' }
  | { name: 'readyz' }
  | { name: 'keys' }
  | { name: 'key'; keyId: string }
  | { name: 'key-rotate'; keyId: string }
  | { name: 'key-webhook-secret'; keyId: string }
  | { name: 'audit' }
  | { name: 'usage' }
  | { name: 'usage-all' }
  | { name: 'metrics' }
  | { name: 'openapi' }
  | { name: 'jobs' }
  | { name: 'job'; jobId: string }
  | { name: 'run' }
  | { name: 'backends' }
  | { name: 'workflows' }
  | { name: 'workflow'; workflow: string }
  | { name: 'workflow-run'; workflow: string }
  | { name: 'openai-images' }
  | { name: 'webhook-deliveries' }
  | { name: 'webhook-delivery'; deliveryId: string }
  | { name: 'login' }
  | { name: 'logout' };

const JOB_PATH = /^\/api\/gateway\/jobs\/([^/]+)$/;
const WORKFLOW_PATH = /^\/api\/gateway\/workflows\/([^/]+)(\/run)?$/;
const DELIVERY_PATH = /^\/api\/gateway\/webhooks\/deliveries\/([A-Za-z0-9_-]{1,100})$/;
const KEY_PATH = /^(?:\/api)?\/keys\/([A-Za-z0-9_-]{1,64})(\/rotate|\/webhook-secret)?$/;
const KEY_SUBROUTES = { '/rotate': 'key-rotate', '/webhook-secret': 'key-webhook-secret' } as const;

/** Matches the path (without query) of a gateway endpoint, or null for a path to proxy. */
export function matchGatewayRoute(path: string): GatewayRoute | null {
  switch (path) {
    case '/healthz':
      return { name: 'healthz' };
    case '/readyz':
      return { name: 'readyz' };
    case '/keys':
    case '/api/keys':
      return { name: 'keys' };
    case '/usage':
    case '/api/usage':
      return { name: 'usage' };
    case '/usage/all':
    case '/api/usage/all':
      return { name: 'usage-all' };
    case '/audit':
    case '/api/audit':
      return { name: 'audit' };
    case '/metrics':
      return { name: 'metrics' };
    case '/api/gateway/openapi.json':
      return { name: 'openapi' };
    case '/api/gateway/jobs':
      return { name: 'jobs' };
    case '/api/gateway/run':
      return { name: 'run' };
    case '/api/gateway/backends':
      return { name: 'backends' };
    case '/api/gateway/workflows':
      return { name: 'workflows' };
    case '/v1/images/generations':
      return { name: 'openai-images' };
    case '/api/gateway/webhooks/deliveries':
      return { name: 'webhook-deliveries' };
    case '/login':
      return { name: 'login' };
    case '/logout':
      return { name: 'logout' };
  }
  // Every path the patterns below match starts with one of these: any other path (nearly every one) is not matched against each.
  if (!path.startsWith('/api/gateway/') && !path.startsWith('/keys/') && !path.startsWith('/api/keys/')) return null;
  const job = JOB_PATH.exec(path);
  if (job) return { name: 'job', jobId: decodeURIComponent(job[1]!) };
  const workflow = WORKFLOW_PATH.exec(path);
  if (workflow) return { name: workflow[2] ? 'workflow-run' : 'workflow', workflow: workflow[1]! };
  const delivery = DELIVERY_PATH.exec(path);
  if (delivery) return { name: 'webhook-delivery', deliveryId: delivery[1]! };
  const key = KEY_PATH.exec(path);
  if (!key) return null;
  return { name: key[2] ? KEY_SUBROUTES[key[2] as keyof typeof KEY_SUBROUTES] : 'key', keyId: key[1]! };
}

/** The path of a request target, without its query; null when the target is not a path (`*`, absolute form). */
export function pathOf(url: string | undefined): string | null {
  if (!url || url[0] !== '/') return null;
  const query = url.indexOf('?');
  return query < 0 ? url : url.slice(0, query);
}
