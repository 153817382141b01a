// GET /system_stats: one healthy backend's stats without argv for user keys; for admin keys with several backends, every backend's.

import { upstreamUnreadable } from '../errors.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { UpstreamAnswer } from '../proxy/http.js';
import type { IsolatedCaller, IsolationContext } from './context.js';
import { askEach } from './each-backend.js';
import { parseComfyJson, relayAnswer, relayJson } from './json-body.js';

/** ComfyUI's answer: `system` (versions, RAM, argv) and `devices` (GPUs and their memory). */
interface SystemStats {
  system: Record<string, unknown>;
  devices: unknown[];
  [other: string]: unknown;
}

/**
 * A user key gets one healthy backend's stats without the `argv` ComfyUI was started with (it can hold
 * paths and secrets). An admin key gets them as ComfyUI sends them; with several backends, merged: the
 * `system` of the first backend that answered, every backend's `devices` (each with its `backend`), and
 * `backends: [{name, system, devices}]`.
 */
export async function getSystemStats(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  if (!caller.seesAll) return statsWithoutArgv(ctx, req, res, caller);
  if (!ctx.pool.several) return ctx.pool.any().proxy.forward(req, res, { headers: caller.upstreamHeaders });
  const answers = await askEach(ctx.pool.all, (backend) => backend.proxy.fetch(req, { headers: caller.upstreamHeaders }));
  const backends = answers.flatMap(({ backend, value }) => {
    const stats = statsOf(value);
    return stats ? [{ name: backend.name, answer: value, stats }] : [];
  });
  const first = backends[0];
  if (!first) return relayAnswer(res, answers[0]!.value);
  relayJson(res, first.answer, {
    ...first.stats,
    devices: backends.flatMap(({ name, stats }) =>
      stats.devices.map((device) => (typeof device === 'object' && device !== null ? { ...device, backend: name } : device)),
    ),
    backends: backends.map(({ name, stats }) => ({ name, system: stats.system, devices: stats.devices })),
  });
}

async function statsWithoutArgv(ctx: IsolationContext, req: IncomingMessage, res: ServerResponse, caller: IsolatedCaller): Promise<void> {
  const answer = await ctx.pool.any().proxy.fetch(req, { headers: caller.upstreamHeaders });
  if (answer.status !== 200) return relayAnswer(res, answer);
  const stats = parseComfyJson(answer.body) as { system?: Record<string, unknown> } | undefined;
  if (stats === undefined) throw upstreamUnreadable();
  if (!stats.system) return relayAnswer(res, answer);
  delete stats.system.argv;
  relayJson(res, answer, stats);
}

/** The stats of a 200 answer, or undefined when it is anything else. */
function statsOf(answer: UpstreamAnswer): SystemStats | undefined {
  const stats = answer.status === 200 ? (parseComfyJson(answer.body) as Partial<SystemStats> | undefined) : undefined;
  if (typeof stats?.system !== 'object' || stats.system === null || !Array.isArray(stats.devices)) return undefined;
  return stats as SystemStats;
}
