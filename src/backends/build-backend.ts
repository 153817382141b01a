// Builds one backend from its configuration: the proxy to it, its event hub, its health checks and, when the gateway runs it, its child process.

import type { BackendConfig } from '../config/schema.js';
import type { ClientSinkRegistry } from '../events/client-sinks.js';
import { EventHub, type JobLookup, type JobObserver } from '../events/event-hub.js';
import type { EarlierFileCheck } from '../isolation/cached-outputs.js';
import { parseComfyJson } from '../isolation/json-body.js';
import type { Logger } from '../log/logger.js';
import { createHttpProxy } from '../proxy/http.js';
import { poolBackend, type PoolBackend } from './backend-pool.js';
import { ChildSupervisor } from './child-process.js';
import { BackendHealth, type BackendState } from './health.js';

/** Between health checks of a backend. */
export const HEALTH_INTERVAL_MS = 2000;
/** Failed checks in a row (about 6 s) after which a backend is confirmed down and its jobs are moved. */
export const FAILURES_TO_CONFIRM_DOWN = 3;
/** How long one health check may take. */
const HEALTH_TIMEOUT_MS = 2000;
/** The User-Agent of health checks, so that logs (and tests) can tell them from clients' requests. */
export const HEALTH_CHECK_USER_AGENT = 'comfy-gate-health-check';

export interface BuildBackendOptions {
  /** The clientId of the gateway's own socket to every backend. */
  clientId: string;
  jobs: JobLookup;
  observer: JobObserver;
  /** Which files of the nodes ComfyUI takes from its cache a job's key is shown in their events. */
  isShownEarlierFile: EarlierFileCheck;
  sinks: ClientSinkRegistry;
  log: Logger;
  upstreamTimeoutMs: number;
  frameAncestors: readonly string[];
  /** The gateway's socket to the backend opened (the first time, and after each reconnect). */
  onConnected(backend: PoolBackend): void;
  /** The backend's running prompt ended without an end event (a release before August 2024): its history says how. */
  onEndedUnannounced(backend: PoolBackend): void;
  /** The backend's health changed. */
  onHealthChange(backend: PoolBackend, state: BackendState, previous: BackendState): void;
}

export function buildBackend(config: BackendConfig, options: BuildBackendOptions): PoolBackend {
  const proxy = createHttpProxy({ upstream: config.url, headersTimeoutMs: options.upstreamTimeoutMs, frameAncestors: options.frameAncestors });
  const child = config.child
    ? new ChildSupervisor({
        command: config.child,
        name: config.name === 'default' ? 'comfyui' : config.name,
        log: options.log,
        answers: () => proxy.probe('/', HEALTH_TIMEOUT_MS).then((status) => status < 500),
      })
    : null;
  const events = new EventHub({
    backend: config.name,
    upstream: config.url,
    jobs: options.jobs,
    observer: options.observer,
    isShownEarlierFile: options.isShownEarlierFile,
    sinks: options.sinks,
    log: options.log,
    socket: { clientId: options.clientId },
    onConnected: () => options.onConnected(backend),
    onEndedUnannounced: () => options.onEndedUnannounced(backend),
  });
  const health = new BackendHealth({
    intervalMs: HEALTH_INTERVAL_MS,
    failuresToConfirm: FAILURES_TO_CONFIRM_DOWN,
    probe: async () => {
      const answer = await proxy.fetch(null, {
        method: 'GET',
        path: '/api/prompt',
        timeoutMs: HEALTH_TIMEOUT_MS,
        headers: { 'user-agent': HEALTH_CHECK_USER_AGENT },
      });
      if (answer.status >= 500) throw new Error(`GET /api/prompt answered ${answer.status}`);
      const info = answer.status === 200 ? (parseComfyJson(answer.body) as { exec_info?: { queue_remaining?: unknown } } | undefined) : undefined;
      const remaining = info?.exec_info?.queue_remaining;
      return typeof remaining === 'number' ? remaining : null;
    },
    ...(child ? { processGone: () => child.status().state === 'restarting', processStarting: () => child.status().state === 'starting' } : {}),
    onChange: (state, previous) => options.onHealthChange(backend, state, previous),
  });
  const backend = poolBackend({ config, proxy, events, health, child });
  return backend;
}
