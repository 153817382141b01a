// Forwards an HTTP request to ComfyUI: streamed both ways, or buffered when the gateway must read or rewrite the answer.

import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { socketHost } from '../auth/host-names.js';
import { GatewayError, upstreamTimeout, upstreamUnavailable } from '../errors.js';
import { DownloadConnections } from './download-connections.js';
import { streamDownload } from './download.js';
import { downstreamResponseHeaders, upstreamRequestHeaders, type OutgoingHeaders } from './headers.js';
import { requestHead } from './http1-head.js';

export interface HttpProxyOptions {
  upstream: URL;
  /** How long to wait for ComfyUI's response headers. */
  headersTimeoutMs: number;
  /** Origins allowed to frame ComfyUI's pages (see downstreamResponseHeaders); empty: none. */
  frameAncestors?: readonly string[];
}

/** Changes to the request as ComfyUI will see it. */
export interface UpstreamOverrides {
  method?: string;
  /** The request target; defaults to the client's, byte for byte. */
  path?: string;
  /** A replacement body (the client's body is then not read); a stream keeps the client's length headers, so it must have the client's length. */
  body?: Buffer | string | Readable;
  /** Headers to set (a value of null removes the header). */
  headers?: Readonly<Record<string, string | null>>;
  /** For `fetch`: how long the whole answer may take (default twice the headers timeout). */
  timeoutMs?: number;
  /** For `fetch`: the largest answer read (default `MAX_BUFFERED_BYTES`); a larger one is cut and refused with 502. */
  maxBytes?: number;
}

/** A buffered answer from ComfyUI. */
export interface UpstreamAnswer {
  status: number;
  headers: OutgoingHeaders;
  body: Buffer;
}

export interface HttpProxy {
  /**
   * Sends `req` to ComfyUI and pipes the response to `res`. Resolves when the response has been handed over.
   * @throws GatewayError UPSTREAM_UNAVAILABLE (502) or UPSTREAM_TIMEOUT (504) when no response began.
   */
  forward(req: IncomingMessage, res: ServerResponse, overrides?: UpstreamOverrides): Promise<void>;
  /**
   * As `forward`, for a GET whose answer may be big (a file), or its HEAD: over plain HTTP, the answer
   * is streamed over a download connection into reused buffers (see streamDownload); any other
   * request, or an answer without a length, goes through the pool as `forward` sends it.
   */
  download(req: IncomingMessage, res: ServerResponse, overrides?: UpstreamOverrides): Promise<void>;
  /**
   * Sends `req` (as changed by `overrides`) and reads the whole answer, up to `MAX_BUFFERED_BYTES`. With
   * `req` null, the gateway asks on its own behalf: `overrides` must give the method and path.
   * @throws GatewayError 502/504 as `forward`, and 502 for an answer too large to buffer.
   */
  fetch(req: IncomingMessage | null, overrides?: UpstreamOverrides): Promise<UpstreamAnswer>;
  /** Asks ComfyUI for `path` (GET, or HEAD) and resolves its status, or rejects when it does not answer. */
  probe(path: string, timeoutMs: number, method?: 'GET' | 'HEAD'): Promise<number>;
  close(): Promise<void>;
}

