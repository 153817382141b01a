// Reading and answering JSON on routes where the gateway rewrites what goes to or comes from ComfyUI.

import type { ServerResponse } from 'node:http';
import type { OutgoingHeaders } from '../proxy/headers.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import { parseExactJson, stringifyExactJson } from '../json/exact-json.js';

/** Parses JSON with its numbers as their texts say (see parseExactJson), or returns undefined when the text is not JSON. */
export function parseJsonOrUndefined(body: Buffer | string): unknown {
  try {
    return parseExactJson(body.toString());
  } catch {
    return undefined;
  }
}

/** Undefined for the SyntaxError of a body that is not JSON (as parseJsonOrUndefined reads it); any other error is thrown again. */
export function undefinedIfNotJson(error: unknown): undefined {
  if (error instanceof SyntaxError) return undefined;
  throw error;
}

/**
 * Parses a JSON answer or event of ComfyUI's. Python's json.dumps writes NaN, Infinity and -Infinity,
 * which JSON.parse refuses (a FLOAT input given as "nan" is NaN in ComfyUI's queue and history from then
 * on): outside strings they read as null. Numbers are read as Python wrote them (see parseExactJson), or with
 * `parse` given as JSON.parse as doubles, where the value is only read (ComfyUI's events, relayed as they came).
 * Undefined when the text is not JSON even so.
 */
export function parseComfyJson(body: Buffer | string, parse: (text: string) => unknown = parseExactJson): unknown {
  const text = body.toString();
  try {
    return parse(text);
  } catch {
    try {
      return parse(text.replace(STRING_OR_PYTHON_NUMBER, (match) => (match.startsWith('"') ? match : 'null')));
    } catch {
      return undefined;
    }
  }
}

/** A JSON string (skipped whole), or one of the words Python writes for numbers JSON has not. */
const STRING_OR_PYTHON_NUMBER = /"[^"\\]*(?:\\.[^"\\]*)*"|-?Infinity|NaN/g;

/** Sends ComfyUI's answer unchanged. */
export function relayAnswer(res: ServerResponse, answer: UpstreamAnswer): void {
  res.writeHead(answer.status, copiedHeaders(answer.headers, 'content-length', String(answer.body.length)));
  res.end(answer.body);
}

/** Headers that describe a body as ComfyUI sent it, and not one the gateway wrote instead. */
const OLD_BODY_HEADERS: ReadonlySet<string> = new Set(['content-encoding', 'etag']);

/**
 * A copy of `headers` with `name` set to `value`, and without `dropped`. Copied name by name: V8 gives a spread copy
 * that gains a member its source lacks a shape of its own, every time, which every later reader of it then pays for.
 */
function copiedHeaders(headers: OutgoingHeaders, name: string, value: string, dropped?: ReadonlySet<string>): OutgoingHeaders {
  const copy: OutgoingHeaders = {};
  for (const header in headers) if (header !== name && !dropped?.has(header)) copy[header] = headers[header]!;
  copy[name] = value;
  return copy;
}

/** Sends ComfyUI's answer with a rewritten JSON body, keeping its status and other headers. */
export function relayJson(res: ServerResponse, answer: UpstreamAnswer, body: unknown): void {
  relayAnswer(res, withJsonText(answer, Buffer.from(stringifyExactJson(body))));
}

/** ComfyUI's answer with `text` (JSON in UTF-8) as its body: its status and headers, but for those that described the old body. */
export function withJsonText(answer: UpstreamAnswer, text: Buffer): UpstreamAnswer {
  return { status: answer.status, headers: copiedHeaders(answer.headers, 'content-type', 'application/json; charset=utf-8', OLD_BODY_HEADERS), body: text };
}

/** An empty 200, as ComfyUI answers POST /interrupt, /queue and /history. */
export function emptyOk(res: ServerResponse): void {
  res.writeHead(200, { 'content-length': '0' });
  res.end();
}

/** An empty 404, exactly as ComfyUI answers /view for a file that does not exist. */
export function emptyNotFound(res: ServerResponse): void {
  res.writeHead(404, { 'content-length': '0' });
  res.end();
}
