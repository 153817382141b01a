// Reads a small JSON request body (management routes) with a size cap.

import type { IncomingMessage } from 'node:http';
import { invalidRequest } from '../errors.js';

/** Largest body a management route reads. */
export const MAX_MANAGEMENT_BODY_BYTES = 64 * 1024;

/**
 * Reads a whole body of at most `maxBytes`.
 * @throws the error `tooLarge()` makes, as soon as the body is known to be larger.
 */
export async function readBody(req: IncomingMessage, maxBytes: number, tooLarge: () => Error): Promise<Buffer> {
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Reads and parses a JSON body. An empty body gives `undefined`.
 * @throws GatewayError INVALID_REQUEST for a body over the cap or that is not JSON.
 */
export async function readJsonBody(req: IncomingMessage, maxBytes = MAX_MANAGEMENT_BODY_BYTES): Promise<unknown> {
  const text = (await readBody(req, maxBytes, () => tooLarge(maxBytes))).toString('utf8');
  if (text.trim().length === 0) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalidRequest('The body is not valid JSON.', [{ field: 'body', problem: (error as Error).message }]);
  }
}

function tooLarge(maxBytes: number) {
  return invalidRequest(`The body is larger than ${maxBytes} bytes.`, [{ field: 'body', problem: `over ${maxBytes} bytes` }]);
}
