// A TCP server posing as ComfyUI that answers with bytes that are not HTTP, or with nothing at all.

import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export type Misbehaviour =
  /** Random bytes, then the connection is closed. */
  | 'garbage-then-close'
  /** Random bytes, and the connection stays open. */
  | 'garbage-kept-open'
  /** A status line, then a header that never ends. */
  | 'endless-header'
  /** Valid headers of a chunked answer, then a chunk size that is not hex; kept open. */
  | 'broken-chunked-body'
  /** Reads the request and never writes. */
  | 'silent';

export interface RawUpstream {
  url: string;
  /** What the next connections get. */
  misbehaviour: Misbehaviour;
  close(): Promise<void>;
}

/** Bytes that no HTTP parser accepts as a response: they start with NUL and carry no status line. */
function garbage(): Buffer {
  const bytes = Buffer.alloc(2048);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = (i * 131 + 7) % 256;
  bytes[0] = 0;
  return bytes;
}

export async function startRawUpstream(): Promise<RawUpstream> {
  const sockets = new Set<Socket>();
  const upstream: RawUpstream = { url: '', misbehaviour: 'silent', close: async () => undefined };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const behaviour = upstream.misbehaviour;
    socket.once('data', () => {
      if (behaviour === 'garbage-then-close') socket.end(garbage());
      else if (behaviour === 'garbage-kept-open') socket.write(garbage());
      else if (behaviour === 'endless-header') {
        socket.write('HTTP/1.1 200 OK\r\nX-Endless: ');
        const chunk = 'a'.repeat(64 * 1024);
        let sent = 0;
        const more = (): void => {
          while (sent < 4 * 1024 * 1024 && !socket.destroyed) {
            sent += chunk.length;
            if (!socket.write(chunk)) return void socket.once('drain', more);
          }
        };
        more();
      } else if (behaviour === 'broken-chunked-body') {
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ-not-hex\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  upstream.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return upstream;
}
