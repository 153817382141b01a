// A pool of one backend that is always up, made of a proxy and events that a unit test provides, and a job service over it.

import { BackendPool, type PoolBackend } from '../../src/backends/backend-pool.js';
import type { BackendEvents } from '../../src/jobs/backend.js';
import { JobService } from '../../src/jobs/job-service.js';
import { createLogger } from '../../src/log/logger.js';
import type { HttpProxy } from '../../src/proxy/http.js';
import type { JobStore, KeyRecord, OwnershipStore } from '../../src/store/types.js';

/** A backend's events that do nothing: its socket (with `clientId`) is open, answers are not waited for and nothing is sent to clients; `overrides` replace any of it. */
export function quietEvents(clientId: string, overrides: Partial<BackendEvents> = {}): BackendEvents {
  return {
    clientId,
    connected: true,
    expectAnswer: () => () => undefined,
    answered: () => undefined,
    messagesReceived: 0,
    promptAccepted: () => undefined,
    runningFromQueue: () => () => undefined,
    announce: () => undefined,
    ...overrides,
  };
}

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

/** A job service over `pool` for a unit test: no observer, a queue depth of 2, and `key` for every key id. */
export function oneBackendJobService(options: { jobs: JobStore; ownership: OwnershipStore; pool: BackendPool; clientId: string; key: KeyRecord }): JobService {
  return new JobService({
    jobs: options.jobs,
    backends: options.pool.all,
    clientId: options.clientId,
    observer: { started: () => undefined, cached: () => undefined, executed: () => undefined, ended: () => undefined },
    ownership: options.ownership,
    depth: 2,
    keyOf: () => options.key,
    budgetSpent: () => false,
    log: createLogger('silent'),
  });
}
