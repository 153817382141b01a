// Routes a keyed request to ComfyUI through the isolation rules: what a user key may see and do, and what only admins may.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { forbidden, invalidRequest, routeNotAllowed, unsupportedContentEncoding, upstreamUnreadable } from '../errors.js';
import type { JobService } from '../jobs/job-service.js';
import type { JobWaiter } from '../jobs/job-waiter.js';
import type { BackendPool } from '../backends/backend-pool.js';
import type { CatalogCache } from '../backends/catalog-cache.js';
import type { RequestTarget } from '../server/request-target.js';
import { sendJson } from '../server/respond.js';
import type { KeyRecord, OwnershipStore, WorkflowRecord, WorkflowStore } from '../store/types.js';
import { generateImages } from '../workflows/openai-images.js';
import type { ImageFetching } from '../workflows/image-input.js';
import { runWorkflow } from '../workflows/run-workflow.js';
import { ComfyUsers } from './comfy-users.js';
import type { IsolatedCaller, IsolationContext, UpstreamUserHeaders } from './context.js';
import { checkPathInUrl } from './files.js';
import { getHistoryEntry, getHistoryList, postHistory } from './history.js';
import { checkBoundedId } from './ids.js';
import { cancelJob, cancelJobs, getJob, getJobList } from './jobs.js';
import { emptyNotFound, parseComfyJson, relayAnswer, relayJson } from './json-body.js';
import { isNodeDefinitions, withoutListedFiles } from './listed-files.js';
import { everyBackendsReplacements, knownNodeReplacements } from './known-replacements.js';
import { JsonRewriter } from './large-json.js';
import { postPrompt } from './prompt.js';
import { getQueue, postInterrupt, postQueue } from './queue.js';
import { runPrompt } from './run.js';
import { redactQueueItem } from './redact.js';
import { matchRoute, type Handler } from './route-table.js';
import { getSystemStats } from './system-stats.js';
import { isOpenedByOperator, type UserRoute } from './user-routes.js';
import { getAnonymousView, getView, postUpload, servedAsFile } from './view.js';
import type { PromptPolicy } from '../policy/schema.js';
import type { WebhookSettings } from '../webhooks/job-webhook.js';
import type { UpstreamAnswer } from '../proxy/http.js';

export interface IsolatedProxy {
  /** Forwards a request made with a key, applying the route table's rule for that key's role. */
  handle(req: IncomingMessage, res: ServerResponse, key: KeyRecord, target: RequestTarget): Promise<void>;
  /** POST /api/gateway/run for a key: admits the prompt and waits for its job with `waiter` (see runPrompt). */
  run(req: IncomingMessage, res: ServerResponse, key: KeyRecord, waiter: JobWaiter): Promise<void>;
  /** POST /api/gateway/workflows/{name}/run for a key: the workflow's graph with the run's inputs, run as `run` runs a prompt (see runWorkflow). */
  runWorkflow(req: IncomingMessage, res: ServerResponse, key: KeyRecord, waiter: JobWaiter, workflow: WorkflowRecord, fetching: ImageFetching): Promise<void>;
  /** POST /v1/images/generations for a key: the workflow marked `openai_images` run with the request's prompt, n and size (see generateImages). */
  generateImages(req: IncomingMessage, res: ServerResponse, key: KeyRecord, waiter: JobWaiter, workflows: WorkflowStore, origin: string): Promise<void>;
  /** The `Comfy-User` header (or its removal) for a key's requests and WebSockets. */
  upstreamHeadersFor(key: KeyRecord): UpstreamUserHeaders | Promise<UpstreamUserHeaders>;
  /**
   * For callers without a key: ComfyUI's answers to /queue and /history without secrets, and `/view`
   * and user data with a served file's headers; null, at once, for anything else (which goes to ComfyUI as it is).
   */
  handleAnonymous(req: IncomingMessage, res: ServerResponse, target: RequestTarget): Promise<void> | null;
  /** A backend (re)connected or came up: it may be a restarted ComfyUI, with other nodes and models and another `--multi-user` setting. */
  backendMayHaveRestarted(): void;
  /** Parses a request body as parseExactJson does, a large one with many exact numbers in a worker thread (see JsonRewriter.parseBody). */
  parseBody(text: string): Promise<unknown>;
  /** Stops the threads that rewrite large answers. */
  close(): Promise<void>;
}

