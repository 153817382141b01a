// What the isolation handlers share: the proxy, the ownership records, and the caller.

import type { IncomingMessage } from 'node:http';
import type { BackendPool, PoolBackend } from '../backends/backend-pool.js';
import type { JobService } from '../jobs/job-service.js';
import type { NodeReplacements } from '../policy/node-replacements.js';
import type { PromptPolicy } from '../policy/schema.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import type { JobRecord, KeyRecord, OwnershipStore } from '../store/types.js';
import type { WebhookSettings } from '../webhooks/job-webhook.js';
import { earlierFileCheck } from './cached-outputs.js';
import { promptOutputsOf, type NamedFile, type PromptOutputs } from './files.js';
import { parseComfyJson } from './json-body.js';
import type { JsonRewriter } from './large-json.js';

export interface IsolationContext {
  /** The backends; a job's requests go to its own. */
  pool: BackendPool;
  ownership: OwnershipStore;
  jobs: JobService;
  /** Rewrites ComfyUI's answers, the large ones off the request thread. */
  rewriter: JsonRewriter;
  /** The prompt policy of user keys without one of their own (`--default-policy`), or null. */
  defaultPolicy: PromptPolicy | null;
  /** ComfyUI's node replacements (GET /node_replacements, kept with the catalog answers), which prompt policies also read. */
  nodeReplacements(): Promise<NodeReplacements>;
  /** Whether runs may ask for webhooks (`--webhook-secret`), and to which addresses; absent: they may not. */
  webhooks?: WebhookSettings;
}

/** Headers that replace (a string) or remove (null) a request's own on its way to ComfyUI. */
export type UpstreamUserHeaders = Readonly<Record<string, string | null>>;

/** The key making the request, and the headers every request it forwards gets (its ComfyUI user). */
export interface IsolatedCaller {
  key: KeyRecord;
  /** Admin keys see and act on everything; user keys only on their own work. */
  seesAll: boolean;
  upstreamHeaders: UpstreamUserHeaders;
}

/** The key of a prompt, by the id its key knows: its job's, or (for prompts from before the job registry) its claim's. */
export function ownerOfPrompt(ctx: IsolationContext, promptId: string): string | undefined {
  return ctx.jobs.jobs.get(promptId)?.key_id ?? ctx.ownership.ownerOf('prompt', promptId);
}

/** Whether the caller may see or act on a prompt. */
export function ownsPrompt(ctx: IsolationContext, caller: IsolatedCaller, promptId: unknown): boolean {
  return caller.seesAll || (typeof promptId === 'string' && ownerOfPrompt(ctx, promptId) === caller.key.key_id);
}

/** The job ComfyUI knows by this prompt_id on this backend, if the gateway sent it. */
export function jobOfUpstreamId(ctx: IsolationContext, backend: PoolBackend, upstreamId: unknown): JobRecord | undefined {
  return typeof upstreamId === 'string' ? ctx.jobs.jobs.byUpstreamId(backend.name, upstreamId) : undefined;
}

/**
 * The backend a prompt is on, by the id its key knows: its job's (a prompt from before the job
 * registry, or a held job, goes to the first backend).
 * @throws GatewayError 502 BACKEND_DOWN when that backend is confirmed down
 */
export function backendOfPrompt(ctx: IsolationContext, promptId: string): PoolBackend {
  return ctx.pool.bound(ctx.jobs.jobs.get(promptId)?.backend ?? '');
}

/** Prompt ids grouped by the backend each is on (see `backendOfPrompt`), in the order the backends are configured. */
export function byBackend(ctx: IsolationContext, promptIds: readonly string[]): Map<PoolBackend, string[]> {
  const groups = new Map<PoolBackend, string[]>();
  for (const id of promptIds) {
    const backend = backendOfPrompt(ctx, id);
    groups.set(backend, [...(groups.get(backend) ?? []), id]);
  }
  return groups;
}

