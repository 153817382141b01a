// /history for isolated callers: only their own prompts, with ComfyUI's max_items/offset applied to what they may see.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { invalidRequest } from '../errors.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import type { JobRecord } from '../store/types.js';
import { readJsonBody } from '../server/body.js';
import {
  asKeyKnowsIt,
  backendOfPrompt,
  byBackend,
  getUpstream,
  isShownEarlierFile,
  jobOfUpstreamId,
  ownsPrompt,
  recordOutputs,
  recordPromptOutputs,
  upstreamIdOf,
  type IsolatedCaller,
  type IsolationContext,
  type KnownAs,
} from './context.js';
import { refusedHistoryEntry, wasRefused } from '../jobs/refusal.js';
import { ownCachedOutputs } from './cached-outputs.js';
import { cachedNodesOf, mayNameCachedNodes } from './files.js';
import { historyWindow } from './history-window.js';
import { queryInteger } from './query-integer.js';
import { getMergedHistory } from './merged-history.js';
import { forwardToEach } from './each-backend.js';
import type { PoolBackend } from '../backends/backend-pool.js';
import { emptyOk, parseComfyJson, relayAnswer, relayJson, withJsonText } from './json-body.js';
import type { HistoryEntryFacts } from './json-rewrites.js';
import { forEachInTurns } from './in-turns.js';
import { mayHoldSecrets, redactQueueItem } from './redact.js';
import { mayHoldExecutionError, mayHoldServerPath, showEntryWithoutServerPaths } from './server-paths.js';
import { memberText } from '../json/member-text.js';

type HistoryEntry = { prompt?: unknown; outputs?: unknown; status?: { messages?: unknown } };
type History = Record<string, HistoryEntry>;

/**
 * GET /history: the caller's entries, windowed by `max_items` and `offset` exactly as ComfyUI windows the whole
 * history. A user key's window is looked up entry by entry from its own prompts; an admin's is ComfyUI's own
 * (asked of ComfyUI with the same parameters).
 */
export async function getHistoryList(
  ctx: IsolationContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  path: string,
  query: URLSearchParams,
): Promise<void> {
  const maxItems = queryInteger(query, 'max_items');
  const offset = queryInteger(query, 'offset') ?? -1;
  if (!caller.seesAll) return getOwnHistoryWindow(ctx, req, res, caller, path, maxItems, offset);
  if (ctx.pool.several) return getMergedHistory(ctx, req, res, caller, path, offset, maxItems);
  // An admin sees every entry, so ComfyUI's own window is the admin's: only that window is read.
  const backend = ctx.pool.all[0]!;
  const answer = await getUpstream(backend, req, caller, query.size > 0 ? `${path}?${query}` : path);
  relayAnswer(res, await ctx.rewriter.rewrite(answer, 'admin-history', (entries) => jobsOfEntries(ctx, backend, entries)));
}

/**
 * The jobs among ComfyUI's history entries (as their keys know them), by the id ComfyUI knows them by;
 * each entry's output files are recorded as its prompt owner's on the way.
 */
export async function jobsOfEntries(ctx: IsolationContext, backend: PoolBackend, entries: readonly HistoryEntryFacts[]): Promise<Map<string, KnownAs>> {
  const jobs = new Map<string, KnownAs>();
  await forEachInTurns(entries, ({ upstreamId, outputs }) => {
    const job = jobOfUpstreamId(ctx, backend, upstreamId);
    if (job) jobs.set(upstreamId, { id: job.id, client_id: job.client_id });
    void recordOutputs(ctx, job?.id ?? upstreamId, outputs).catch(() => undefined);
  });
  return jobs;
}

/**
 * Statuses of jobs that have, or may have, a history entry in ComfyUI: those that ran, and those sent
 * to it (ComfyUI may have written the entry a moment before the gateway hears the end). Held jobs and
 * jobs cancelled before they ran have none.
 */
const MAY_HAVE_RUN = ['queued', 'running', 'success', 'error', 'interrupted'] as const;

/** The ids of the key's prompts that may have a history entry, newest first: its jobs, then its prompts from before the job registry. */
function ownPromptsThatRan(ctx: IsolationContext, keyId: string): string[] {
  const jobs = ctx.jobs.jobs;
  const statuses = MAY_HAVE_RUN;
  const ran = jobs.list({ keyId, statuses, offset: 0, limit: jobs.count({ keyId, statuses }) }).map((job) => job.id);
  return [...ran, ...ctx.ownership.recentPrompts(keyId, Number.MAX_SAFE_INTEGER).map((p) => p.promptId)];
}

