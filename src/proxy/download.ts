// Streams one big answer from ComfyUI to the client over a download connection, read into buffers that are used again.

import type { ServerResponse } from 'node:http';
import { upstreamTimeout, upstreamUnavailable, type GatewayError } from '../errors.js';
import { giveBack, LARGE_ANSWER_BYTES, type ConnectionUser, type DownloadConnection, type DownloadConnections } from './download-connections.js';
import { downstreamResponseHeaders } from './headers.js';
import { couldStartResponseHead, MAX_HEAD_BYTES, parseResponseHead } from './http1-head.js';

/** Downloads streamed this way at once; more are forwarded through the connection pool. */
export const MAX_OPEN_DOWNLOADS = 64;
/** How much of the answer may wait for a slow client before ComfyUI is read no further. */
const MAX_UNSENT_BYTES = 512 * 1024;

let openDownloads = 0;

export interface DownloadRequest {
  connections: DownloadConnections;
  /** The request's head, ending in the blank line (see requestHead). */
  head: string;
  /** A HEAD: the answer has no body, whatever length its head gives. */
  bodyless: boolean;
  res: ServerResponse;
  /** How long a download may stand still: ComfyUI silent before its head or between reads, or the client taking nothing. */
  timeoutMs: number;
  frameAncestors: readonly string[] | undefined;
}

/**
 * 'sent': the answer has begun in `res` (or the client went away). 'declined': nothing was sent and
 * the caller forwards the request the usual way: too many downloads are open, or ComfyUI's answer does
 * not give its length (chunked, or read until the connection closes), which only the pool's parser reads.
 */
export type DownloadOutcome = 'sent' | 'declined';

/**
 * Sends `head` to ComfyUI on a download connection and streams the answer into `res`. Each read lands
 * in a buffer taken from a shared free list and given back once the client's socket has sent it, so a
 * big download allocates nothing per read: through the pool every 64 KiB read is a new buffer outside
 * the JavaScript heap, and V8 runs full collections to reclaim them. A connection whose answer was read
 * whole is kept for the next download; when a kept one fails before any byte of its answer (ComfyUI
 * may have closed it meanwhile), the request is sent again once on a new connection.
 * Resolves once the head is handed over; rejects with 502 or 504 when no answer began.
 */
export function streamDownload(request: DownloadRequest): Promise<DownloadOutcome> {
  if (openDownloads >= MAX_OPEN_DOWNLOADS) return Promise.resolve('declined');
  return new Promise((resolve, reject) => new Download(request, resolve, reject));
}

class Download implements ConnectionUser {
  private connection: DownloadConnection;
  /** The answer's bytes until its head has been read whole; null once it has. */
  private head: Buffer | null = Buffer.alloc(0);
  private remaining = 0;
  /** Whether the connection may carry the next download once this answer is read whole. */
  private reusable = false;
  private settled = false;
  /** Nothing more to do: the answer was sent whole, cut, or declined. */
  private done = false;

  constructor(
    private readonly request: DownloadRequest,
    private readonly resolve: (outcome: DownloadOutcome) => void,
    private readonly reject: (error: GatewayError) => void,
  ) {
    openDownloads += 1;
    request.res.on('close', this.onClientClose);
    this.connection = this.send(false);
  }

  private send(fresh: boolean): DownloadConnection {
    const connection = this.request.connections.take(this, this.request.timeoutMs, fresh);
    connection.socket.write(this.request.head);
    return connection;
  }

  onRead(bytes: number, buffer: Buffer): void {
    if (this.head === null) return this.sendBody(buffer.subarray(0, bytes), buffer);
    this.head = Buffer.concat([this.head, buffer.subarray(0, bytes)]);
    giveBack(buffer);
    const end = this.head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (!couldStartResponseHead(this.head)) this.fail(upstreamUnavailable(new Error('ComfyUI sent an answer that is not HTTP/1.1')));
      else if (this.head.length > MAX_HEAD_BYTES) this.fail(upstreamUnavailable(new Error('ComfyUI sent an answer head too large to read')));
      return;
    }
    const parsed = parseResponseHead(this.head.toString('latin1', 0, end));
    if (!parsed) return this.fail(upstreamUnavailable(new Error('ComfyUI sent an answer that is not plain HTTP/1.1')));
    const bodyLength = this.request.bodyless ? 0 : parsed.bodyLength;
    if (bodyLength === null) return this.decline();
    this.reusable = parsed.keepAlive;
    this.start(parsed.status, parsed.headers, bodyLength, this.head.subarray(end + 4));
  }

  onFailure(error: Error, timedOut: boolean): void {
    if (this.done) return;
    // A kept connection that fails before any byte of its answer: ComfyUI closed it meanwhile; this request was not read.
    if (this.connection.kept && !timedOut && this.head?.length === 0) {
      this.connection = this.send(true);
      return;
    }
    this.fail(timedOut ? upstreamTimeout(error) : upstreamUnavailable(error));
  }

  /** Sends the answer's head to the client, then the body bytes that came with it. */
  private start(status: number, headers: Record<string, string | string[]>, bodyLength: number, early: Buffer): void {
    const { res, frameAncestors } = this.request;
    this.head = null;
    this.remaining = bodyLength;
    this.connection.largeReads = bodyLength >= LARGE_ANSWER_BYTES;
    res.writeHead(status, downstreamResponseHeaders(headers, frameAncestors));
    this.settle('sent');
    if (this.remaining === 0 && early.length === 0) this.finish();
    else this.sendBody(early);
  }

  /** Hands `chunk` (up to the announced length) to the client; `readBuffer`, which holds it, goes back to the free list once it is sent. */
  private sendBody(chunk: Buffer, readBuffer?: Buffer): void {
    const length = Math.min(chunk.length, this.remaining);
    // Bytes beyond the announced length: the connection is out of step with ComfyUI and is not used again.
    if (length < chunk.length) this.reusable = false;
    this.remaining -= length;
    const { res } = this.request;
    const more = length === 0 || res.write(chunk.subarray(0, length), readBuffer && (() => giveBack(readBuffer)));
    if (length === 0 && readBuffer) giveBack(readBuffer);
    if (this.remaining === 0) return this.finish();
    if (!more && res.writableLength > MAX_UNSENT_BYTES) {
      // As through the pool, a client that takes nothing for the whole timeout is cut: the timer keeps running while paused.
      this.connection.socket.pause();
      res.once('drain', this.onClientDrain);
    }
  }

  private readonly onClientDrain = (): void => {
    this.connection.socket.resume();
  };

  private readonly onClientClose = (): void => {
    if (this.done) return;
    this.end();
    this.connection.close();
    this.settle('sent');
  };

  private finish(): void {
    this.end();
    this.request.res.end();
    if (this.reusable) this.request.connections.keep(this.connection);
    else this.connection.close();
  }

  /** ComfyUI's answer is not framed by a length: nothing was sent, the caller asks again through the pool. */
  private decline(): void {
    this.end();
    this.connection.close();
    this.request.res.off('close', this.onClientClose);
    this.settle('declined');
  }

  /** ComfyUI failed: before its head the client gets `error`, after it a cut connection (never a complete-looking answer). */
  private fail(error: GatewayError): void {
    if (this.done) return;
    this.end();
    this.connection.close();
    if (this.settled) this.request.res.destroy();
    else {
      this.settled = true;
      this.reject(error);
    }
  }

  /** The download is over (once): its place among the open downloads is free. */
  private end(): void {
    this.done = true;
    openDownloads -= 1;
  }

  private settle(outcome: DownloadOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve(outcome);
  }
}
