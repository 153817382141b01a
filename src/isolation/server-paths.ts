// Server file-system paths cut out of what a user key sees of its jobs: ComfyUI's errors, its refusals of prompts and the nodes' outputs.

import { stringifyExactJson } from '../json/exact-json.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import type { JobError } from '../store/types.js';
import { isObject } from '../workflows/definition.js';
import { parseComfyJson, withJsonText } from './json-body.js';

/**
 * Where an absolute path starts: a separator (`/` or `\`, so UNC and `\\?\` paths too) that does not follow a
 * letter, digit, `_`, `.`, `-` or another separator (`a/b`, `./a` and `../a` are relative), with a file URL's
 * `file:`, a drive (`C:`) or a `~user` right before it taken in. A web URL's `//` (`https://`) starts none.
 */
const PATH_START = /(?<![\p{L}\p{N}_.\-\\/])(?:file:[\\/]+|[A-Za-z]:[\\/]|~[\p{L}\p{N}_.-]*[\\/]|(?!(?<=[A-Za-z][A-Za-z0-9+.-]+:)\/\/)[\\/])/gu;
/** PATH_START anywhere in a text, for a test of the whole text. */
const ANY_PATH_START = new RegExp(PATH_START.source, 'u');
const SEPARATORS = /[\\/]+/g;
const QUOTES = new Set(['"', "'", '`']);
/** Folders whose contents a key may see by path: a custom node's files, from `custom_nodes` on. */
const SHOWN_FROM = new Set(['custom_nodes']);
/** Folders whose contents a key may see by path after them: an installed package's files. */
const SHOWN_AFTER = new Set(['site-packages', 'dist-packages']);
/**
 * The fields of a node's output item that name its file for `/view`: relative to ComfyUI's folders, so they are shown as
 * they are (a relative name such as `batch (1)/a` could read as a path start after `)`, and cutting it would break `/view`),
 * unless one starts as an absolute path does (ABSOLUTE_NAME).
 */
const FILE_REFERENCE_FIELDS: ReadonlySet<string> = new Set(['filename', 'subfolder', 'type']);
/**
 * How a file field that is an absolute path starts: `/`, `\`, a drive (`C:\`, `C:/`) or a file URL's `file:`. ComfyUI's
 * `/view` refuses such a `subfolder` (403: its join leaves the folder) and a `filename` starting with `/` (400), and reads
 * any other `filename` by its last part alone, so cutting such a field to its last part hides where the server keeps files.
 * (On a POSIX server `C:/x` and `file:/x` are also relative folder names `/view` could serve; they are read as paths here, as
 * everywhere else in this file.)
 */
const ABSOLUTE_NAME = /^(?:[\\/]|[A-Za-z]:[\\/]|file:)/i;

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
 * `value` (parsed JSON) with every string in it, at any depth, without server paths (withoutServerPaths); object keys, and
 * the strings of fields named in `shownAsIs` that do not start as an absolute path (ABSOLUTE_NAME), stay as they are. The
 * same value when nothing changes; otherwise a copy of what changed only, so that a value others hold is never changed.
 * Walked by recursion: ComfyUI's JSON is no deeper than Python's json.dumps writes (it stops at the interpreter's recursion
 * limit, 1000 by default).
 */
export function withoutServerPathsIn(value: unknown, shownAsIs?: ReadonlySet<string>): unknown {
  if (typeof value === 'string') return withoutServerPaths(value);
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item: unknown, index) => {
      const shown = withoutServerPathsIn(item, shownAsIs);
      if (shown !== item) (copy ??= [...value])[index] = shown;
    });
    return copy ?? value;
  }
  if (!isObject(value)) return value;
  let copy: Record<string, unknown> | undefined;
  for (const [key, field] of Object.entries(value)) {
    if (shownAsIs?.has(key) && !(typeof field === 'string' && ABSOLUTE_NAME.test(field))) continue;
    const shown = withoutServerPathsIn(field, shownAsIs);
    if (shown !== field) (copy ??= { ...value })[key] = shown;
  }
  return copy ?? value;
}

/**
 * Whether a JSON text may hold a string with a server path in it: one where a path starts, or an escape (`\n`, `\u00e9`,
 * `\/`), after which the text no longer shows the string's characters as they are. A text this says no of needs no parsing.
 */
export function mayHoldServerPath(jsonText: string): boolean {
  // Every path start holds a separator: a text without `/` is not searched further.
  return jsonText.includes('\\') || (jsonText.includes('/') && ANY_PATH_START.test(jsonText));
}

/**
 * A node's UI output (`executed`'s `output`), or a prompt's `outputs` by node, as a user key is shown it: every string
 * without server paths (a custom node's `fullpath` shown as its file's name), but the file fields `/view` takes
 * (FILE_REFERENCE_FIELDS) that are not absolute paths. The same value when none changes.
 */
