// Routes a keyed request to ComfyUI through the isolation rules: what a user key may see and do, and what only admins may.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { forbidden } from '../errors.js';
import type { HttpProxy } from '../proxy/http.js';
import { sendJson } from '../server/respond.js';
import type { KeyRecord, OwnershipStore } from '../store/types.js';
import { canonicalRoute } from './canonical-path.js';
import { ComfyUsers } from './comfy-users.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { getHistoryEntry, getHistoryList, postHistory } from './history.js';
import { checkBoundedIds } from './ids.js';
import { cancelJob, cancelJobs, getJob, getJobList } from './jobs.js';
import { parseJsonOrUndefined, relayAnswer, relayJson } from './json-body.js';
import { postPrompt } from './prompt.js';
import { getQueue, postInterrupt, postQueue } from './queue.js';
import { redactQueueItem } from './redact.js';
import { getView, postUpload } from './view.js';

export interface IsolatedProxy {
  /** Forwards a request made with a key, applying the rules for that key's role. */
  handle(req: IncomingMessage, res: ServerResponse, key: KeyRecord, path: string, query: URLSearchParams): Promise<void>;
  /** The `Comfy-User` header (or its removal) for a key's requests and WebSockets. */
  upstreamHeadersFor(req: IncomingMessage, key: KeyRecord): Promise<Record<string, string | null>>;
  /** ComfyUI's answers to /queue and /history, without secrets, for callers without a key. */
  handleAnonymous(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean>;
}

const READS = new Set(['GET', 'HEAD']);

/** Paths only admin keys may use: ComfyUI's internals (logs, server paths) and memory management. */
function isAdminOnly(route: string): boolean {
  return route === '/free' || route === '/internal' || route.startsWith('/internal/');
}

/** Per-user data that ComfyUI separates only under `--multi-user`. */
function isUserData(route: string): boolean {
  return route === '/settings' || route.startsWith('/settings/') || route === '/userdata' || route.startsWith('/userdata/') || route === '/v2/userdata';
}

export function createIsolatedProxy(options: { proxy: HttpProxy; ownership: OwnershipStore }): IsolatedProxy {
  const ctx: IsolationContext = { proxy: options.proxy, ownership: options.ownership };
  const comfyUsers = new ComfyUsers(ctx);

  async function handle(req: IncomingMessage, res: ServerResponse, key: KeyRecord, path: string, query: URLSearchParams): Promise<void> {
    const route = canonicalRoute(path).toLowerCase();
    const method = req.method ?? 'GET';
    const comfyUser = req.headers['comfy-user'];
    checkBoundedIds({ 'Comfy-User': Array.isArray(comfyUser) ? comfyUser.join(', ') : comfyUser });
    const caller: IsolatedCaller = { key, seesAll: key.role === 'admin', upstreamHeaders: await comfyUsers.headersFor(req, key) };
    const user = !caller.seesAll;
    if (user && isAdminOnly(route)) throw forbidden('This ComfyUI route needs an admin key.');

    if (route === '/prompt' && method === 'POST') return postPrompt(ctx, req, res, caller);
    if (route === '/history' && READS.has(method)) return getHistoryList(ctx, req, res, caller, path, query);
    if (route.startsWith('/history/') && READS.has(method) && route.indexOf('/', 9) < 0) return getHistoryEntry(ctx, req, res, caller, canonicalRoute(path).slice(9));
    if (route === '/queue' && READS.has(method)) return getQueue(ctx, req, res, caller);
    if (route === '/view' && READS.has(method)) return getView(ctx, req, res, caller, query);
    if ((route === '/upload/image' || route === '/upload/mask') && method === 'POST') return postUpload(ctx, req, res, caller);
    if (user) {
      if (route === '/history' && method === 'POST') return postHistory(ctx, req, res, caller);
      if (route === '/queue' && method === 'POST') return postQueue(ctx, req, res, caller);
      if (route === '/interrupt' && method === 'POST') return postInterrupt(ctx, req, res, caller);
      if (route === '/system_stats' && READS.has(method)) return systemStatsWithoutArgv(req, res, caller);
      if (route === '/users' || isUserData(route)) {
        const handled = await userDataRule(req, res, key, route, method);
        if (handled) return;
      }
      const jobs = /^(?:\/api)?\/jobs(?:\/([^/]+)(\/cancel)?)?$/.exec(route);
      if (jobs) {
        const [, id, cancel] = jobs;
        const jobId = id === undefined ? undefined : canonicalRoute(path).split('/').at(cancel ? -2 : -1)!;
        if (jobId === undefined && READS.has(method)) return getJobList(ctx, req, res, caller, path, query);
        if (id === 'cancel' && !cancel && method === 'POST') return cancelJobs(ctx, req, res, caller);
        if (jobId !== undefined && !cancel && READS.has(method)) return getJob(ctx, req, res, caller, jobId);
        if (jobId !== undefined && cancel && method === 'POST') return cancelJob(ctx, req, res, caller, jobId);
      }
    }
    await ctx.proxy.forward(req, res, { headers: caller.upstreamHeaders });
  }

  /** /system_stats without the `argv` ComfyUI was started with (it can hold paths and secrets). */
  async function systemStatsWithoutArgv(req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
    const answer = await ctx.proxy.fetch(req, { headers: caller.upstreamHeaders });
    const stats = answer.status === 200 ? (parseJsonOrUndefined(answer.body) as { system?: Record<string, unknown> } | undefined) : undefined;
    if (!stats?.system) return relayAnswer(res, answer);
    delete stats.system.argv;
    relayJson(res, answer, stats);
  }

  /**
   * Settings, saved workflows and users for a user key. With `--multi-user` upstream, the key's own
   * ComfyUI user is used and `/users` shows only it; without it, these are read-only.
   * @returns true when the request was answered here.
   */
  async function userDataRule(req: IncomingMessage, res: ServerResponse, key: KeyRecord, route: string, method: string): Promise<boolean> {
    if (route === '/users' && method === 'POST') throw forbidden('ComfyUI users are created by the gateway, one per key.');
    if (await comfyUsers.isMultiUser(req)) {
      if (route !== '/users' || !READS.has(method)) return false;
      const userId = await comfyUsers.userOf(req, key);
      sendJson(res, 200, { storage: 'server', users: { [userId]: ComfyUsers.userName(key) } });
      return true;
    }
    if (READS.has(method)) return false;
    throw forbidden('Settings and saved workflows are read-only for user keys unless ComfyUI runs with --multi-user.');
  }

  /** Secrets in queue and history entries are removed for every caller, with a key or without. */
  async function handleAnonymous(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    const route = canonicalRoute(path).toLowerCase();
    if (!READS.has(req.method ?? 'GET') || (route !== '/queue' && route !== '/history' && !route.startsWith('/history/'))) return false;
    const answer = await ctx.proxy.fetch(req);
    const body = answer.status === 200 ? parseJsonOrUndefined(answer.body) : undefined;
    if (typeof body !== 'object' || body === null) {
      relayAnswer(res, answer);
      return true;
    }
    if (route === '/queue') {
      const queue = body as { queue_running?: unknown[]; queue_pending?: unknown[] };
      for (const item of [...(queue.queue_running ?? []), ...(queue.queue_pending ?? [])]) redactQueueItem(item);
    } else {
      for (const entry of Object.values(body as Record<string, { prompt?: unknown } | null>)) redactQueueItem(entry?.prompt);
    }
    relayJson(res, answer, body);
    return true;
  }

  return { handle, upstreamHeadersFor: (req, key) => comfyUsers.headersFor(req, key), handleAnonymous };
}
