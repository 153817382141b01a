// Settles jobs the gateway sent but did not see end (it was restarted, or its socket to ComfyUI dropped): from ComfyUI's queue and each job's history entry.

import { setTimeout as sleep } from 'node:timers/promises';
import { cachedNodesOf, outputFiles } from '../isolation/files.js';
import { parseComfyJson } from '../isolation/json-body.js';
import type { JobRecord, JobStore } from '../store/types.js';
import type { Backend } from './backend.js';
import type { JobObserver, JobOutcome } from '../events/event-hub.js';

/** Lookups of history entries in flight at once. */
const LOOKUPS_AT_ONCE = 8;

/** One of ComfyUI's messages of a prompt as its history entry keeps it: its type and data (with a `timestamp`, ms since the epoch). */
type HistoryMessage = [string, { timestamp?: unknown } & Record<string, unknown>];

interface HistoryEntry {
  outputs?: Record<string, unknown>;
  status?: { status_str?: unknown; messages?: HistoryMessage[] };
}

/**
 * Compares the backend's queued and running jobs in the registry with ComfyUI: the backend's event hub
 * learns which prompt runs (see runningFromQueue); a job in ComfyUI's
 * queue stays (and is `running` if ComfyUI runs it); a job with a history entry ends as that entry
 * says, with its outputs and execution seconds from the entry's messages; a job ComfyUI no longer
 * knows goes to `onLost`. Costs one `/queue` and one `/history/{id}` per job that left the queue.
 */
export async function reconcileJobs(
  backend: Backend,
  jobs: JobStore,
  observer: JobObserver,
  now: () => number,
  onLost: (job: JobRecord) => Promise<void>,
): Promise<void> {
  const sent = jobs.active(['queued', 'running']).filter((job) => job.backend === backend.name && job.upstream_id !== null);
  if (sent.length === 0) return;
  const learnRunning = backend.events.runningFromQueue();
  const queue = await getJson<{ queue_running?: unknown[][]; queue_pending?: unknown[][] }>(backend, '/api/queue');
  if (!queue) return;
  const runningNow = queue.queue_running?.[0]?.[1];
  learnRunning(typeof runningNow === 'string' ? runningNow : null);
  const running = new Set((queue.queue_running ?? []).map((item) => item[1]));
  const pending = new Set((queue.queue_pending ?? []).map((item) => item[1]));
  const gone: JobRecord[] = [];
  for (const job of sent) {
    if (running.has(job.upstream_id)) {
      if (job.status !== 'running') observer.started(job.id, job.started_at ?? now(), job.started_at === null);
    } else if (!pending.has(job.upstream_id)) {
      gone.push(job);
    }
  }
  for (let i = 0; i < gone.length; i += LOOKUPS_AT_ONCE) {
    await Promise.all(gone.slice(i, i + LOOKUPS_AT_ONCE).map((job) => settleFromHistory(backend, job, observer, now, onLost)));
  }
}

async function settleFromHistory(
  backend: Backend,
  job: JobRecord,
  observer: JobObserver,
  now: () => number,
  onLost: (job: JobRecord) => Promise<void>,
): Promise<void> {
  const entry = await historyEntryOf(backend, job.upstream_id!);
  if (entry === undefined) return;
  if (entry === null) return onLost(job);
  const messages = entry.status?.messages ?? [];
  const timeOf = (type: string): number | undefined => messageTime(messages, type);
  const startedAt = timeOf('execution_start');
  const outcome: JobOutcome = timeOf('execution_interrupted') !== undefined ? 'interrupted' : entry.status?.status_str === 'success' ? 'success' : 'error';
  const endedAt = timeOf(`execution_${outcome}`) ?? now();
  // ComfyUI's own start replaces one a comparison estimated.
  if (startedAt !== undefined && job.started_at !== startedAt) observer.started(job.id, startedAt);
  observer.cached(job.id, cachedNodesOf(messages));
  for (const [node, output] of Object.entries(entry.outputs ?? {})) {
    const known = new Set(job.outputs.map((file) => `${file.type}/${file.subfolder}/${file.filename}`));
    const unseen = outputFiles(output).filter((file) => !known.has(`${file.type}/${file.subfolder}/${file.filename}`));
    if (unseen.length > 0) observer.executed(job.id, node, { files: unseen });
  }
  const failure = messages.find(([name]) => name === 'execution_error')?.[1];
  observer.ended(
    job.id,
    outcome,
    endedAt,
    outcome === 'error'
      ? {
          message: typeof failure?.exception_message === 'string' ? failure.exception_message : 'ComfyUI reported an error.',
          node_id: typeof failure?.node_id === 'string' ? failure.node_id : null,
          node_type: typeof failure?.node_type === 'string' ? failure.node_type : null,
          exception_type: typeof failure?.exception_type === 'string' ? failure.exception_type : null,
        }
      : null,
  );
}

/**
 * The backend's history entry of a prompt, by the id ComfyUI knows it by: null when ComfyUI has none (it
 * never ran it: deleted from its queue, or unknown), undefined when ComfyUI could not be read.
 */
export async function historyEntryOf(backend: Backend, upstreamId: string): Promise<HistoryEntry | null | undefined> {
  const history = await getJson<Record<string, HistoryEntry>>(backend, `/api/history/${encodeURIComponent(upstreamId)}`);
  return history ? (history[upstreamId] ?? null) : undefined;
}

/**
 * How often a prompt's history entry is asked for at its end while ComfyUI has none, and how far apart: ComfyUI sends
 * `execution_success` from inside its executor and writes the entry once the executor has returned (main.py's
 * `task_done`), so the entry may follow the end event by a moment.
 */
const ENTRY_ATTEMPTS = 5;
const ENTRY_RETRY_MS = 100;

/**
 * When ComfyUI's history entry of a prompt that has just ended says it started (its `execution_start`, Unix seconds),
 * the entry asked for again while ComfyUI has none yet (see ENTRY_ATTEMPTS); undefined when the entry cannot be read or
 * has no start.
 */
export async function startInHistory(backend: Backend, upstreamId: string): Promise<number | undefined> {
  for (let attempt = 1; ; attempt += 1) {
    const entry = await historyEntryOf(backend, upstreamId);
    if (entry) return messageTime(entry.status?.messages ?? [], 'execution_start');
    if (entry === undefined || attempt === ENTRY_ATTEMPTS) return undefined;
    await sleep(ENTRY_RETRY_MS);
  }
}

/** The `timestamp` (ms since the epoch) of the entry's first message of `type`, in Unix seconds. */
function messageTime(messages: readonly HistoryMessage[], type: string): number | undefined {
  const stamp = messages.find(([name]) => name === type)?.[1]?.timestamp;
  return typeof stamp === 'number' ? stamp / 1000 : undefined;
}

async function getJson<T>(backend: Backend, path: string): Promise<T | undefined> {
  const answer = await backend.proxy.fetch(null, { method: 'GET', path });
  return answer.status === 200 ? (parseComfyJson(answer.body) as T | undefined) : undefined;
}
