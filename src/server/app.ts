// The gateway: one HTTP server that answers its own endpoints, identifies callers, applies limits and isolation, counts usage and proxies the rest.

import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { identify, keyOfCredential, usableKeyError, type Caller } from '../auth/authenticate.js';
import { whyNotLocal } from '../auth/client-address.js';
import { backendJson, BackendPool, type BackendStatus } from '../backends/backend-pool.js';
import { buildBackend } from '../backends/build-backend.js';
import { CATALOG_CACHE_LIMITS, CatalogCache } from '../backends/catalog-cache.js';
import { ClientAddressing } from '../auth/client-addressing.js';
import { crossSiteRefusal } from '../auth/cross-site.js';
import { AuthFailureLimiter } from '../auth/failure-limiter.js';
import { HostPolicy } from '../auth/host-names.js';
import { isPublicPath } from '../auth/public-paths.js';
import { SocketRevocation } from '../auth/socket-revocation.js';
import type { GatewayConfig } from '../config/schema.js';
import {
  authRequired,
  forbidden,
  GatewayError,
  hostNotAllowed,
  methodNotAllowed,
  rateLimitExceeded,
  routeNotAllowed,
  tooManyAuthFailures,
  workflowNotFound,
} from '../errors.js';
import { adminSocketHooks } from '../events/admin-socket.js';
import { ClientFeatureFlags } from '../events/client-flags.js';
import { ClientSinkRegistry } from '../events/client-sinks.js';
import { userSocketSession } from '../events/user-socket.js';
import { createJobRecorder } from '../jobs/job-events.js';
import { ExecutionLimits } from '../policy/execution-limit.js';
import { DailyBudgets } from '../jobs/daily-budget.js';
import { interruptIfRunning } from '../jobs/interrupt.js';
import { JobService } from '../jobs/job-service.js';
import { JobWaiter, notifyingJobStore } from '../jobs/job-waiter.js';
import { getJob, jobView, listJobs } from '../jobs/jobs-api.js';
import { earlierFileCheck } from '../isolation/cached-outputs.js';
import { checkPathInUrl } from '../isolation/files.js';
import { checkBoundedId } from '../isolation/ids.js';
import { createIsolatedProxy } from '../isolation/isolated-proxy.js';
import { matchRoute } from '../isolation/route-table.js';
import { isOpenedByOperator } from '../isolation/user-routes.js';
import { logAccess, type Logger } from '../log/logger.js';
import { outboundAgent } from '../net/outbound.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { routeGroup } from '../observability/route-group.js';
import { createWebSocketProxy, type SocketCloser } from '../proxy/websocket.js';
import { asksForWebSocket, checkWebSocketHandshake } from '../proxy/websocket-handshake.js';
import { WebSocketSlots } from '../proxy/websocket-slots.js';
import { rateLimitHeaders, retryAfterSeconds } from '../ratelimit/headers.js';
import type { Stores } from '../store/index.js';
import { ACTIVE_JOB_STATUSES, GATEWAY_CLIENT_OWNER, type HitResult, type JobRecord, type KeyRecord } from '../store/types.js';
import { utcDay } from '../usage/day.js';
import { FetchPlaces } from '../workflows/fetch-places.js';
import { openApiSource } from '../workflows/openapi.js';
import { keyWebhook, type WebhookSettings } from '../webhooks/job-webhook.js';
import { WebhookOutbox } from '../webhooks/outbox.js';
import { handleAdminRoute } from './admin-api.js';
import { handleAdminPage, isAdminPagePath } from './admin-page.js';
import { addResponseHeaders, GatewayResponse } from './gateway-response.js';
import { handleLogin, handleLogout, type LoginContext } from './login.js';
import { OPENAPI_DOCUMENT } from './openapi.js';
import { handleWorkflow, listWorkflows, type WorkflowApiContext } from './workflows-api.js';
import { rejectUpgrade, sendError, sendJson } from './respond.js';
import { requestIdOf } from './request-id.js';
import { parseRequestTarget } from './request-target.js';
import { matchGatewayRoute, pathOf, type GatewayRoute } from './routes.js';

/** The open stores a gateway runs on. */
export type GatewayStores = Omit<Stores, 'location'>;