export function outputsShown(outputs: unknown): unknown {
  return withoutServerPathsIn(outputs, FILE_REFERENCE_FIELDS);
}

/**
 * ComfyUI's `execution_error` data as a user key is shown it: `exception_message`, each `traceback` line, the strings of
 * `current_inputs` (the failing node's inputs, objects as Python's `str()` writes them) and of a refused prompt's
 * `node_errors` without server paths (withoutServerPaths). A copy; the other fields are the same.
 */
export function executionErrorShown(data: Record<string, unknown>): Record<string, unknown> {
  const shown = { ...data };
  for (const field of ['exception_message', 'traceback', 'current_inputs', 'node_errors']) {
    if (field in data) shown[field] = withoutServerPathsIn(data[field]);
  }
  return shown;
}

/** A history entry's or job's `status.messages` (`[[event, data], …]`), each `execution_error` as a user key is shown it; changed in place. */
function showMessagesErrors(messages: unknown): void {
  if (!Array.isArray(messages)) return;
  for (const message of messages) {
    if (Array.isArray(message) && message[0] === 'execution_error' && isObject(message[1])) message[1] = executionErrorShown(message[1]);
  }
}

/** A history entry as a user key is shown it: each `execution_error` of its `status.messages` and its `outputs` (see outputsShown); changed in place. */
export function showEntryWithoutServerPaths(entry: { outputs?: unknown; status?: { messages?: unknown } }): void {
  showMessagesErrors(entry.status?.messages);
  if ('outputs' in entry) entry.outputs = outputsShown(entry.outputs);
}

/**
 * A job of ComfyUI's jobs API (`/api/jobs/{id}`, or an item of its list) as a user key is shown it: its `execution_error`,
 * `execution_status.messages`, `outputs` and `preview_output` (see outputsShown); changed in place.
 */
export function showJobWithoutServerPaths(job: Record<string, unknown>): void {
  if (isObject(job.execution_error)) job.execution_error = executionErrorShown(job.execution_error);
  if (isObject(job.execution_status)) showMessagesErrors(job.execution_status.messages);
  for (const field of ['outputs', 'preview_output']) if (field in job) job[field] = outputsShown(job[field]);
}

/** Whether a JSON text may hold an `execution_error` (it names one anywhere): only such a text needs parsing to be shown to a user key. */
export function mayHoldExecutionError(jsonText: string): boolean {
  return jsonText.includes('"execution_error"');
}

/**
 * A socket's JSON message as a user key is shown it: an `execution_error` (see executionErrorShown) and an `executed`
 * node's `output` (see outputsShown) without server paths, anything else as the same text. Only a text that names
 * such an event and may hold a path is parsed; one with nothing to cut is passed on as it came.
 */
export function eventTextShown(text: string): string {
  const mayNeedCuts = mayHoldExecutionError(text) || (text.includes('"executed"') && mayHoldServerPath(text));
  if (!mayNeedCuts) return text;
  const message = parseComfyJson(text) as { type?: unknown; data?: unknown } | undefined;
  if (!isObject(message?.data)) return text;
  const data = message.data;
  if (message.type === 'execution_error') return stringifyExactJson({ ...message, data: executionErrorShown(data) });
  if (message.type !== 'executed') return text;
  const output = outputsShown(data.output);
  return output === data.output ? text : stringifyExactJson({ ...message, data: { ...data, output } });
}

/** A job's error as a user key is shown it: its message and the strings of its node errors without server paths. */
export function jobErrorShown(error: JobError | null): JobError | null {
  if (!error) return error;
  const shown = { ...error, message: withoutServerPaths(error.message) };
  if (error.node_errors) shown.node_errors = withoutServerPathsIn(error.node_errors) as Record<string, unknown>;
  return shown;
}

/**
 * ComfyUI's answer to POST /prompt (a refusal's `{error, node_errors}`, or an accepted prompt's `node_errors` of the
 * outputs it will not run) as a user key is shown it: every string of `error` and `node_errors` without server paths,
 * as a custom node's VALIDATE_INPUTS or a loader's exception may name files by them. The same answer when none does.
 */
export function promptAnswerShown(answer: UpstreamAnswer): UpstreamAnswer {
  const text = answer.body.toString('utf8');
  if (!mayHoldServerPath(text)) return answer;
  const body = parseComfyJson(text);
  if (!isObject(body)) return answer;
  let changed = false;
  for (const field of ['error', 'node_errors']) {
    const shown = withoutServerPathsIn(body[field]);
    if (shown === body[field]) continue;
    body[field] = shown;
    changed = true;
  }
  return changed ? withJsonText(answer, Buffer.from(stringifyExactJson(body))) : answer;
}
