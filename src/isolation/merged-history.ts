// An admin's GET /history with several backends: each backend's part of the window, merged in the order the prompts finished.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PoolBackend } from '../backends/backend-pool.js';
import { asKeyKnowsIt, getUpstream, jobOfUpstreamId, recordPromptOutputs, type IsolatedCaller, type IsolationContext } from './context.js';
import { invalidRequest } from '../errors.js';
import { askEach } from './each-backend.js';
import { DEFAULT_HISTORY_WINDOW } from './history-window.js';
import { parseComfyJson, relayAnswer, relayJson } from './json-body.js';
import { redactQueueItem } from './redact.js';

/** The largest merged window an admin may ask for (entries from the newest, or from the start with the offset). */
export const MAX_MERGED_WINDOW = 1000;

interface Entry {
  prompt?: unknown;
  status?: { messages?: Array<[string, { timestamp?: unknown }]> };
}

/** A history entry of one backend, with the id its key knows it by and when it finished. */
interface Placed {
  id: string;
  entry: Entry;
  finishedAt: number;
  /** The backend's own order, which breaks ties. */
  order: number;
}

/**
 * ComfyUI writes a prompt's history entry when it finishes, so its history is in the order prompts
 * finished; windowed by `max_items` and `offset` as ComfyUI windows it (the newest `max_items` by
 * default, or `max_items` from the `offset`-th oldest). Each backend is asked for the part of its
 * history the merged window can take (at most `offset + max_items` entries from its start or its
 * newest `max_items`), so the cost is the window's times the number of backends. The entries are
 * parsed on the request thread, so the window is bounded: without `max_items` it is the newest
 * DEFAULT_HISTORY_WINDOW, and `offset + max_items` may not pass MAX_MERGED_WINDOW.
 * @throws GatewayError 400 for a window past MAX_MERGED_WINDOW
 */
export async function getMergedHistory(
  ctx: IsolationContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  path: string,
  offset: number,
  asked: number | undefined,
): Promise<void> {
  const fromStart = offset >= 0;
  const maxItems = asked ?? DEFAULT_HISTORY_WINDOW;
  if ((fromStart ? offset : 0) + maxItems > MAX_MERGED_WINDOW) {
    throw invalidRequest(`With several backends, an admin's history window is at most ${MAX_MERGED_WINDOW} entries: ask for fewer, page by page.`, [
      { field: 'max_items', problem: `offset + max_items is over ${MAX_MERGED_WINDOW}` },
    ]);
  }
  const query = new URLSearchParams();
  query.set('max_items', String(fromStart ? offset + maxItems : maxItems));
  if (fromStart) query.set('offset', '0');
  const target = query.size > 0 ? `${path}?${query}` : path;
  const answers = await askEach(ctx.pool.all, (backend) => getUpstream(backend, req, caller, target));
  const entries: Placed[] = [];
  for (const { backend, value: answer } of answers) {
    const history = answer.status === 200 ? parseComfyJson(answer.body) : undefined;
    if (typeof history !== 'object' || history === null || Array.isArray(history)) return relayAnswer(res, answer);
    entries.push(...placedEntries(ctx, backend, history as Record<string, Entry>));
  }
  entries.sort((a, b) => a.finishedAt - b.finishedAt || a.order - b.order);
  const start = fromStart ? offset : Math.max(0, entries.length - maxItems);
  const window = entries.slice(start, start + maxItems);
  relayJson(res, answers[0]!.value, Object.fromEntries(window.map(({ id, entry }) => [id, entry])));
}

/** One backend's entries as their keys know them (secrets removed), with the time each finished. */
function placedEntries(ctx: IsolationContext, backend: PoolBackend, history: Record<string, Entry>): Placed[] {
  return Object.entries(history).map(([upstreamId, entry], order) => {
    const job = jobOfUpstreamId(ctx, backend, upstreamId);
    asKeyKnowsIt(entry?.prompt, job);
    redactQueueItem(entry?.prompt);
    if (!job) void recordPromptOutputs(ctx, upstreamId, entry).catch(() => undefined);
    return { id: job?.id ?? upstreamId, entry, finishedAt: finishedAt(entry) ?? job?.finished_at ?? 0, order };
  });
}

/** The time of an entry's last status message (its end), in Unix seconds. */
function finishedAt(entry: Entry | null): number | undefined {
  const stamps = (entry?.status?.messages ?? []).map(([, data]) => data?.timestamp).filter((stamp): stamp is number => typeof stamp === 'number');
  return stamps.length > 0 ? Math.max(...stamps) / 1000 : undefined;
}
