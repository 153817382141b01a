// A job's kept request whose body this process serialized itself: a file may then hold that body as raw JSON instead of a string.

import { stringifyExactJson } from '../json/exact-json.js';

/** Requests whose `body` is JSON text made by `stringifyExactJson` here; a request read, copied or made any other way is not among them. */
const serializedHere = new WeakSet<object>();

/**
 * `request` with its `body` turned into JSON text (its numbers as the client wrote them), frozen, and known to hold valid JSON (`hasJsonTextBody`).
 * @example const request = withJsonTextBody({ body: { prompt: {} }, headers: {} }); // body: '{"prompt":{}}'
 */
export function withJsonTextBody<R extends { body: object }>(request: R): Readonly<Omit<R, 'body'> & { body: string }> {
  const kept = Object.freeze({ ...request, body: stringifyExactJson(request.body) });
  serializedHere.add(kept);
  return kept;
}

/** Whether `request` is one `withJsonTextBody` made, so its body is valid JSON text that may be written into JSON raw. */
export function hasJsonTextBody(request: object): request is { body: string } {
  return serializedHere.has(request);
}
