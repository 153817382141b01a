// A job's kept request whose body this process serialized itself: a file may then hold that body as raw JSON instead of a string.

/** Requests whose `body` is JSON text made by `JSON.stringify` here; a request read, copied or made any other way is not among them. */
const serializedHere = new WeakSet<object>();

/**
 * `request` with its `body` turned into JSON text, frozen, and known to hold valid JSON (`hasJsonTextBody`).
 * @example const request = withJsonTextBody({ body: { prompt: {} }, headers: {} }); // body: '{"prompt":{}}'
 */
export function withJsonTextBody<R extends { body: object }>(request: R): Readonly<Omit<R, 'body'> & { body: string }> {
  const kept = Object.freeze({ ...request, body: JSON.stringify(request.body) });
  serializedHere.add(kept);
  return kept;
}

/** Whether `request` is one `withJsonTextBody` made, so its body is valid JSON text that may be written into JSON raw. */
export function hasJsonTextBody(request: object): request is { body: string } {
  return serializedHere.has(request);
}