const READS = new Set(['GET', 'HEAD']);
/** Where ComfyUI lists its node replacements (404 on releases without them). */
const NODE_REPLACEMENTS = '/api/node_replacements';

/** Prefix of the catalog entries that keep each backend's node replacements, by backend name. */
const REPLACEMENTS_PREFIX = 'node-replacements-of:';
/** Prefix of the catalog entries kept as user keys get them (node definitions without the input folder's file lists). */
const USER_VIEW_PREFIX = 'for-user-keys:';

export function createIsolatedProxy(options: {
  pool: BackendPool;
  ownership: OwnershipStore;
  jobs: JobService;
  userRoutes: readonly UserRoute[];
  /** Catalog answers (node definitions, models, embeddings) shared by every key. */
  catalog: CatalogCache;
  /** The prompt policy of user keys without one of their own. */
  defaultPolicy: PromptPolicy | null;
  /** Whether runs may ask for webhooks, and to which addresses. */
  webhooks?: WebhookSettings;
}): IsolatedProxy {
  const ctx: IsolationContext = {
    pool: options.pool,
    ownership: options.ownership,
    jobs: options.jobs,
    rewriter: new JsonRewriter(),
    defaultPolicy: options.defaultPolicy,
    nodeReplacements: everyBackendsReplacements(
      options.pool.all.map((backend) =>
        knownNodeReplacements(() =>
          options.catalog.get(`${REPLACEMENTS_PREFIX}${backend.name}`, async () => {
            const fetched = await backend.proxy.fetch(null, { method: 'GET', path: NODE_REPLACEMENTS });
            // A release without replacements answers 404: kept as none, so that each prompt does not ask again.
            return fetched.status === 404 ? { ...fetched, status: 200, body: Buffer.from('{}') } : fetched;
          }),
        ),
      ),
    ),
    ...(options.webhooks ? { webhooks: options.webhooks } : {}),
  };
  const comfyUsers = new ComfyUsers(ctx);

  /** The caller of a keyed request, with the ComfyUI user its requests go as; at once when that user is known. */
  function callerOf(req: IncomingMessage, key: KeyRecord): IsolatedCaller | Promise<IsolatedCaller> {
    const comfyUser = req.headers['comfy-user'];
    if (comfyUser !== undefined) checkBoundedId('Comfy-User', Array.isArray(comfyUser) ? comfyUser.join(', ') : comfyUser);
    const seesAll = key.role === 'admin';
    const headers = comfyUsers.headersFor(key);
    if (headers instanceof Promise) return headers.then((upstreamHeaders) => ({ key, seesAll, upstreamHeaders }));
    return { key, seesAll, upstreamHeaders: headers };
  }

  async function handle(req: IncomingMessage, res: ServerResponse, key: KeyRecord, target: RequestTarget): Promise<void> {
    const method = req.method ?? 'GET';
    const known = callerOf(req, key);
    const caller = known instanceof Promise ? await known : known;
    const match = matchRoute(method, target.segments);
    if (!caller.seesAll) {
      if (encodedBody(req)) throw unsupportedContentEncoding();
      if (!match) {
        if (target.segments.some((segment) => segment.includes('/'))) {
          throw invalidRequest('An encoded slash (%2F) may stand only in a file name of /userdata.', [
            { field: 'target', problem: 'an encoded slash in the path' },
          ]);
        }
        if (!isOpenedByOperator(options.userRoutes, method, target.segments)) throw routeNotAllowed(method);
      } else if (match.entry.access === 'admin-only') {
        throw routeNotAllowed(method, true);
      } else {
        checkPathInUrl(match.rest);
      }
    }
    // ComfyUI answers every OPTIONS in its middleware, before any route runs.
    const handler = method === 'OPTIONS' ? undefined : match?.entry.handler;
    if (match && handler && (!caller.seesAll || match.entry.forAdmins)) return runHandler(handler, req, res, caller, target, match.params);
    await ctx.pool.any().proxy.forward(req, res, { headers: caller.upstreamHeaders });
  }

  /** Answers a filtered or per-user route through its isolation handler. */
  async function runHandler(
    handler: Handler,
    req: IncomingMessage,
    res: ServerResponse,
    caller: IsolatedCaller,
    target: RequestTarget,
    params: Record<string, string>,
  ): Promise<void> {
    const { path, query } = target;
    switch (handler) {
      case 'prompt':
        return postPrompt(ctx, req, res, caller);
      case 'history-list':
        return getHistoryList(ctx, req, res, caller, path, query);
      case 'history-entry':
        return getHistoryEntry(ctx, req, res, caller, params.prompt_id!);
      case 'history-change':
        return postHistory(ctx, req, res, caller);
      case 'queue-list':
        return getQueue(ctx, req, res, caller);
      case 'queue-change':
        return postQueue(ctx, req, res, caller);
      case 'interrupt':
        return postInterrupt(ctx, req, res, caller);
      case 'view':
        return getView(ctx, req, res, caller, query);
      case 'upload':
        return postUpload(ctx, req, res, caller);
      case 'system-stats':
        return getSystemStats(ctx, req, res, caller);
      case 'catalog':
        return getCatalog(req, res, caller.seesAll);
      case 'model-folders':
        return getModelFolders(req, res);
      case 'jobs-list':
        return getJobList(ctx, req, res, caller, path, query);
      case 'job':
        return getJob(ctx, req, res, caller, params.job_id!);
      case 'job-cancel':
        return cancelJob(ctx, req, res, caller, params.job_id!);
      case 'jobs-cancel':
        return cancelJobs(ctx, req, res, caller);
      case 'users':
        if (userDataRule(res, caller, handler, req.method ?? 'GET', target.segments)) return;
        return ctx.pool.any().proxy.forward(req, res, { headers: caller.upstreamHeaders });
      case 'user-data':
        servedAsFile(res);
        if (!caller.seesAll && userDataRule(res, caller, handler, req.method ?? 'GET', target.segments)) return;
        return ctx.pool.any().proxy.forward(req, res, { headers: caller.upstreamHeaders });
      case 'websocket':
        return ctx.pool.any().proxy.forward(req, res, { headers: caller.upstreamHeaders });
    }
  }

  /**
   * Node definitions, model lists and embeddings: a healthy backend's answer, asked for on the gateway's
   * own behalf (it is the same for every key) and kept a short while (see CatalogCache). A HEAD gets the
   * GET's headers. User keys get node definitions without the input folder's file lists (see withoutListedFiles).
   */
  async function getCatalog(req: IncomingMessage, res: ServerResponse, seesAll: boolean): Promise<void> {
    const target = req.url!;
    const load = (): Promise<UpstreamAnswer> => options.catalog.get(target, () => ctx.pool.any().proxy.fetch(null, { method: 'GET', path: target }));
    // Kept beside ComfyUI's answer, under a name of its own.
    const path = target.split('?', 1)[0]!;
    relayAnswer(
      res,
      !seesAll && isNodeDefinitions(path)
        ? await options.catalog.get(`${USER_VIEW_PREFIX}${target}`, async () => withoutListedFiles(await load()))
        : await load(),
    );
  }

  /** GET /experiment/models for a user key: the model folders as a shared catalog answer, each with `folders` (absolute server paths) empty. */
  async function getModelFolders(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url!;
    const answer = await options.catalog.get(target, () => ctx.pool.any().proxy.fetch(null, { method: 'GET', path: target }));
    if (answer.status !== 200) return relayAnswer(res, answer);
    const folders = parseComfyJson(answer.body);
    if (!Array.isArray(folders)) throw upstreamUnreadable();
    relayJson(
      res,
      answer,
      folders.map((folder: unknown) => (typeof folder === 'object' && folder !== null ? { ...folder, folders: [] } : folder)),
    );
  }

  /**
   * Settings, saved workflows and users for a user key. With `--multi-user` upstream, the key's own
   * ComfyUI user is used and `/users` shows only it. Without it, ComfyUI's one user is the operator's
   * (its settings, saved workflows, and files custom nodes keep there, credentials among them): a user
   * key reads it as a user who has saved nothing (see answerAsNoUserData), and may not write it.
   * Which of the two is read from the caller's `Comfy-User`, so that one answer of ComfyUI decides
   * both the rule and the user the request goes as.
   * @returns true when the request was answered here.
   */
  function userDataRule(res: ServerResponse, caller: IsolatedCaller, handler: 'users' | 'user-data', method: string, segments: readonly string[]): boolean {
    if (handler === 'users' && method === 'POST') throw forbidden('ComfyUI users are created by the gateway, one per key.');
    const userId = caller.upstreamHeaders['comfy-user'];
    if (typeof userId === 'string') {
      if (handler !== 'users' || !READS.has(method)) return false;
      sendJson(res, 200, { storage: 'server', users: { [userId]: ComfyUsers.userName(caller.key) } });
      return true;
    }
    if (!READS.has(method)) throw forbidden('User keys keep settings and saved workflows only when ComfyUI runs with --multi-user.');
    if (handler === 'users') return false;
    answerAsNoUserData(res, segments);
    return true;
  }

  /** Files get a served file's headers, and secrets in queue and history entries are removed, for every caller, with a key or without. */
  function handleAnonymous(req: IncomingMessage, res: ServerResponse, target: RequestTarget): Promise<void> | null {
    const handler = matchRoute(req.method ?? 'GET', target.segments)?.entry.handler;
    if (handler === 'view') return getAnonymousView(ctx, req, res);
    if (handler === 'user-data') {
      servedAsFile(res);
      return ctx.pool.anonymous().proxy.forward(req, res);
    }
    if (handler === 'queue-list' || handler === 'history-list' || handler === 'history-entry') return relayWithoutSecrets(req, res, handler);
    return null;
  }

  /** ComfyUI's queue or history, as asked, with the secrets of every entry removed. */
  async function relayWithoutSecrets(req: IncomingMessage, res: ServerResponse, handler: 'queue-list' | 'history-list' | 'history-entry'): Promise<void> {
    const answer = await ctx.pool.anonymous().proxy.fetch(req);
    if (answer.status !== 200) return relayAnswer(res, answer);
    const body = parseComfyJson(answer.body);
    if (typeof body !== 'object' || body === null) throw upstreamUnreadable();
    if (handler === 'queue-list') {
      const queue = body as { queue_running?: unknown[]; queue_pending?: unknown[] };
      for (const item of [...(queue.queue_running ?? []), ...(queue.queue_pending ?? [])]) redactQueueItem(item);
    } else {
      for (const entry of Object.values(body as Record<string, { prompt?: unknown } | null>)) redactQueueItem(entry?.prompt);
    }
    relayJson(res, answer, body);
  }

  return {
    handle,
    run: async (req, res, key, waiter) => runPrompt(ctx, waiter, req, res, await callerOf(req, key)),
    runWorkflow: async (req, res, key, waiter, workflow, fetching) => runWorkflow(ctx, waiter, req, res, await callerOf(req, key), workflow, fetching),
    generateImages: async (req, res, key, waiter, workflows, origin) => generateImages(ctx, waiter, req, res, await callerOf(req, key), workflows, origin),
    upstreamHeadersFor: (key) => comfyUsers.headersFor(key),
    handleAnonymous,
    backendMayHaveRestarted: () => {
      options.catalog.clear();
      comfyUsers.forgetMode();
    },
    parseBody: (text) => ctx.rewriter.parseBody(text),
    close: () => ctx.rewriter.close(),
  };
}

/** A read of user data answered as for a user who has saved nothing: settings `{}`, one setting `null`, anything else an empty 404. */
function answerAsNoUserData(res: ServerResponse, segments: readonly string[]): void {
  const [first, second] = segments[0] === 'api' ? segments.slice(1) : segments;
  if (first === 'settings') return sendJson(res, 200, second === undefined ? {} : null);
  emptyNotFound(res);
}

/**
 * Whether the request says its body is encoded (any Content-Encoding but identity). ComfyUI's aiohttp
 * decodes a gzip, deflate, br or zstd body before reading it, so the gateway would check other bytes
 * than ComfyUI acts on (an upload form hidden in a gzip header's extra field).
 */
function encodedBody(req: IncomingMessage): boolean {
  const encoding = req.headers['content-encoding'];
  return encoding !== undefined && encoding.trim().toLowerCase() !== 'identity';
}
