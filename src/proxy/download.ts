// Streams one big answer from ComfyUI to the client over a connection of its own, read into buffers that are used again.

import type { ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { upstreamTimeout, upstreamUnavailable, type GatewayError } from '../errors.js';
import { downstreamResponseHeaders } from './headers.js';
import { couldStartResponseHead, MAX_HEAD_BYTES, parseResponseHead } from './http1-head.js';

/** Bytes of one read from ComfyUI. */
const READ_BYTES = 256 * 1024;
/** Read buffers kept for later downloads once the client's socket has sent them (8 MiB). */
const KEPT_BUFFERS = 32;
/** Downloads streamed this way at once; more are forwarded through the connection pool. */
export const MAX_OPEN_DOWNLOADS = 64;
/** How much of the answer may wait for a slow client before ComfyUI is read no further. */
const MAX_UNSENT_BYTES = 512 * 1024;

const idleBuffers: Buffer[] = [];
let openDownloads = 0;

function takeBuffer(): Buffer {
  return idleBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_BYTES);
}

function giveBack(buffer: Buffer): void {
  if (idleBuffers.length < KEPT_BUFFERS) idleBuffers.push(buffer);
}

export interface DownloadRequest {
  host: string;
  port: number;
  /** The request's head, ending in `Connection: close` and the blank line (see requestHead). */
  head: string;
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
 * Sends `head` to ComfyUI on a new connection and streams the answer into `res`. Each read lands in a
 * buffer of READ_BYTES taken from a shared free list and given back once the client's socket has sent
 * it, so a big download allocates nothing per read: through the pool every 64 KiB read is a new
 * buffer outside the JavaScript heap, and V8 runs full collections to reclaim them.
 * Resolves once the head is handed over; rejects with 502 or 504 when no answer began.
 */
export function streamDownload(request: DownloadRequest): Promise<DownloadOutcome> {
  if (openDownloads >= MAX_OPEN_DOWNLOADS) return Promise.resolve('declined');
  return new Promise((resolve, reject) => new Download(request, resolve, reject));
}

class Download {
  private readonly socket: Socket;
  /** The answer's bytes until its head has been read whole; null once it has. */
  private head: Buffer | null = Buffer.alloc(0);
  private remaining = 0;
  private settled = false;
  /** Nothing more to do: the answer was sent whole, or declined. */
  private done = false;

  constructor(
    private readonly request: DownloadRequest,
    private readonly resolve: (outcome: DownloadOutcome) => void,
    private readonly reject: (error: GatewayError) => void,
  ) {
    openDownloads += 1;
    this.socket = connect({
      host: request.host,
      port: request.port,
      onread: { buffer: takeBuffer, callback: (bytes, buffer) => this.onRead(bytes, buffer as Buffer) },
    });
    this.socket.setNoDelay(true);
    this.socket.setTimeout(request.timeoutMs, () => this.fail(upstreamTimeout(new Error('ComfyUI went silent'))));
    this.socket.on('error', (error) => this.fail(upstreamUnavailable(error)));
    this.socket.on('end', () => this.fail(upstreamUnavailable(new Error('ComfyUI closed the connection before the end of its answer'))));
    this.socket.on('close', () => (openDownloads -= 1));
    request.res.on('close', this.onClientClose);
    this.socket.write(request.head);
  }

  /** Each read from ComfyUI; true: read on (a slow client pauses the socket itself). */
  private onRead(bytes: number, buffer: Buffer): true {
    if (this.head === null) {
      this.sendBody(buffer.subarray(0, bytes), buffer);
      return true;
    }
    this.head = Buffer.concat([this.head, buffer.subarray(0, bytes)]);
    giveBack(buffer);
    const end = this.head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (!couldStartResponseHead(this.head)) this.fail(upstreamUnavailable(new Error('ComfyUI sent an answer that is not HTTP/1.1')));
      else if (this.head.length > MAX_HEAD_BYTES) this.fail(upstreamUnavailable(new Error('ComfyUI sent an answer head too large to read')));
      return true;
    }
    const parsed = parseResponseHead(this.head.toString('latin1', 0, end));
    if (!parsed) this.fail(upstreamUnavailable(new Error('ComfyUI sent an answer that is not plain HTTP/1.1')));
    else if (parsed.bodyLength === null) this.decline();
    else this.start(parsed.status, parsed.headers, parsed.bodyLength, this.head.subarray(end + 4));
    return true;
  }

  /** Sends the answer's head to the client, then the body bytes that came with it. */
  private start(status: number, headers: Record<string, string | string[]>, bodyLength: number, early: Buffer): void {
    const { res, frameAncestors } = this.request;
    this.head = null;
    this.remaining = bodyLength;
    res.writeHead(status, downstreamResponseHeaders(headers, frameAncestors));
    this.settle('sent');
    if (this.remaining === 0) this.finish();
    else if (early.length > 0) this.sendBody(early);
  }

  /** Hands `chunk` (up to the announced length) to the client; `readBuffer`, which holds it, goes back to the free list once it is sent. */
  private sendBody(chunk: Buffer, readBuffer?: Buffer): void {
    const length = Math.min(chunk.length, this.remaining);
    this.remaining -= length;
    const { res } = this.request;
    const more = res.write(chunk.subarray(0, length), readBuffer && (() => giveBack(readBuffer)));
    if (this.remaining === 0) return this.finish();
    if (!more && res.writableLength > MAX_UNSENT_BYTES) {
      // As through the pool, a client that takes nothing for the whole timeout is cut: the timer keeps running while paused.
      this.socket.pause();
      res.once('drain', this.onClientDrain);
    }
  }

  private readonly onClientDrain = (): void => {
    this.socket.resume();
  };

  private readonly onClientClose = (): void => {
    if (this.done) return;
    this.socket.destroy();
    this.settle('sent');
  };

  private finish(): void {
    this.done = true;
    this.socket.destroy();
    this.request.res.end();
  }

  /** ComfyUI's answer is not framed by a length: nothing was sent, the caller asks again through the pool. */
  private decline(): void {
    this.done = true;
    this.socket.destroy();
    this.request.res.off('close', this.onClientClose);
    this.settle('declined');
  }

  /** ComfyUI failed: before its head the client gets `error`, after it a cut connection (never a complete-looking answer). */
  private fail(error: GatewayError): void {
    if (this.done) return;
    this.socket.destroy();
    if (this.settled) this.request.res.destroy();
    else {
      this.settled = true;
      this.reject(error);
    }
  }

  private settle(outcome: DownloadOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve(outcome);
  }
}