/** Largest ComfyUI answer the gateway reads whole (history and queue listings). */
const MAX_BUFFERED_BYTES = 256 * 1024 * 1024;

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

  /** The headers and body to send to ComfyUI: the client's, as `overrides` change them. */
  function requestParts(req: IncomingMessage | null, overrides: UpstreamOverrides): { headers: OutgoingHeaders; body: Readable | Buffer | string | null } {
    const headers = req ? upstreamRequestHeaders(req, upstreamOrigin) : {};
    const changes = overrides.headers;
    for (const name in changes) {
      const value = changes[name];
      if (value === null) delete headers[name];
      else if (value !== undefined) headers[name] = value;
    }
    let body: Readable | Buffer | string | null;
    if (overrides.body instanceof Readable) {
      body = overrides.body;
    } else if (overrides.body !== undefined) {
      body = overrides.body;
      delete headers['transfer-encoding'];
      headers['content-length'] = String(Buffer.byteLength(overrides.body));
    } else {
      const hasBody = req !== null && (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0');
      body = hasBody ? req : null;
    }
    return { headers, body };
  }

  function forward(req: IncomingMessage, res: ServerResponse, overrides: UpstreamOverrides = {}): Promise<void> {
    const { headers, body } = requestParts(req, overrides);
    return forwardParts(res, overrides.method ?? req.method!, overrides.path ?? req.url!, headers, body);
  }

  function forwardParts(res: ServerResponse, method: string, path: string, headers: OutgoingHeaders, body: Readable | Buffer | string | null): Promise<void> {
    return new Promise((resolve, reject) => {
      const handler = new ForwardHandler(res, options.frameAncestors, resolve, reject);
      // undici closes the connection after every HEAD by default (for servers that wrongly send a body); ComfyUI's aiohttp never does, so it is kept.
      pool.dispatch(method === 'HEAD' ? { path, method, headers, body, reset: false } : { path, method, headers, body }, handler);
    });
  }

  /** The connections downloads use, when ComfyUI speaks plain HTTP. */
  const downloads = options.upstream.protocol === 'http:' ? new DownloadConnections(socketHost(options.upstream), Number(options.upstream.port || 80)) : null;

  async function download(req: IncomingMessage, res: ServerResponse, overrides: UpstreamOverrides = {}): Promise<void> {
    const { headers, body } = requestParts(req, overrides);
    const method = overrides.method ?? req.method!;
    const path = overrides.path ?? req.url!;
    const head = (method === 'GET' || method === 'HEAD') && body === null ? requestHead(method, path, options.upstream.host, headers) : undefined;
    if (downloads && head !== undefined) {
      const outcome = await streamDownload({
        connections: downloads,
        head,
        bodyless: method === 'HEAD',
        res,
        timeoutMs: options.headersTimeoutMs,
        frameAncestors: options.frameAncestors,
      });
      if (outcome === 'sent') return;
    }
    return forwardParts(res, method, path, headers, body);
  }

  function fetch(req: IncomingMessage | null, overrides: UpstreamOverrides = {}): Promise<UpstreamAnswer> {
    return new Promise((resolve, reject) => {
      // The gateway reads this answer, so it asks for it uncompressed.
      const { headers, body } = requestParts(req, { ...overrides, headers: { 'accept-encoding': 'identity', ...overrides.headers } });
      const handler = new BufferingHandler({
        maxBytes: Math.min(overrides.maxBytes ?? MAX_BUFFERED_BYTES, MAX_BUFFERED_BYTES),
        timeoutMs: overrides.timeoutMs ?? options.headersTimeoutMs * 2,
        frameAncestors: options.frameAncestors,
        resolve,
        reject,
      });
      pool.dispatch({ path: overrides.path ?? req!.url!, method: overrides.method ?? req!.method!, headers, body }, handler);
    });
  }

  async function probe(path: string, timeoutMs: number, method: 'GET' | 'HEAD' = 'GET'): Promise<number> {
    const { statusCode, body } = await pool.request({ path, method, headersTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
    await body.dump();
    return statusCode;
  }

  async function close(): Promise<void> {
    downloads?.close();
    await pool.close();
  }

  return { forward, download, fetch, probe, close };
}

/** How much of a forwarded answer may wait for a slow client before ComfyUI is read no further. */
const MAX_UNSENT_BYTES = 512 * 1024;

/** The handler a forwarded response belongs to, kept on the response so that one shared listener serves every request. */
const FORWARDING = Symbol('forwarding');
type ForwardedResponse = ServerResponse & { [FORWARDING]?: ForwardHandler };

/** The client's response closed: the upstream request is aborted unless the answer was complete. */
function onClientClose(this: ForwardedResponse): void {
  if (!this.writableFinished) this[FORWARDING]?.clientWentAway();
}

/** The client's response takes data again: ComfyUI is read again. */
function onClientDrain(this: ForwardedResponse): void {
  this[FORWARDING]?.controller?.resume();
}

/**
 * Streams one ComfyUI answer into the client's response as undici delivers it: no intermediate
 * stream, no AbortController, no closure per request. ComfyUI is read only as fast as the client takes
 * the answer, and the upstream request is aborted when the client goes away first.
 */
class ForwardHandler implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | null = null;
  private started = false;
  private clientGone = false;

  constructor(
    private readonly res: ForwardedResponse,
    private readonly frameAncestors: readonly string[] | undefined,
    private readonly resolve: () => void,
    private readonly reject: (error: GatewayError) => void,
  ) {
    res[FORWARDING] = this;
    // `on`, not `once`: a response closes once, and `once` would wrap the listener for every request.
    res.on('close', onClientClose);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new Error('the client went away'));
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx answers are between ComfyUI and undici, not for the gateway's client.
    if (statusCode < 200) return;
    this.started = true;
    this.res.writeHead(statusCode, downstreamResponseHeaders(headers, this.frameAncestors));
    this.resolve();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    // ComfyUI is paused only once the client lags by MAX_UNSENT_BYTES: pausing at the response's own
    // 16 KiB mark would stop and restart the upstream for every 64 KiB chunk of a big download.
    if (!this.res.write(chunk) && this.res.writableLength > MAX_UNSENT_BYTES) {
      controller.pause();
      this.res.once('drain', onClientDrain);
    }
  }

  onResponseEnd(): void {
    this.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.started) this.res.destroy();
    else if (this.clientGone) this.resolve();
    else this.reject(toGatewayError(error));
  }

  clientWentAway(): void {
    this.clientGone = true;
    this.controller?.abort(new Error('the client went away'));
  }
}

