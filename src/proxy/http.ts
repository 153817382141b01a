// Forwards an HTTP request to ComfyUI and streams the answer back, bodies never buffered.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool, errors as undiciErrors } from 'undici';
import { type GatewayError, upstreamTimeout, upstreamUnavailable } from '../errors.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.js';

export interface HttpProxyOptions {
  upstream: URL;
  /** How long to wait for ComfyUI's response headers. */
  headersTimeoutMs: number;
}

export interface HttpProxy {
  /**
   * Sends `req` to ComfyUI and pipes the response to `res`; the request target goes byte for byte.
   * Resolves when the response has been handed over.
   * @throws GatewayError UPSTREAM_UNAVAILABLE (502) or UPSTREAM_TIMEOUT (504) when no response began.
   */
  forward(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Asks ComfyUI for `path` and resolves its status, or rejects when it does not answer. */
  probe(path: string, timeoutMs: number): Promise<number>;
  close(): Promise<void>;
}

/** A connection pool to ComfyUI (undici): keep-alive, one request per connection at a time. */
export function createHttpProxy(options: HttpProxyOptions): HttpProxy {
  const upstreamOrigin = options.upstream.origin;
  const pool = new Pool(upstreamOrigin, {
    connections: 256,
    headersTimeout: options.headersTimeoutMs,
    // Downloads and long-polls may pause; a stalled body is cut only after the same wait as the headers.
    bodyTimeout: options.headersTimeoutMs,
    keepAliveTimeout: 10_000,
  });

  async function forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const abort = new AbortController();
    const onClientGone = (): void => {
      if (!res.writableFinished) abort.abort();
    };
    res.once('close', onClientGone);
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
    let response;
    try {
      response = await pool.request({
        path: req.url!,
        method: req.method!,
        headers: upstreamRequestHeaders(req, upstreamOrigin),
        body: hasBody ? req : null,
        signal: abort.signal,
      });
    } catch (error) {
      if (abort.signal.aborted) return;
      throw toGatewayError(error);
    }
    const { statusCode, headers, body } = response;
    body.once('error', () => res.destroy());
    res.writeHead(statusCode, downstreamResponseHeaders(headers));
    body.pipe(res);
  }

  async function probe(path: string, timeoutMs: number): Promise<number> {
    const { statusCode, body } = await pool.request({ path, method: 'GET', headersTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
    await body.dump();
    return statusCode;
  }

  return { forward, probe, close: () => pool.close() };
}

/** Maps a failure to reach ComfyUI to the client's error: timeouts are 504, everything else 502. */
function toGatewayError(error: unknown): GatewayError {
  if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.ConnectTimeoutError) {
    return upstreamTimeout(error);
  }
  return upstreamUnavailable(error);
}
