// Server file-system paths cut out of what a user key sees of its failed jobs: ComfyUI's exception messages and tracebacks.

import { stringifyExactJson } from '../json/exact-json.js';
import type { JobError } from '../store/types.js';
import { isObject } from '../workflows/definition.js';
import { parseComfyJson } from './json-body.js';

/**
 * Where an absolute path starts: a separator (`/` or `\`, so UNC and `\\?\` paths too) that does not follow a
 * letter, digit, `_`, `.`, `-` or another separator (`a/b`, `./a` and `../a` are relative), with a file URL's
 * `file:`, a drive (`C:`) or a `~user` right before it taken in. A web URL's `//` (`https://`) starts none.
 */
const PATH_START = /(?<![\p{L}\p{N}_.\-\\/])(?:file:[\\/]+|[A-Za-z]:[\\/]|~[\p{L}\p{N}_.-]*[\\/]|(?!(?<=[A-Za-z][A-Za-z0-9+.-]+:)\/\/)[\\/])/gu;
const SEPARATORS = /[\\/]+/g;
const QUOTES = new Set(['"', "'", '`']);
/** Folders whose contents a key may see by path: a custom node's files, from `custom_nodes` on. */
const SHOWN_FROM = new Set(['custom_nodes']);
/** Folders whose contents a key may see by path after them: an installed package's files. */
const SHOWN_AFTER = new Set(['site-packages', 'dist-packages']);

/**
 * `text` with every absolute file-system path cut to what tells a user which file failed, not where the server
 * keeps it: a custom node's file from `custom_nodes` on, an installed package's file from after `site-packages`
 * (or `dist-packages`), any other file by its last part alone. A path in quotes runs to its closing quote (a
 * quote escaped with `\` does not close it); any other runs to the end of its line, so a path with spaces is cut
 * whole, and text after it on that line may be cut with it.
 */
export function withoutServerPaths(text: string): string {
  let shown = '';
  let from = 0;
  for (const start of text.matchAll(PATH_START)) {
    if (start.index < from) continue;
    const end = endOfPath(text, start.index);
    shown += text.slice(from, start.index) + shownPath(text.slice(start.index, end));
    from = end;
  }
  return from === 0 ? text : shown + text.slice(from);
}

/** Where the path starting at `start` ends: at its closing quote when a quote opens it, otherwise at the end of its line. */
function endOfPath(text: string, start: number): number {
  const quote = text[start - 1] ?? '';
  const lineEnd = (i: number): boolean => text[i] === '\n' || text[i] === '\r';
  if (!QUOTES.has(quote)) {
    let i = start;
    while (i < text.length && !lineEnd(i)) i += 1;
    return i;
  }
  for (let i = start; i < text.length; i += 1) {
    if (lineEnd(i) || text[i] === quote) return i;
    if (text[i] === '\\' && i + 1 < text.length && !lineEnd(i + 1)) i += 1;
  }
  return text.length;
}

/** A path as a key is shown it: from its last custom_nodes folder on, or after its last site-packages folder, or else its last part. */
function shownPath(path: string): string {
  let lastPart = 0;
  let folder: { start: number; rest: number; shownFrom: boolean } | null = null;
  for (const separator of path.matchAll(SEPARATORS)) {
    const name = path.slice(lastPart, separator.index).toLowerCase();
    const rest = separator.index + separator[0].length;
    if (SHOWN_FROM.has(name) || SHOWN_AFTER.has(name)) folder = { start: lastPart, rest, shownFrom: SHOWN_FROM.has(name) };
    lastPart = rest;
  }
  if (!folder) return path.slice(lastPart);
  // What follows the folder may hold another path (a line that names two): it is cut as any text is.
  const rest = withoutServerPaths(path.slice(folder.rest));
  return folder.shownFrom ? path.slice(folder.start, folder.rest) + rest : rest;
}

/**
 * ComfyUI's `execution_error` data as a user key is shown it: `exception_message` and each `traceback` line
 * without server paths (withoutServerPaths). A copy; the other fields are the same.
 */
export function executionErrorShown(data: Record<string, unknown>): Record<string, unknown> {
  const shown = { ...data };
  if (typeof data.exception_message === 'string') shown.exception_message = withoutServerPaths(data.exception_message);
  if (Array.isArray(data.traceback)) shown.traceback = data.traceback.map((line: unknown) => (typeof line === 'string' ? withoutServerPaths(line) : line));
  return shown;
}

/** A history entry's or job's `status.messages` (`[[event, data], …]`), each `execution_error` as a user key is shown it; changed in place. */
export function showMessagesErrors(messages: unknown): void {
  if (!Array.isArray(messages)) return;
  for (const message of messages) {
    if (Array.isArray(message) && message[0] === 'execution_error' && isObject(message[1])) message[1] = executionErrorShown(message[1]);
  }
}

/** A job of ComfyUI's jobs API (`/api/jobs/{id}`, or an item of its list) as a user key is shown it: its `execution_error` and `execution_status.messages`; changed in place. */
export function showJobErrors(job: Record<string, unknown>): void {
  if (isObject(job.execution_error)) job.execution_error = executionErrorShown(job.execution_error);
  if (isObject(job.execution_status)) showMessagesErrors(job.execution_status.messages);
}

/** Whether a JSON text may hold an `execution_error` (it names one anywhere): only such a text needs parsing to be shown to a user key. */
export function mayHoldExecutionError(jsonText: string): boolean {
  return jsonText.includes('"execution_error"');
}

/** A socket's JSON message as a user key is shown it: an `execution_error` without server paths, anything else as it is. */
export function eventTextShown(text: string): string {
  if (!mayHoldExecutionError(text)) return text;
  const message = parseComfyJson(text) as { type?: unknown; data?: unknown } | undefined;
  if (message?.type !== 'execution_error' || !isObject(message.data)) return text;
  return stringifyExactJson({ ...message, data: executionErrorShown(message.data) });
}

/** A job's error as a user key is shown it: its message without server paths. */
export function jobErrorShown(error: JobError | null): JobError | null {
  return error && { ...error, message: withoutServerPaths(error.message) };
}