/** What a BufferingHandler reads and whom it tells. */
interface BufferingOptions {
  maxBytes: number;
  /** How long the whole answer may take. */
  timeoutMs: number;
  frameAncestors: readonly string[] | undefined;
  resolve: (answer: UpstreamAnswer) => void;
  reject: (error: GatewayError) => void;
}

/**
 * Reads one ComfyUI answer whole, as undici delivers it: no body stream, no async iterator and no
 * AbortController per request. An answer over `maxBytes` is cut and refused with 502; one that takes
 * longer than `timeoutMs` in all is cut and refused with 504 (a request still waiting for a
 * connection is refused then, and dropped once it gets one).
 */
class BufferingHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  private headers: OutgoingHeaders = {};
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private settled = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: BufferingOptions) {
    this.timer = setTimeout(() => this.fail(new DOMException('ComfyUI did not finish its answer in time', 'TimeoutError')), options.timeoutMs);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.settled) controller.abort(new Error('the answer is no longer awaited'));
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx answers are between ComfyUI and undici.
    if (statusCode < 200) return;
    this.status = statusCode;
    this.headers = downstreamResponseHeaders(headers, this.options.frameAncestors);
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.size += chunk.length;
    if (this.size > this.options.maxBytes) {
      this.fail(new GatewayError(502, 'UPSTREAM_UNAVAILABLE', 'ComfyUI answered with more data than the gateway can filter.'));
      return;
    }
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.settle()) this.options.resolve({ status: this.status, headers: this.headers, body: Buffer.concat(this.chunks, this.size) });
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.settle()) this.options.reject(toGatewayError(error));
  }

  /** Refuses the answer (once) and stops reading it. */
  private fail(error: GatewayError | DOMException): void {
    if (!this.settle()) return;
    this.options.reject(error instanceof GatewayError ? error : toGatewayError(error));
    this.controller?.abort(error);
  }

  /** True the first time: the answer is settled now. */
  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    return true;
  }
}

/** Maps a failure to reach ComfyUI to the client's error: timeouts are 504, everything else 502. */
function toGatewayError(error: unknown): GatewayError {
  if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.ConnectTimeoutError || (error as Error).name === 'TimeoutError') {
    return upstreamTimeout(error);
  }
  return upstreamUnavailable(error);
}
