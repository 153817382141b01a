// ComfyUI's node replacements as prompt checks read them: parsed once per catalog answer, the last ones read kept for when ComfyUI cannot answer, every backend's together.

import { upstreamUnreadable } from '../errors.js';
import { mergeNodeReplacements, parseNodeReplacements, type NodeReplacements } from '../policy/node-replacements.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import { parseComfyJson } from './json-body.js';

/**
 * Reads the replacements from `load` (GET /node_replacements, kept with the catalog answers, a release
 * without them answering 404 as `{}`), parsing each answer once. When ComfyUI cannot be asked or answers
 * with an error (or with a body that is not a JSON object: a proxy's page), the replacements last read stand in: a prompt checked then is checked as the last
 * answer said, and held prompts still go in while every backend is down. With none read yet, the
 * failure is thrown: a user key's prompt is never checked as if no node were replaced.
 * @throws as `load`; GatewayError 502 UPSTREAM_UNREADABLE for an error answer or one that is not a JSON object
 */
export function knownNodeReplacements(load: () => Promise<UpstreamAnswer>): () => Promise<NodeReplacements> {
  let last: { answer: UpstreamAnswer; replacements: NodeReplacements } | null = null;
  return async () => {
    let answer: UpstreamAnswer;
    try {
      answer = await load();
    } catch (error) {
      if (last) return last.replacements;
      throw error;
    }
    if (answer === last?.answer) return last.replacements;
    const body = answer.status === 200 ? parseComfyJson(answer.body) : undefined;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      if (last) return last.replacements;
      throw upstreamUnreadable();
    }
    last = { answer, replacements: parseNodeReplacements(body) };
    return last.replacements;
  };
}

/**
 * The replacements of every backend together (see mergeNodeReplacements), each read by its own reader (see
 * knownNodeReplacements): a prompt may run on any backend, and backends may run different custom nodes. A
 * backend whose replacements were never read (down since the gateway started) is left out until it answers;
 * when no backend's were ever read, the first failure is thrown. The merge is made again only when a
 * backend's replacements changed.
 * @throws as the readers, when every one fails
 */
export function everyBackendsReplacements(readers: ReadonlyArray<() => Promise<NodeReplacements>>): () => Promise<NodeReplacements> {
  if (readers.length === 1) return readers[0]!;
  let last: { each: NodeReplacements[]; merged: NodeReplacements } | null = null;
  return async () => {
    const settled = await Promise.allSettled(readers.map((read) => read()));
    const each = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    if (each.length === 0) throw (settled[0] as PromiseRejectedResult).reason;
    if (last?.each.length !== each.length || last.each.some((replacements, i) => replacements !== each[i])) {
      last = { each, merged: mergeNodeReplacements(each) };
    }
    return last.merged;
  };
}
