// The ComfyUI backends behind the gateway: each with its proxy, event hub, health checks and (when the gateway runs it) child process.

import type { BackendConfig } from '../config/schema.js';
import { backendDown } from '../errors.js';
import type { EventHub } from '../events/event-hub.js';
import type { Backend } from '../jobs/backend.js';
import type { HttpProxy } from '../proxy/http.js';
import type { ChildSupervisor } from './child-process.js';
import type { BackendHealth, HealthReport } from './health.js';

/** A backend with everything the gateway keeps for it. */
export interface PoolBackend extends Backend {
  readonly url: URL;
  readonly events: EventHub;
  readonly health: BackendHealth;
  readonly child: ChildSupervisor | null;
}

/** What `/readyz`, the admin API and the dashboard show of a backend. */
export interface BackendStatus extends HealthReport {
  name: string;
  /** Its origin (no credentials: `--upstream` URLs with a user or password are shown without them). */
  url: string;
  weight: number;
  /** Whether the gateway's event socket to it is open. */
  events: 'connected' | 'disconnected';
  /** The gateway's jobs queued or running on it. */
  jobsInFlight: number;
  /** The child process, when the gateway runs it: `running (pid 4242)`, `restarting in 2 s (exit code 1)`... */
  child: string | null;
}

/** A backend as `/readyz` and `GET /api/gateway/backends` answer it: `child` only when the gateway runs it. */
export interface BackendJson {
  name: string;
  url: string;
  weight: number;
  state: BackendStatus['state'];
  since: number;
  last_error: string | null;
  events: BackendStatus['events'];
  jobs_in_flight: number;
  queue_remaining: number | null;
  child?: string;
}

/** The JSON of a backend's status. */
export function backendJson({ name, url, weight, state, since, lastError, events, jobsInFlight, queueRemaining, child }: BackendStatus): BackendJson {
  return {
    name,
    url,
    weight,
    state,
    since,
    last_error: lastError,
    events,
    jobs_in_flight: jobsInFlight,
    queue_remaining: queueRemaining,
    ...(child !== null ? { child } : {}),
  };
}

/** The parts of a backend made for one `BackendConfig`. */
export interface BackendParts {
  config: BackendConfig;
  proxy: HttpProxy;
  events: EventHub;
  health: BackendHealth;
  child: ChildSupervisor | null;
}

export function poolBackend({ config, proxy, events, health, child }: BackendParts): PoolBackend {
  return {
    name: config.name,
    weight: config.weight,
    url: config.url,
    proxy,
    events,
    health,
    child,
    accepting: () => health.current === 'up' && events.connected,
    isDown: () => health.current === 'down',
  };
}

export class BackendPool {
  readonly all: readonly PoolBackend[];
  private readonly byName: ReadonlyMap<string, PoolBackend>;
  /** Where the next request that is not about a job starts looking for a backend that is up. */
  private cursor = 0;

  constructor(backends: readonly PoolBackend[]) {
    if (backends.length === 0) throw new Error('a gateway needs at least one backend');
    this.all = backends;
    this.byName = new Map(backends.map((backend) => [backend.name, backend]));
  }

  /** Whether there is more than one backend (answers must then be merged across them). */
  get several(): boolean {
    return this.all.length > 1;
  }

  get(name: string): PoolBackend | undefined {
    return this.byName.get(name);
  }

  /** Subscribes to every backend's event hub with `subscribe`; returns the function that stops every subscription. */
  onEveryHub(subscribe: (hub: EventHub) => () => void): () => void {
    const stops = this.all.map((backend) => subscribe(backend.events));
    return () => stops.forEach((stop) => stop());
  }

  /** The backends that answer their health checks. */
  up(): PoolBackend[] {
    return this.all.filter((backend) => backend.health.current === 'up');
  }

  /**
   * A backend for a request that is not about one job (node definitions, models, settings): those
   * that are up take turns; when none is, the first that is not confirmed down, else the first (the
   * request then fails as ComfyUI's own would, 502 or 504).
   */
  any(): PoolBackend {
    const up = this.up();
    if (up.length > 0) return up[this.cursor++ % up.length]!;
    return this.anonymous();
  }

  /**
   * The backend of requests without a key (auth off, or optional mode): the gateway does not track
   * their prompts, so all of them go to one backend, the first that is not confirmed down.
   */
  anonymous(): PoolBackend {
    return this.all.find((backend) => !backend.isDown()) ?? this.all[0]!;
  }

  /**
   * The backend a job's request goes to.
   * A name no backend has (a job of a backend since removed from the configuration) goes to the first.
   * @throws GatewayError 502 BACKEND_DOWN when it is confirmed down, so the client does not wait for a timeout
   */
  bound(name: string): PoolBackend {
    const backend = this.byName.get(name) ?? this.all[0]!;
    if (backend.isDown()) throw backendDown(backend.name);
    return backend;
  }

  status(jobsInFlight: (backend: string) => number): BackendStatus[] {
    return this.all.map((backend) => ({
      name: backend.name,
      url: backend.url.origin,
      weight: backend.weight,
      events: backend.events.connected ? 'connected' : 'disconnected',
      jobsInFlight: jobsInFlight(backend.name),
      child: backend.child?.describe() ?? null,
      ...backend.health.report(),
    }));
  }
}
