// Writing JSON answers and errors, on HTTP responses and on sockets whose WebSocket upgrade is refused.

import type { ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { GatewayError, internalError } from '../errors.js';
import { stringifyExactJson } from '../json/exact-json.js';
import { NO_SNIFF } from './security-headers.js';

/** Sends `body` as JSON with `status`, each ExactNumber as its own text (see stringifyExactJson). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = stringifyExactJson(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...NO_SNIFF,
  });
  res.end(text);
}

/** Bytes gathered before a streamed answer writes them and lets other work run. */
const STREAM_CHUNK_BYTES = 64 * 1024;

/**
 * Sends a JSON answer made of `parts` (whose concatenation is the JSON text) as a stream: written a
 * chunk at a time, waiting while the client reads slowly, with a turn of the event loop between
 * chunks, so a large answer neither sits in memory whole nor holds up other requests. Stops early
 * when the client goes away.
 */
export async function sendJsonStream(res: ServerResponse, status: number, parts: Iterable<string>): Promise<void> {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...NO_SNIFF });
  if (res.req?.method === 'HEAD') {
    res.end();
    return;
  }
  let chunk = '';
  for (const part of parts) {
    chunk += part;
    if (chunk.length < STREAM_CHUNK_BYTES) continue;
    if (res.destroyed) return;
    if (!res.write(chunk)) await drainedOrClosed(res);
    chunk = '';
    await nextTurn();
  }
  if (!res.destroyed) res.end(chunk);
}

function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Turns any error into the client's answer: a GatewayError as itself, anything else as a bare 500. */
export function asGatewayError(error: unknown): GatewayError {
  return error instanceof GatewayError ? error : internalError(error);
}

/** Watches for the client going away before its answer is sent: `signal` aborts then (at once if it is gone already), until `stop`. */
export function watchClientGone(res: ServerResponse): { signal: AbortSignal; stop(): void } {
  const gone = new AbortController();
  const hungUp = (): void => {
    if (!res.writableFinished) gone.abort(new Error('the client went away'));
  };
  res.once('close', hungUp);
  if (res.destroyed) hungUp();
  return { signal: gone.signal, stop: () => res.off('close', hungUp) };
}

/** Answers with an error, or cuts the connection if the response has already begun. */
export function sendError(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const gatewayError = asGatewayError(error);
  sendJson(res, gatewayError.status, gatewayError.toBody(), gatewayError.headers);
}

/** Refuses a WebSocket upgrade with an HTTP error response, then closes the socket. */
export function rejectUpgrade(socket: Duplex, error: unknown, extraHeaders: Record<string, string> = {}): void {
  const gatewayError = asGatewayError(error);
  const body = JSON.stringify(gatewayError.toBody());
  const headers = { ...gatewayError.headers, ...extraHeaders };
  const lines = [
    `HTTP/1.1 ${gatewayError.status} ${STATUS_CODES[gatewayError.status] ?? ''}`,
    'Content-Type: application/json; charset=utf-8',
    'X-Content-Type-Options: nosniff',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  if (socket.writable) socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
  socket.destroySoon?.();
}

declare module 'node:stream' {
  interface Duplex {
    destroySoon?: () => void;
  }
}
