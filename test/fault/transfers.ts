// Streaming clients for fault tests: uploads and downloads of any size that can stop part-way, raw sockets, WebSockets.

import { request, type ClientRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import WebSocket from 'ws';

export interface Download {
  status: number | null;
  bytes: number;
  /** True only when the whole body arrived and ended cleanly. */
  complete: boolean;
  body: string;
}

/**
 * GETs `target`, counting the body without keeping it (the first 4 KiB are kept as `body`). `onProgress`
 * sees the bytes so far and may hang up; it is called on every chunk.
 */
export function download(
  baseUrl: string,
  target: string,
  key: string,
  onProgress: (bytes: number, hangUp: () => void) => void = () => undefined,
): Promise<Download> {
  const url = new URL(baseUrl);
  return new Promise((resolve) => {
    const result: Download = { status: null, bytes: 0, complete: false, body: '' };
    const req = request({ host: url.hostname, port: url.port, path: target, headers: { 'x-api-key': key }, agent: false }, (res) => {
      result.status = res.statusCode!;
      res.on('data', (chunk: Buffer) => {
        if (result.body.length < 4096) result.body += chunk.toString('utf8', 0, 4096);
        result.bytes += chunk.length;
        onProgress(result.bytes, () => req.destroy());
      });
      res.on('error', () => undefined);
      res.on('close', () => resolve({ ...result, complete: res.complete && !res.errored }));
    });
    req.on('error', () => resolve(result));
    req.end();
  });
}

export interface Upload {
  status: number | null;
  body: string;
  /** Bytes handed to the socket before the upload stopped. */
  sent: number;
}

/**
 * POSTs `total` bytes to `target` with a Content-Length, `chunkBytes` at a time, pausing `pauseMs`
 * between chunks; `onProgress` may hang up. Resolves with the answer, or with status null if none came.
 */
export function upload(
  baseUrl: string,
  target: string,
  options: { key: string; total: number; chunkBytes?: number; pauseMs?: number; contentType?: string; onProgress?: (sent: number, hangUp: () => void) => void },
): Promise<Upload> {
  const { key, total, chunkBytes = 256 * 1024, pauseMs = 0, contentType = 'application/octet-stream', onProgress = () => undefined } = options;
  const url = new URL(baseUrl);
  return new Promise((resolve) => {
    const result: Upload = { status: null, body: '', sent: 0 };
    let stopped = false;
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path: target,
        agent: false,
        headers: { 'x-api-key': key, 'content-type': contentType, 'content-length': total },
      },
      (res) => {
        stopped = true;
        result.status = res.statusCode!;
        res.setEncoding('utf8').on('data', (text: string) => (result.body += text));
        res.on('error', () => undefined);
        res.on('close', () => resolve(result));
      },
    );
    req.on('error', () => {
      stopped = true;
      if (result.status === null) resolve(result);
    });
    const chunk = Buffer.alloc(chunkBytes, 0x62);
    void (async () => {
      while (!stopped && result.sent < total) {
        const piece = chunk.subarray(0, Math.min(chunkBytes, total - result.sent));
        result.sent += piece.length;
        if (!req.write(piece)) await drained(req);
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
        onProgress(result.sent, () => {
          stopped = true;
          req.destroy();
        });
      }
      if (!stopped) req.end();
    })();
  });
}

/** Resolves when `req` can take more data, or has closed. */
function drained(req: ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      req.off('drain', done);
      req.off('close', done);
      resolve();
    };
    req.on('drain', done);
    req.on('close', done);
  });
}

/** A raw TCP connection to the gateway. */
export async function rawSocket(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  return socket;
}

/** The status of a refused WebSocket upgrade, or the open socket. */
export function openWebSocket(baseUrl: string, path: string, key: string): Promise<{ ws: WebSocket; first: string } | { status: number; body: string }> {
  const ws = new WebSocket(baseUrl.replace(/^http/, 'ws') + path, { headers: { 'x-api-key': key } });
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => resolve({ ws, first: String(data) }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (text: string) => (body += text));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    ws.once('error', reject);
  });
}

/** Resolves the close code of `ws`, or rejects if it is still open after `timeoutMs`. */
export function closeCode(ws: WebSocket, timeoutMs: number): Promise<number> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(1006);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the WebSocket was still open after ${timeoutMs} ms`)), timeoutMs);
    ws.once('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}