export interface Gateway {
  server: Server<typeof IncomingMessage, typeof GatewayResponse>;
  /** Starts listening, and the child ComfyUI if the config has one; resolves the bound address. Rejects when the child's command cannot be started. */
  listen(): Promise<AddressInfo>;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), stops the child ComfyUI, persists everything and closes the stores. */
  close(graceMs?: number): Promise<void>;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** A top-level page load by a browser, which is sent to the sign-in page instead of getting 401 JSON. */
function isBrowserNavigation(req: IncomingMessage): boolean {
  return (req.method === 'GET' || req.method === 'HEAD') && String(req.headers.accept ?? '').includes('text/html');
}

/** What a response's close listener needs to know of its request. */
interface RequestRecord {
  req: IncomingMessage;
  requestId: string;
  /** performance.now() when it arrived. */
  started: number;
  ip: string;
  /** The key it was made with, once known. */
  keyId: string | undefined;
  /** Set once it was counted against its key's limit: a usage entry is recorded when it ends. */
  usage: { keyId: string; endpoint: string; at: number } | null;
}

/**
 * On the answer to a keyed request, unless the answer has a Cache-Control of its own: a shared cache
 * in front of the gateway, which does not know `X-API-Key`, keeps it from every other caller.
 */
const KEYED_ANSWER_HEADERS = { 'cache-control': 'private' } as const;

const OBSERVED = Symbol('observed request');
type ObservedResponse = ServerResponse & { [OBSERVED]?: RequestRecord };

