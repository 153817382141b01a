// A job's kept request whose body this process serialized itself: a file may then hold that body as raw JSON instead of a string.

import { stringifyExactJson } from '../json/exact-json.js';

/** Requests whose `body` is JSON text made by `stringifyExactJson` here; a request read, copied or made any other way is not among them. */
const serializedHere = new WeakSet<object>();

/**
 * `request` with its `body` turned into JSON text (its numbers as the client wrote them), frozen, and known to hold valid JSON (`hasJsonTextBody`).
 * @example const request = withJsonTextBody({ body: { prompt: {} }, headers: {} }); // body: '{"prompt":{}}'
 */
export function withJsonTextBody<R extends { body: object }>(request: R): Readonly<Omit<R, 'body'> & { body: string }> {
  // Built up from a literal, not spread: V8 gives a frozen copy made by spreading a map of its own, so every job holding
  // one would have a shape no other job has, and each place that reads jobs would look its fields up the slowest way.
  const kept: Record<string, unknown> = { body: stringifyExactJson(request.body) };
  for (const name of Object.keys(request)) if (name !== 'body') kept[name] = request[name as keyof R];
  serializedHere.add(Object.freeze(kept));
  return kept as Omit<R, 'body'> & { body: string };
}

/** Whether `request` is one `withJsonTextBody` made, so its body is valid JSON text that may be written into JSON raw. */
export function hasJsonTextBody(request: object): request is { body: string } {
  return serializedHere.has(request);
}