/**
 * A user key's window: its own jobs' `/history/{id}`, a few at a time, until the window is full. Its
 * jobs come newest first from the registry, then its prompts from before the registry.
 */
async function getOwnHistoryWindow(
  ctx: IsolationContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  path: string,
  maxItems: number | undefined,
  offset: number,
): Promise<void> {
  let refusal: UpstreamAnswer | undefined;
  const lookup = async (promptId: string): Promise<string | undefined> => {
    const job = ctx.jobs.jobs.get(promptId);
    if (job && wasRefused(job)) return JSON.stringify(await refusedEntryShown(ctx, caller, job));
    const upstreamId = upstreamIdOf(ctx, promptId);
    const answer = await getUpstream(backendOfPrompt(ctx, promptId), req, caller, `${path}/${encodeURIComponent(upstreamId)}`);
    if (answer.status !== 200) {
      refusal ??= answer;
      return undefined;
    }
    return entryText(ctx, caller, promptId, upstreamId, answer.body.toString('utf8'));
  };
  const window = await historyWindow(ownPromptsThatRan(ctx, caller.key.key_id), maxItems, offset, lookup);
  if (refusal) return relayAnswer(res, refusal);
  const text = `{${window.map(([id, entry]) => `${JSON.stringify(id)}:${entry}`).join(',')}}`;
  relayAnswer(res, withJsonText({ status: 200, headers: {}, body: Buffer.alloc(0) }, Buffer.from(text)));
}

/**
 * The JSON text of a prompt's history entry as its key may see it, from ComfyUI's `/history/{id}`
 * answer; undefined when it has none. A job's entry is passed on as ComfyUI wrote it, with this
 * gateway's client_id replaced by the client's own, when that is all there is to change; otherwise
 * (secrets to remove, nodes ComfyUI took from its cache, an `execution_error` or outputs whose server paths are cut,
 * another id, no client_id, another replica's client_id, a prompt from before the job registry) it is
 * parsed, changed and written again.
 */
function entryText(ctx: IsolationContext, caller: IsolatedCaller, promptId: string, upstreamId: string, answer: string): string | undefined {
  const job = ctx.jobs.jobs.get(promptId);
  const gatewayClientId = JSON.stringify(ctx.jobs.clientId);
  const raw = job && job.client_id !== null && job.id === upstreamId ? onlyEntryOf(answer, upstreamId) : undefined;
  if (raw !== undefined && raw.includes(gatewayClientId) && !mayHoldSecrets(raw) && !mayNameCachedNodes(raw) && !mayNeedPathsCut(raw))
    return raw.replaceAll(gatewayClientId, JSON.stringify(job!.client_id));
  const entry = (parseComfyJson(answer) as History | undefined)?.[upstreamId];
  if (typeof entry !== 'object' || entry === null) return undefined;
  asKeyKnowsIt(entry.prompt, job);
  redactQueueItem(entry.prompt);
  if (!job) void recordPromptOutputs(ctx, promptId, entry).catch(() => undefined);
  showOwnCachedFiles(ctx, caller, promptId, entry);
  showEntryWithoutServerPaths(entry);
  return JSON.stringify(entry);
}

/**
 * Whether an entry's text may hold what a user key is shown without server paths (see showEntryWithoutServerPaths): an
 * `execution_error`, or a path in its `outputs`. Only the outputs' text is searched for a path (found from the entry's
 * end, where ComfyUI writes them after the prompt): a path in the prompt, the key's own, changes nothing, and the
 * prompt (with an editor workflow, often 100 KB or more) is not read.
 */
function mayNeedPathsCut(entryText: string): boolean {
  if (mayHoldExecutionError(entryText)) return true;
  const outputs = memberText(entryText, 'outputs');
  return outputs === undefined || mayHoldServerPath(outputs);
}

/** A history entry's `outputs` as the caller is shown them: its cached nodes' files only when they are the caller's (ownCachedOutputs). */
function showOwnCachedFiles(ctx: IsolationContext, caller: IsolatedCaller, promptId: string, entry: HistoryEntry): void {
  if (typeof entry.outputs !== 'object' || entry.outputs === null) return;
  const cached = new Set(cachedNodesOf(entry.status?.messages));
  entry.outputs = ownCachedOutputs(entry.outputs as Record<string, unknown>, cached, isShownEarlierFile(ctx, caller, promptId));
}

