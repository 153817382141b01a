// Node definitions as a user key gets them: the loaders' lists of ComfyUI's input files left empty, since they name every key's uploads.

import { upstreamUnreadable } from '../errors.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import { parseComfyJson, withJsonText } from './json-body.js';
import { FILE_LISTING_INPUTS } from './loaded-files.js';
import { stringifyExactJson } from '../json/exact-json.js';

/** Whether a catalog target is node definitions (`/object_info`, one class's or all), with or without `/api`. */
export function isNodeDefinitions(path: string): boolean {
  return /^(?:\/api)?\/object_info(?:\/|$)/.test(path);
}

/**
 * ComfyUI's node definitions with the option lists of the loaders' file inputs (FILE_LISTING_INPUTS)
 * emptied, in both forms ComfyUI writes a combo in: `[[options], {...}]` and `["COMBO", {options}]`.
 * A user key picks its own files by name (the web UI adds the files it uploads); the list would tell it
 * every other key's upload names. Anything that is not node definitions is returned as it is.
 */
export function withoutListedFiles(answer: UpstreamAnswer): UpstreamAnswer {
  if (answer.status !== 200) return answer;
  const definitions = parseComfyJson(answer.body);
  if (definitions === undefined) throw upstreamUnreadable();
  if (typeof definitions !== 'object' || definitions === null) return answer;
  for (const [classType, names] of FILE_LISTING_INPUTS) {
    const input = (definitions as Record<string, { input?: Record<string, Record<string, unknown> | undefined> } | undefined>)[classType]?.input;
    for (const group of [input?.required, input?.optional]) for (const name of names) emptyOptions(group?.[name]);
  }
  return withJsonText(answer, Buffer.from(stringifyExactJson(definitions)));
}

/** Empties a combo input's options in place; leaves any other input spec alone. */
function emptyOptions(spec: unknown): void {
  if (!Array.isArray(spec)) return;
  if (Array.isArray(spec[0])) spec[0] = [];
  else if (spec[0] === 'COMBO' && typeof spec[1] === 'object' && spec[1] !== null && Array.isArray((spec[1] as { options?: unknown }).options)) {
    (spec[1] as { options: unknown[] }).options = [];
  }
}
