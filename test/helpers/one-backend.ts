// A pool of one backend that is always up, made of a proxy and events that a unit test provides.

import { BackendPool, type PoolBackend } from '../../src/backends/backend-pool.js';
import type { BackendEvents } from '../../src/jobs/backend.js';
import type { HttpProxy } from '../../src/proxy/http.js';

/** One backend named `default`, up, with the test's proxy and events (the pool's other parts are never used). */
export function oneBackendPool(proxy: HttpProxy, events: BackendEvents): BackendPool {
  const backend = {
    name: 'default',
    weight: 1,
    url: new URL('http://127.0.0.1:1'),
    proxy,
    events,
    child: null,
    health: { current: 'up' },
    accepting: () => true,
    isDown: () => false,
  } as unknown as PoolBackend;
  return new BackendPool([backend]);
}