/** The id ComfyUI knows a prompt by, given the id its key knows (they differ only for a job held and sent to a ComfyUI that ignored its id). */
export function upstreamIdOf(ctx: IsolationContext, promptId: string): string {
  return ctx.jobs.jobs.get(promptId)?.upstream_id ?? promptId;
}

/**
 * Whether a file that a node of the prompt took from ComfyUI's cache names (an earlier prompt made it) is shown to
 * the caller: an admin is shown every file, a user key its own (see earlierFileCheck).
 */
export function isShownEarlierFile(ctx: IsolationContext, caller: IsolatedCaller, promptId: string): (file: NamedFile) => boolean {
  if (caller.seesAll) return () => true;
  const check = earlierFileCheck(ctx.ownership, (type, subfolder, filename) => ctx.jobs.jobs.producerOf(type, subfolder, filename), ctx.pool.several);
  const backend = ctx.jobs.jobs.get(promptId)?.backend ?? ctx.pool.all[0]!.name;
  return (file) => check(caller.key.key_id, backend, file);
}

/** What a key knows of its job: the job's id and its client's own client_id. */
export type KnownAs = Pick<JobRecord, 'id' | 'client_id'>;

/**
 * A queue item or a history entry's `prompt` (`[number, id, prompt, extra_data, outputs]`) as the job's
 * key knows it: the job's id and the client's own client_id in place of the gateway's.
 */
export function asKeyKnowsIt(item: unknown, job: KnownAs | undefined): void {
  if (!job || !Array.isArray(item)) return;
  item[1] = job.id;
  withClientsOwnId(item[3], job);
}

/** An extra_data with the client's own client_id (or none) in place of the gateway's. */
export function withClientsOwnId(extraData: unknown, job: KnownAs): void {
  if (typeof extraData !== 'object' || extraData === null) return;
  if (job.client_id === null) delete (extraData as Record<string, unknown>).client_id;
  else (extraData as Record<string, unknown>).client_id = job.client_id;
}

/** GETs another ComfyUI path of a backend on the caller's behalf (as its ComfyUI user) and reads the answer. */
export function getUpstream(backend: PoolBackend, req: IncomingMessage, caller: IsolatedCaller, path: string): Promise<UpstreamAnswer> {
  return backend.proxy.fetch(req, { method: 'GET', path, body: '', headers: { ...caller.upstreamHeaders, 'content-type': null } });
}

/** Records the files a prompt produced as its owner's; once its run has completed, notes that it need not be looked at again. */
export async function recordPromptOutputs(ctx: IsolationContext, promptId: string, entry: unknown): Promise<void> {
  if (typeof entry !== 'object' || entry === null) return;
  await recordOutputs(ctx, promptId, promptOutputsOf(entry));
}

/** `recordPromptOutputs` given what the history entry tells of its outputs. */
export async function recordOutputs(ctx: IsolationContext, promptId: string, { files, completed }: PromptOutputs): Promise<void> {
  const owner = ownerOfPrompt(ctx, promptId);
  if (!owner) return;
  await Promise.all(files.map((id) => ctx.ownership.claim('file', id, owner)));
  if (completed) await ctx.ownership.markOutputsRecorded(promptId);
}

/** Looks up the history of those of the caller's `limit` most recent prompts whose outputs are not recorded yet, and records them. */
export async function recordRecentOutputs(ctx: IsolationContext, req: IncomingMessage, caller: IsolatedCaller, limit: number): Promise<void> {
  const pending = ctx.ownership.recentPrompts(caller.key.key_id, limit).filter((p) => !p.outputsRecorded);
  await Promise.all(
    pending.map(async ({ promptId }) => {
      const answer = await getUpstream(backendOfPrompt(ctx, promptId), req, caller, `/history/${encodeURIComponent(upstreamIdOf(ctx, promptId))}`);
      const history = answer.status === 200 ? (parseComfyJson(answer.body) as Record<string, unknown> | undefined) : undefined;
      const entry = history?.[upstreamIdOf(ctx, promptId)];
      if (entry) await recordPromptOutputs(ctx, promptId, entry);
    }),
  );
}