/** Wires the HTTP server to already-open stores. A `config.child` must have its `{port}` replaced already (`withChildPort`). */
export function createGatewayServer(config: GatewayConfig, stores: GatewayStores, log: Logger, metrics: GatewayMetrics): Gateway {
  const { keys, usage, counters, ownership, sessions, audit, jobEvents, workflows } = stores;
  const waiter = new JobWaiter(stores.jobs);
  const webhookSettings: WebhookSettings = { enabled: config.webhookSecret !== null, allowPrivate: config.webhookAllowPrivate };
  // Every job written here wakes the requests waiting for it (POST /api/gateway/run) and enqueues its webhook event.
  const jobs = notifyingJobStore(stores.jobs, (job) => {
    waiter.changed(job);
    outbox?.jobChanged(job);
  });
  const stopWaiterWatch = stores.jobs.onChangedElsewhere?.(() => waiter.changedElsewhere());
  const now = (): number => Date.now() / 1000;
  const sinks = new ClientSinkRegistry({ log, ...(jobEvents ? { relay: jobEvents } : {}) });
  const interruptJob = async (job: JobRecord): Promise<void> => {
    await interruptIfRunning(pool.bound(job.backend), job.upstream_id ?? job.id);
  };
  const executionSecondsToday = (keyId: string, at: number): number => usage.dailyTotals(keyId, utcDay(at)).get(utcDay(at))?.execution_seconds ?? 0;
  const limits = new ExecutionLimits({ jobs, keyOf: (keyId) => keys.get(keyId), defaultPolicy: config.defaultPolicy, interrupt: interruptJob, log });
  const budgets = new DailyBudgets({
    jobs,
    keyOf: (keyId) => keys.get(keyId),
    executionSecondsToday,
    interrupt: interruptJob,
    dropQueued: (backend, queued, error): Promise<void> => jobService.dropQueued(backend, queued, error),
    log,
  });
  const isShownEarlierFile = earlierFileCheck(ownership, (type, subfolder, filename) => jobs.producerOf(type, subfolder, filename), config.backends.length > 1);
  const recorder = createJobRecorder({
    jobs,
    ownership,
    isOwnEarlierFile: isShownEarlierFile,
    log,
    watches: [limits, budgets],
    startInHistory: (job) => jobService.startInHistory(job),
    onEnded: (job) => {
      metrics.backendJobEnded(job.backend, job.status);
      // Metered before held jobs are released: a release reads the key's daily budget.
      meter(job);
      jobService.ended();
    },
  });
  /** Meters a job that ended after it started: a run, its execution seconds and outputs, on its key's day. */
  function meter(job: JobRecord): void {
    if (job.started_at === null) return;
    usage.recordJobRun(job.key_id, job.finished_at ?? now(), job.execution_seconds ?? 0, job.outputs.length);
    metrics.jobRun(job.key_id, job.execution_seconds ?? 0, job.outputs.length);
    budgets.metered(job);
  }
  const gatewayClientId = randomBytes(16).toString('hex');
  const catalog = new CatalogCache(CATALOG_CACHE_LIMITS);
  const pool = new BackendPool(
    config.backends.map((backendConfig) =>
      buildBackend(backendConfig, {
        clientId: gatewayClientId,
        jobs,
        observer: recorder,
        isShownEarlierFile,
        sinks,
        log,
        upstreamTimeoutMs: config.upstreamTimeoutMs,
        frameAncestors: config.frameAncestors,
        onConnected: (backend) => {
          isolated.backendMayHaveRestarted();
          // Interrupts due while the socket was down were not sent (nothing told what ran): once the comparison with ComfyUI says what runs, they are.
          void jobService.connected(backend).then(() => {
            limits.sweep();
            budgets.sweep();
          });
        },
        onEndedUnannounced: (backend) => void jobService.settleEnded(backend),
        onHealthChange: (backend, state, previous) => {
          const level = state === 'up' ? 'info' : 'warn';
          log[level](
            { event: 'backend_health', backend: backend.name, state, previous, reason: backend.health.report().lastError },
            `backend ${backend.name} is ${state}`,
          );
          if (state === 'down') void jobService.backendDown(backend);
          if (state === 'up') {
            isolated.backendMayHaveRestarted();
            backend.events.reconnectNow();
            jobService.scheduler.pump();
          }
        },
      }),
    ),
  );
  /** Every backend as it is now, with the gateway's jobs queued or running on it. */
  const backendStatus = (): BackendStatus[] => pool.status((name) => jobs.sentTo(name));
  metrics.watchBackends(backendStatus);
  const jobService = new JobService({
    jobs,
    backends: pool.all,
    clientId: gatewayClientId,
    observer: recorder,
    ownership,
    depth: config.upstreamQueueDepth,
    keyOf: (keyId) => keys.get(keyId),
    budgetSpent: (keyId): boolean => budgets.spent(keyId),
    onSent: (job) => budgets.sent(job),
    onAdmitted: (job) => {
      usage.recordPromptAdmitted(job.key_id, job.admitted_at);
      metrics.promptAdmitted(job.key_id);
    },
    defaultWebhook: (key) => keyWebhook(key, webhookSettings),
    onLost: (job) => metrics.backendJobLost(job.backend),
    onEnded: (job) => {
      metrics.backendJobEnded(job.backend, job.status);
      meter(job);
    },
    log,
  });
  const isolated = createIsolatedProxy({
    pool,
    ownership,
    jobs: jobService,
    userRoutes: config.userRoutes,
    catalog,
    defaultPolicy: config.defaultPolicy,
    webhooks: webhookSettings,
  });
  const outbox = config.webhookSecret
    ? new WebhookOutbox({
        store: stores.webhooks,
        jobs: stores.jobs,
        // An admin key's webhook gets its jobs' errors whole, as its requests do.
        view: (job) => jobView(job, jobService, keys.get(job.key_id)?.role === 'admin'),
        secret: config.webhookSecret,
        keys,
        allowPrivate: config.webhookAllowPrivate,
        backends: pool.all.map((backend) => backend.url),
        retryBaseSeconds: config.webhookRetryBaseSeconds,
        ...(stores.deliveryLeases ? { leases: stores.deliveryLeases } : {}),
        log,
      })
    : null;
  const webSockets = createWebSocketProxy({
    upstream: pool.all[0]!.url,
    handshakeTimeoutMs: Math.min(config.upstreamTimeoutMs, 30_000),
    pingIntervalMs: config.wsPingIntervalMs,
  });
  const webSocketSlots = new WebSocketSlots(config.wsMaxPerKey);
  // Keyed sockets are closed once their key or session no longer authenticates, as a request would be refused.
  const socketRevocation = new SocketRevocation((credential, keyId) => keyOfCredential(credential, keyId, keys, sessions, now()));
  // A key the CLI disabled, expired or deleted loses its browser sessions once read here, as through the
  // API: enabling it again brings none back.
  const stopKeyWatch = keys.onKeyChange?.((keyId, key) => {
    if (!key || usableKeyError(key, now())) sessions.deleteForKey(keyId).catch(() => undefined);
  });
  const addressing = new ClientAddressing(config.trustedProxies);
  const hosts = new HostPolicy(config.allowedHosts);
  const failures = new AuthFailureLimiter();
  const clientIp = (req: IncomingMessage): string => addressing.clientIp(req);
  const ownOriginOf = (req: IncomingMessage): string => addressing.origin(req);
  const localManagement = (req: IncomingMessage): string | null =>
    config.noLocalAdmin ? 'local management is turned off with --no-local-admin' : whyNotLocal(req);
  const adminContext = {
    mode: config.mode,
    keys,
    usage,
    audit,
    sessions,
    whyNotLocal: localManagement,
    clientIp,
    now,
    backends: () => backendStatus().map(backendJson),
    webhookAllowPrivate: config.webhookAllowPrivate,
    webhookSecret: config.webhookSecret,
    deliveries: stores.webhooks,
  };
  const workflowContext: WorkflowApiContext = { workflows, audit, bodies: isolated, clientIp, now };
  const openApiDocument = openApiSource(OPENAPI_DOCUMENT, workflows, log);
  // Image inputs given as URLs are fetched through this pool (public addresses only, unless --webhook-allow-private; never a backend),
  // at most --max-image-fetches at once across every key, and a quarter of them (rounded up) for one key.
  const imageFetching = {
    agent: outboundAgent(
      config.webhookAllowPrivate,
      pool.all.map((backend) => backend.url),
    ),
    allowPrivate: config.webhookAllowPrivate,
    places: new FetchPlaces(config.maxImageFetches),
  };
  metrics.watchImageFetches(imageFetching.places);
  const loginContext: LoginContext = {
    keys,
    sessions,
    audit,
    addressing,
    failures,
    log,
    now,
    sessionTtlSeconds: config.sessionTtlSeconds,
    countRequest: (res, key) => countRequest(res, key, '/login'),
  };

  /**
   * Checks and counts a keyed request against its limit: the response headers, or 429. Synchronous
   * when the counter answers at once (in memory), so the request waits for no turn of the event loop.
   */
  function admit(key: KeyRecord, at: number): Record<string, string> | Promise<Record<string, string>> {
    const result = counters.hit(key.key_id, key.rate_limit, at);
    return result instanceof Promise ? result.then((settled) => admitted(key, settled, at)) : admitted(key, result, at);
  }

  /** The rate-limit headers of an allowed request (its key marked as used), or 429. */
  function admitted(key: KeyRecord, result: HitResult, at: number): Record<string, string> {
    const headers = rateLimitHeaders(result, at);
    if (!result.allowed) {
      usage.recordRateLimited(key.key_id, at);
      metrics.rateLimited(key.key_id);
      throw rateLimitExceeded(result.limit, retryAfterSeconds(result, at), headers);
    }
    keys.touch(key.key_id, at);
    return headers;
  }

  /**
   * Counts a keyed request against its limit (setting the rate-limit headers, or throwing 429) and
   * records its usage when it ends; synchronous as `admit` is.
   */
  function countRequest(res: ServerResponse, key: KeyRecord, path: string): void | Promise<void> {
    const at = now();
    const headers = admit(key, at);
    if (headers instanceof Promise) return headers.then((settled) => markCounted(res, key, path, at, settled));
    markCounted(res, key, path, at, headers);
  }

  /** Sets an admitted request's rate-limit headers, marks its answer as its key's, and has its usage recorded when it ends. */
  function markCounted(res: ServerResponse, key: KeyRecord, path: string, at: number, headers: Record<string, string>): void {
    addResponseHeaders(res, headers);
    addResponseHeaders(res, KEYED_ANSWER_HEADERS);
    const record = (res as ObservedResponse)[OBSERVED];
    // Recorded when the response ends (whether it completed or the client went away), by the response's one close listener.
    if (record) record.usage = { keyId: key.key_id, endpoint: path, at };
  }

  /**
   * Refuses, in every mode and before anything else, a host name the gateway does not answer to (421),
   * in `Host` or in a trusted proxy's `X-Forwarded-Host`, and a browser request that a page of another
   * site started (403).
   */
  function refuseForeign(req: IncomingMessage, path: string): void {
    const host = req.headers.host;
    if (!hosts.allows(host)) throw hostNotAllowed(host!);
    for (const forwarded of addressing.forwardedHosts(req)) if (!hosts.allows(forwarded)) throw hostNotAllowed(forwarded);
    const crossSite = crossSiteRefusal(req, ownOriginOf, { allowFraming: config.frameAncestors.length > 0, path });
    if (crossSite) throw forbidden(crossSite);
  }

  /**
   * Identifies the caller, refusing blocked addresses, counting failed authentications per address,
   * and refusing cookie-authenticated requests that change state from another site.
   */
  function authenticate(req: IncomingMessage, options: { unsafe: boolean }): Caller {
    const ip = addressing.clientIp(req);
    const blockedMs = failures.blockedFor(ip, Date.now());
    if (blockedMs > 0) throw tooManyAuthFailures(Math.ceil(blockedMs / 1000));
    const caller = identify(req, keys, { store: sessions, secure: addressing.isHttps(req) });
    if (caller instanceof GatewayError) {
      if (failures.recordFailure(ip, Date.now())) log.warn({ event: 'auth_failures_blocked', ip }, 'too many failed authentications; address blocked');
      throw caller;
    }
    if (caller.kind === 'key' && caller.credential.via === 'session' && options.unsafe && !addressing.isSameOrigin(req)) {
      throw forbidden('A signed-in browser may change things only from pages of this site (Origin check).');
    }
    return caller;
  }

  async function handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = parseRequestTarget(req.url);
    const { path } = target;
    refuseForeign(req, path);
    // A WebSocket upgrade arrives here, instead of as an upgrade, only when it is malformed (no `Connection: upgrade`).
    if (asksForWebSocket(req)) checkWebSocketHandshake(req);
    const route = matchGatewayRoute(path);
    if (route?.name === 'healthz') return sendJson(res, 200, { status: 'ok' });
    if (route?.name === 'readyz') return readiness(res);
    if (route?.name === 'openapi') return sendJson(res, 200, await openApiDocument());
    if (route?.name === 'metrics' && config.metricsPublic) return sendMetrics(res);
    const dashboard = isAdminPagePath(path);
    if (!route && !dashboard && config.mode === 'off') {
      return isolated.handleAnonymous(req, res, target) ?? pool.anonymous().proxy.forward(req, res);
    }
    const caller = authenticate(req, { unsafe: !SAFE_METHODS.has(req.method ?? 'GET') });
    if (caller.kind === 'key') {
      const record = (res as ObservedResponse)[OBSERVED];
      if (record) record.keyId = caller.key.key_id;
    }
    if (route?.name === 'login') return handleLogin(req, res, loginContext);
    if (route?.name === 'logout') {
      await handleLogout(req, res, loginContext);
      socketRevocation.sweep();
      return;
    }
    if (dashboard && caller.kind === 'anonymous') return handleAdminPage(res, caller, path, req.method ?? 'GET');
    if (caller.kind === 'anonymous') {
      if (route?.name === 'metrics' || route?.name === 'jobs' || route?.name === 'job' || route?.name === 'run') throw authRequired();
      if (route?.name === 'workflows' || route?.name === 'workflow' || route?.name === 'workflow-run' || route?.name === 'openai-images') throw authRequired();
      if (route) return manage(route, req, res, caller);
      if (config.mode === 'required' && !isPublicPath(req.method, path, config.publicPaths)) {
        if (isBrowserNavigation(req)) return redirectToLogin(res, req.url!);
        throw authRequired();
      }
      return isolated.handleAnonymous(req, res, target) ?? pool.anonymous().proxy.forward(req, res);
    }
    const counting = countRequest(res, caller.key, path);
    if (counting) await counting;
    if (route?.name === 'metrics') {
      if (caller.key.role !== 'admin') throw forbidden('Metrics need an admin key (or --metrics-public).');
      return sendMetrics(res);
    }
    if (route?.name === 'jobs' || route?.name === 'job') {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed(['GET']);
      return route.name === 'jobs' ? listJobs(res, caller.key, target.query, jobService) : getJob(res, caller.key, route.jobId, jobService);
    }
    if (route?.name === 'run') {
      if (req.method !== 'POST') throw methodNotAllowed(['POST']);
      if (config.mode === 'off') throw forbidden('Runs need --enable-api-auth or --require-api-auth: without either, the gateway tracks no jobs.');
      return isolated.run(req, res, caller.key, waiter);
    }
    if (route?.name === 'workflows') return listWorkflows(req, res, caller.key, workflowContext);
    if (route?.name === 'workflow') return handleWorkflow(req, res, caller.key, route.workflow, workflowContext);
    if (route?.name === 'workflow-run') {
      if (req.method !== 'POST') throw methodNotAllowed(['POST']);
      if (config.mode === 'off') throw forbidden('Runs need --enable-api-auth or --require-api-auth: without either, the gateway tracks no jobs.');
      const workflow = await workflows.get(route.workflow);
      if (!workflow) throw workflowNotFound(route.workflow);
      return isolated.runWorkflow(req, res, caller.key, waiter, workflow, imageFetching);
    }
    if (route?.name === 'openai-images') {
      if (req.method !== 'POST') throw methodNotAllowed(['POST']);
      if (config.mode === 'off') throw forbidden('Runs need --enable-api-auth or --require-api-auth: without either, the gateway tracks no jobs.');
      return isolated.generateImages(req, res, caller.key, waiter, workflows, addressing.origin(req));
    }
    if (route) return manage(route, req, res, caller);
    if (dashboard) return handleAdminPage(res, caller, path, req.method ?? 'GET');
    return isolated.handle(req, res, caller.key, target);
  }

  /** Answers a management route; a key changed or deleted here loses its open sockets at once, not at the next sweep. */
  async function manage(route: GatewayRoute, req: IncomingMessage, res: ServerResponse, caller: Caller): Promise<void> {
    await handleAdminRoute(route, req, res, caller, adminContext);
    if (route.name === 'key' || route.name === 'key-rotate') socketRevocation.sweep();
  }

  async function sendMetrics(res: ServerResponse): Promise<void> {
    const text = await metrics.registry.metrics();
    res.writeHead(200, { 'content-type': metrics.registry.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(text);
  }

  /** Counts a refusal or an upstream failure in the metrics. */
  function countError(error: unknown): void {
    if (!(error instanceof GatewayError)) return;
    if (error.status === 401 || error.code === 'TOO_MANY_AUTH_FAILURES') metrics.authFailure(error.code);
    else if (error.code.startsWith('UPSTREAM_')) metrics.upstreamError(error.code);
  }

  /** Starts observing a request: its response's one close listener (`onResponseClose`) writes the log line, the metrics and the usage entry. */
  function observe(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    // The address is read now: once the response is done, the request may no longer have its socket.
    const record: RequestRecord = { req, requestId, started: performance.now(), ip: addressing.clientIp(req), keyId: undefined, usage: null };
    (res as ObservedResponse)[OBSERVED] = record;
    // `on`, not `once`: a response closes once, and `once` would wrap the listener for every request.
    res.on('close', onResponseClose);
  }

  /** One listener shared by every response: one log line and one metrics observation per request, and its usage entry if it was counted. */
  function onResponseClose(this: ObservedResponse): void {
    const record = this[OBSERVED]!;
    const { req, usage: counted } = record;
    const status = this.statusCode;
    const seconds = (performance.now() - record.started) / 1000;
    const path = pathOf(req.url) ?? '-';
    metrics.request(routeGroup(path), status, seconds, record.keyId);
    logAccess(log, {
      req_id: record.requestId,
      method: req.method ?? '-',
      path,
      status,
      duration_ms: Math.round(seconds * 1e4) / 10,
      key_id: record.keyId ?? null,
      ip: record.ip,
    });
    if (counted) {
      usage.record({
        key_id: counted.keyId,
        endpoint: counted.endpoint,
        timestamp: counted.at,
        duration: now() - counted.at,
        success: this.writableFinished && status >= 200 && status < 400,
        metadata: { method: req.method ?? 'GET', status },
      });
    }
  }

  function redirectToLogin(res: ServerResponse, target: string): void {
    res.writeHead(302, { location: `/login?next=${encodeURIComponent(target)}`, 'content-length': '0', 'cache-control': 'no-store' });
    res.end();
  }

  /**
   * Ready while at least one backend is up and the stores can be written. Each backend is checked
   * now (a check already running is shared), so the answer is current.
   */
  async function readiness(res: ServerResponse): Promise<void> {
    const [, store] = await Promise.all([
      Promise.all(pool.all.map((backend) => backend.health.check())),
      keys.checkWritable().then(
        () => (usage.lastWriteError() ? `usage writes failing: ${usage.lastWriteError()!.message}` : 'ok'),
        (error: Error) => `not writable: ${error.message}`,
      ),
    ]);
    const backends = backendStatus();
    const up = backends.filter((backend) => backend.state === 'up');
    const upstream = up.length > 0 ? 'ok' : `unreachable: ${backends.map((backend) => `${backend.name}: ${backend.lastError ?? backend.state}`).join('; ')}`;
    const ready = up.length > 0 && store === 'ok';
    const only = pool.several ? null : pool.all[0]!;
    sendJson(res, ready ? 200 : 503, {
      status: ready ? 'ready' : 'not_ready',
      upstream,
      store,
      ...(only?.child ? { child: only.child.describe() } : {}),
      backends: backends.map(backendJson),
    });
  }

  /** An admin's view of the queue with several backends: every backend's ComfyUI queue (as last broadcast) and the held jobs. */
  function everyQueueRemaining(): number {
    const ofBackend = (status: Record<string, unknown> | null): number => {
      const remaining = (status?.status as { exec_info?: { queue_remaining?: unknown } } | undefined)?.exec_info?.queue_remaining;
      return typeof remaining === 'number' ? remaining : 0;
    };
    return pool.all.reduce((sum, backend) => sum + ofBackend(backend.events.status()), 0) + jobs.count({ statuses: ['held'] });
  }

  async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const { path, segments, query } = parseRequestTarget(req.url);
    checkWebSocketHandshake(req);
    refuseForeign(req, path);
    if (config.mode === 'off') return webSockets.relay(req, socket, head, { upstream: pool.anonymous().url, onEnd: () => undefined });
    // A browser sends its cookie with any site's WebSocket, so a cookie-authenticated socket must come from this site.
    const caller = authenticate(req, { unsafe: true });
    const clientId = query.get('clientId') ?? '';
    checkBoundedId('clientId', clientId);
    if (caller.kind === 'anonymous') {
      if (config.mode === 'required') throw authRequired();
      // Checked apart from its claim, which is another replica's record of it too: a socket of that clientId would take the gateway's place in ComfyUI.
      if (clientId === jobService.clientId) throw forbidden("That clientId is the gateway's own: use another.");
      if (clientId && ownership.ownerOf('client', clientId)) throw forbidden('That clientId belongs to a key.');
      return webSockets.relay(req, socket, head, { upstream: pool.anonymous().url, onEnd: () => undefined });
    }
    const key = caller.key;
    const match = matchRoute('GET', segments);
    const comfySocket = match?.entry.handler === 'websocket';
    if (key.role !== 'admin' && !comfySocket) {
      // As for a request, the table's rule comes first: --user-route opens only what the table forwards or does not know.
      if (match && match.entry.access !== 'forwarded') throw routeNotAllowed('GET', match.entry.access === 'admin-only');
      if (!isOpenedByOperator(config.userRoutes, 'GET', segments)) throw routeNotAllowed('GET');
      checkPathInUrl(match?.rest ?? null);
    }
    webSocketSlots.hold(key.key_id, socket);
    const at = now();
    await admit(key, at);
    if (!clientId) query.set('clientId', randomUUID().replaceAll('-', ''));
    if (query.get('clientId') === jobService.clientId) throw forbidden("That clientId is the gateway's own: use another.");
    const owner = await ownership.claim('client', query.get('clientId')!, key.key_id);
    if (owner === GATEWAY_CLIENT_OWNER) throw forbidden("That clientId is the gateway's own: use another.");
    if (owner !== key.key_id && key.role !== 'admin') throw forbidden('That clientId belongs to another key: use your own (any new id becomes yours).');
    // A socket now uses it: a prompt of the key under way that claimed it new keeps it, even if refused.
    if (owner === key.key_id) jobService.clientClaims.keep(query.get('clientId')!, key.key_id);
    const ip = addressing.clientIp(req);
    const socketClientId = query.get('clientId')!;
    let untrack = (): void => undefined;
    const track = (close: SocketCloser): void => {
      untrack = socketRevocation.track({ keyId: key.key_id, credential: caller.credential, role: key.role, close });
    };
    const queueRemaining = (): number => jobs.count({ keyId: key.key_id, statuses: ACTIVE_JOB_STATUSES });
    const ended = ({ status, connectedMs }: { status: number; connectedMs: number }): void => {
      untrack();
      if (status === 101) metrics.websocketClosed();
      metrics.request('websocket', status, connectedMs / 1000, key.key_id);
      logAccess(log, { method: 'GET', path, status, duration_ms: connectedMs, key_id: key.key_id, ip }, 'websocket');
      usage.record({
        key_id: key.key_id,
        endpoint: path,
        timestamp: at,
        duration: connectedMs / 1000,
        success: status === 101,
        metadata: { method: 'GET', status },
      });
    };
    if (key.role !== 'admin' && comfySocket) {
      // Everything a user key's socket may get comes through the event hubs: no socket to ComfyUI is opened for it.
      const session = userSocketSession({
        keyId: key.key_id,
        clientId: socketClientId,
        sinks,
        queueRemaining,
        onStatus: (listener) => pool.onEveryHub((hub) => hub.onStatus(listener)),
        serverFlags: () => pool.any().events.featureFlags(),
        onServerFlags: (listener) => pool.onEveryHub((hub) => hub.onFeatureFlags(listener)),
        onEnd: ended,
      });
      webSockets.accept(req, socket, head, {
        ...session,
        onOpen: (sendToClient, close) => {
          metrics.websocketOpened();
          track(close);
          session.onOpen(sendToClient, close);
        },
      });
      return;
    }
    // An admin's ComfyUI socket is relayed, and also gets its key's jobs of its clientId from every backend's event hub.
    const events = comfySocket ? sinks : undefined;
    const flags = new ClientFeatureFlags();
    let unregister = (): void => undefined;
    const hooks = events ? adminSocketHooks(flags, pool.several ? everyQueueRemaining : undefined) : undefined;
    webSockets.relay(req, socket, head, {
      upstream: pool.any().url,
      target: `${path}?${query}`,
      onOpen: (sendToClient, close) => {
        metrics.websocketOpened();
        track(close);
        if (events)
          unregister = events.register(key.key_id, socketClientId, {
            send: sendToClient,
            wantsPreviewMetadata: () => flags.wantsPreviewMetadata(),
            seesJobsWithoutClient: true,
          });
      },
      headers: await isolated.upstreamHeadersFor(key),
      ...(hooks ? { hooks } : {}),
      onEnd: (outcome) => {
        unregister();
        ended(outcome);
      },
    });
  }

  const server = createServer<typeof IncomingMessage, typeof GatewayResponse>({ keepAliveTimeout: 5000, ServerResponse: GatewayResponse }, (req, res) => {
    const requestId = requestIdOf(req);
    req.headers['x-request-id'] = requestId;
    res.addHeaders({ 'x-request-id': requestId });
    observe(req, res, requestId);
    handleRequest(req, res).catch((error: unknown) => {
      if (!(error instanceof GatewayError)) log.error({ err: error, req_id: requestId, method: req.method, path: pathOf(req.url) }, 'request failed');
      countError(error);
      sendError(res, error);
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    handleUpgrade(req, socket, head).catch((error: unknown) => {
      if (!(error instanceof GatewayError)) log.error({ err: error, path: pathOf(req.url) }, 'websocket upgrade failed');
      countError(error);
      rejectUpgrade(socket, error);
    });
  });
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    socket.destroy();
  });

  return {
    server,
    async listen() {
      const address = await new Promise<AddressInfo>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.listen, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      });
      await Promise.all(pool.all.map((backend) => backend.child?.start() ?? Promise.resolve()));
      for (const backend of pool.all) backend.health.start();
      if (config.mode !== 'off') {
        sinks.start();
        for (const backend of pool.all) backend.events.start();
        jobService.start();
        limits.start();
        budgets.start();
      }
      outbox?.start();
      socketRevocation.start();
      return address;
    },
    async close(graceMs = 5000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      socketRevocation.stop();
      stopKeyWatch?.();
      webSockets.close();
      jobService.close();
      stopWaiterWatch?.();
      waiter.close();
      limits.close();
      budgets.close();
      for (const backend of pool.all) {
        backend.events.close();
        backend.health.stop();
      }
      sinks.close();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs).unref();
      await closed;
      clearTimeout(timer);
      await Promise.all([
        ...pool.all.flatMap((backend) => [backend.proxy.close(), backend.child?.stop() ?? Promise.resolve()]),
        isolated.close(),
        imageFetching.agent.close(),
      ]);
      jobEvents?.close();
      await outbox?.close();
      await Promise.all([
        keys.close(),
        usage.close(),
        counters.close(),
        ownership.close(),
        sessions.close(),
        jobs.close(),
        stores.webhooks.close(),
        stores.deliveryLeases?.close(),
      ]);
      log.flush();
    },
  };
}
