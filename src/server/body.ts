// Reads a small JSON request body (management routes) with a size cap.

import type { IncomingMessage } from 'node:http';
import { invalidRequest } from '../errors.js';

/** Largest body a management route reads. */
export const MAX_MANAGEMENT_BODY_BYTES = 64 * 1024;

/**
 * Reads a whole body of at most `maxBytes`, from the stream's events: an async iterator over the
 * request made promises and listeners for every chunk of every prompt.
 * @throws the error `tooLarge()` makes, as soon as the body is known to be larger (the rest is left
 * unread, and the connection closes after the answer); the stream's error when it fails or the client
 * goes away before its end.
 */
export function readBody(req: IncomingMessage, maxBytes: number, tooLarge: () => Error): Promise<Buffer> {
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) return Promise.reject(tooLarge());
  // Read already (no more events will come): nothing left, as an iterator would find.
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const stop = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total <= maxBytes) return void chunks.push(chunk);
      stop();
      req.pause();
      reject(tooLarge());
    };
    const onEnd = (): void => {
      stop();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
    };
    const onError = (error: Error): void => {
      stop();
      reject(error);
    };
    const onClose = (): void => onError(new Error('the client went away before the end of its body'));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}

/**
 * Reads and parses a JSON body (with `parse`: JsonRewriter.parseBody keeps numbers as their texts say). An empty body gives `undefined`.
 * @throws GatewayError INVALID_REQUEST for a body over the cap or that is not JSON (`parse` threw a SyntaxError); any other error of `parse`.
 */
export async function readJsonBody(
  req: IncomingMessage,
  maxBytes = MAX_MANAGEMENT_BODY_BYTES,
  parse: (text: string) => unknown = JSON.parse,
): Promise<unknown> {
  const text = (await readBody(req, maxBytes, () => tooLarge(maxBytes))).toString('utf8');
  if (text.trim().length === 0) return undefined;
  try {
    return await parse(text);
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    throw invalidRequest('The body is not valid JSON.', [{ field: 'body', problem: (error as Error).message }]);
  }
}

function tooLarge(maxBytes: number) {
  return invalidRequest(`The body is larger than ${maxBytes} bytes.`, [{ field: 'body', problem: `over ${maxBytes} bytes` }]);
}
