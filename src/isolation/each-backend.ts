// Requests that go to several backends at once: one per backend, their answers combined into the one the client gets.

import type { ServerResponse } from 'node:http';
import type { PoolBackend } from '../backends/backend-pool.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import { relayAnswer } from './json-body.js';

/**
 * Sends one request per group (the ids of a backend) at once and resolves their answers, in the groups' order.
 * `settle`, when given, runs for each group with its answer before this resolves, so that what ComfyUI did is
 * recorded before the client gets an answer. A backend that cannot be reached fails the whole request (502/504).
 */
export async function sendToEach<T>(
  groups: ReadonlyMap<PoolBackend, T>,
  send: (backend: PoolBackend, group: T) => Promise<UpstreamAnswer>,
  settle?: (backend: PoolBackend, group: T, answer: UpstreamAnswer) => Promise<void>,
): Promise<UpstreamAnswer[]> {
  const sent = [...groups];
  const answers = await Promise.all(sent.map(([backend, group]) => send(backend, group)));
  if (settle) await Promise.all(sent.map(([backend, group], i) => settle(backend, group, answers[i]!)));
  return answers;
}

/** The one answer of several the client gets: the first that is not a success, else the first. */
export function oneAnswerOf(answers: readonly UpstreamAnswer[]): UpstreamAnswer {
  return answers.find((answer) => answer.status >= 300) ?? answers[0]!;
}

/** Sends one request per group (see sendToEach) and relays one answer (see oneAnswerOf). */
export async function forwardToEach<T>(
  res: ServerResponse,
  groups: ReadonlyMap<PoolBackend, T>,
  send: (backend: PoolBackend, group: T) => Promise<UpstreamAnswer>,
  settle?: (backend: PoolBackend, group: T, answer: UpstreamAnswer) => Promise<void>,
): Promise<void> {
  relayAnswer(res, oneAnswerOf(await sendToEach(groups, send, settle)));
}

/**
 * Asks each backend that is not confirmed down at once. A backend that fails is left out, so that one
 * dead backend does not take every listing down with it; when all fail (or every backend is confirmed
 * down, and all are asked), the first failure is thrown.
 */
export async function askEach<T>(
  backends: readonly PoolBackend[],
  ask: (backend: PoolBackend) => Promise<T>,
): Promise<Array<{ backend: PoolBackend; value: T }>> {
  const alive = backends.filter((backend) => !backend.isDown());
  const asked = alive.length > 0 ? alive : backends;
  const settled = await Promise.allSettled(asked.map(ask));
  const values = settled.flatMap((result, i) => (result.status === 'fulfilled' ? [{ backend: asked[i]!, value: result.value }] : []));
  const failure = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (values.length === 0 && failure) throw failure.reason;
  return values;
}