/** The history entry of a job ComfyUI refused, with its `execution_error` as a user key is shown it (see showEntryWithoutServerPaths). */
async function refusedEntryShown(ctx: IsolationContext, caller: IsolatedCaller, job: JobRecord): Promise<Record<string, unknown>> {
  const entry = await refusedHistoryEntry(job, ctx.rewriter);
  if (!caller.seesAll) showEntryWithoutServerPaths(entry as HistoryEntry);
  return entry;
}

/** The text of the value of `{"<id>": {...}}`, the whole of a `/history/{id}` answer with an entry; undefined for any other text. */
function onlyEntryOf(answer: string, id: string): string | undefined {
  const text = answer.trim();
  const key = `{${JSON.stringify(id)}`;
  if (!text.startsWith(key) || !text.endsWith('}')) return undefined;
  const rest = text.slice(key.length, -1).trimStart();
  if (!rest.startsWith(':')) return undefined;
  const value = rest.slice(1).trim();
  return value.startsWith('{') && value.endsWith('}') ? value : undefined;
}

/** GET /history/{id}: the entry if it is the caller's; otherwise `{}`, as ComfyUI answers for an unknown id. */
export async function getHistoryEntry(
  ctx: IsolationContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  promptId: string,
): Promise<void> {
  if (!ownsPrompt(ctx, caller, promptId)) {
    relayJson(res, { status: 200, headers: {}, body: Buffer.alloc(0) }, {});
    return;
  }
  const job = ctx.jobs.jobs.get(promptId);
  if (job && wasRefused(job))
    return relayJson(res, { status: 200, headers: {}, body: Buffer.alloc(0) }, { [promptId]: await refusedEntryShown(ctx, caller, job) });
  const upstreamId = upstreamIdOf(ctx, promptId);
  const answer = await getUpstream(backendOfPrompt(ctx, promptId), req, caller, `${pathOfHistory(req)}/${encodeURIComponent(upstreamId)}`);
  const history = answer.status === 200 ? (parseComfyJson(answer.body) as History | undefined) : undefined;
  if (!history || typeof history !== 'object') return relayAnswer(res, answer);
  const entry = history[upstreamId];
  if (typeof entry !== 'object' || entry === null) return relayJson(res, answer, {});
  asKeyKnowsIt(entry.prompt, job);
  redactQueueItem(entry.prompt);
  void recordPromptOutputs(ctx, promptId, entry).catch(() => undefined);
  showOwnCachedFiles(ctx, caller, promptId, entry);
  if (!caller.seesAll) showEntryWithoutServerPaths(entry);
  relayJson(res, answer, { [promptId]: entry });
}

/** POST /history `{clear, delete}`: a user key clears or deletes only its own entries. */
export async function postHistory(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const body = await readClearOrDelete(req);
  let ids = (body.delete ?? []).filter((id) => ownsPrompt(ctx, caller, id));
  if (body.clear) ids = [...new Set([...ids, ...ownPromptsThatRan(ctx, caller.key.key_id)])];
  if (ids.length === 0) return emptyOk(res);
  await forwardToEach(res, byBackend(ctx, ids), (backend, group) =>
    backend.proxy.fetch(req, {
      body: JSON.stringify({ delete: group.map((id) => upstreamIdOf(ctx, id)) }),
      headers: { ...caller.upstreamHeaders, 'content-type': 'application/json' },
    }),
  );
}

/** `/history` or `/api/history`, as the client asked. */
function pathOfHistory(req: IncomingMessage): string {
  return req.url!.startsWith('/api/') ? '/api/history' : '/history';
}

/** Reads a `{clear?: boolean, delete?: string[]}` body, as POST /history and POST /queue take. */
export async function readClearOrDelete(req: IncomingMessage): Promise<{ clear: boolean; delete?: string[] }> {
  const body = (await readJsonBody(req)) ?? {};
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalidRequest('The body must be a JSON object.', [{ field: 'body', problem: 'not an object' }]);
  const { clear, delete: ids } = body as { clear?: unknown; delete?: unknown };
  if (ids !== undefined && (!Array.isArray(ids) || ids.some((id) => typeof id !== 'string'))) {
    throw invalidRequest('delete must be a list of prompt ids.', [{ field: 'delete', problem: 'not a list of strings' }]);
  }
  return { clear: clear === true, ...(ids ? { delete: ids as string[] } : {}) };
}
