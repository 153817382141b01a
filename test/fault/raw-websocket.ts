// A WebSocket client written byte by byte, for handshakes and frames that the ws library will not send.

import { connect, type Socket } from 'node:net';

/** A well-formed Sec-WebSocket-Key (16 bytes in base64). */
export const VALID_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

export interface RawAnswer {
  status: number;
  head: string;
  body: string;
}

/** Where an HTTP answer's head ends and how long its body is, once the head is complete. */
function parseHead(bytes: Buffer): { head: string; bodyStart: number; bodyLength: number } | null {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = bytes.subarray(0, end).toString('latin1');
  const length = /^content-length:\s*(\d+)/im.exec(head);
  return { head, bodyStart: end + 4, bodyLength: length ? Number(length[1]) : 0 };
}

/** Sends `request` as written and resolves the HTTP answer (status, head and body). */
export function rawAnswer(port: number, request: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    let bytes = Buffer.alloc(0);
    const done = (): boolean => {
      const parsed = parseHead(bytes);
      if (!parsed || bytes.length < parsed.bodyStart + parsed.bodyLength) return false;
      socket.destroy();
      const body = bytes.subarray(parsed.bodyStart, parsed.bodyStart + parsed.bodyLength).toString('utf8');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(parsed.head)?.[1] ?? 0), head: parsed.head, body });
      return true;
    };
    socket.on('data', (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      done();
    });
    socket.on('close', () => {
      if (!done()) reject(new Error(`the connection closed before a whole answer came: ${JSON.stringify(bytes.toString('latin1'))}`));
    });
    socket.on('error', () => undefined);
  });
}

/** An upgrade request for `path` with the usual handshake headers, changed by `headers` (null leaves one out). */
export function upgradeRequest(path: string, headers: Record<string, string | null> = {}): string {
  const all: Record<string, string | null> = {
    host: '127.0.0.1',
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': VALID_KEY,
    'sec-websocket-version': '13',
    ...headers,
  };
  const lines = Object.entries(all).flatMap(([name, value]) => (value === null ? [] : [`${name}: ${value}`]));
  return `GET ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

/** An open WebSocket spoken by hand: frames are written raw, and the close frame from the other side is watched for. */
export interface RawWebSocket {
  socket: Socket;
  /** Resolves the code of the close frame received, or 1006 when the connection ended without one. */
  closed: Promise<number>;
}

/** Opens a WebSocket on `path` with `headers`; rejects if the answer is not 101. */
export function openRawWebSocket(port: number, path: string, headers: Record<string, string>): Promise<RawWebSocket> {
  return new Promise((resolveOpen, rejectOpen) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(upgradeRequest(path, headers)));
    socket.on('error', () => undefined);
    let bytes = Buffer.alloc(0);
    let opened = false;
    let resolveClosed: (code: number) => void = () => undefined;
    const closed = new Promise<number>((resolve) => (resolveClosed = resolve));
    socket.on('data', (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      if (!opened) {
        const parsed = parseHead(bytes);
        if (!parsed) return;
        if (!parsed.head.startsWith('HTTP/1.1 101')) {
          socket.destroy();
          return rejectOpen(new Error(`upgrade refused: ${parsed.head.split('\r\n')[0]}`));
        }
        opened = true;
        bytes = bytes.subarray(parsed.bodyStart);
        resolveOpen({ socket, closed });
      }
      const code = closeCodeIn(bytes);
      if (code !== null) resolveClosed(code);
    });
    socket.on('close', () => {
      resolveClosed(1006);
      if (!opened) rejectOpen(new Error('the connection closed before the upgrade was answered'));
    });
  });
}

/** The code of the first close frame among the (unmasked, server-sent) frames in `bytes`, if one has arrived whole. */
function closeCodeIn(bytes: Buffer): number | null {
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at]! & 0x0f;
    let length = bytes[at + 1]! & 0x7f;
    let header = 2;
    if (length === 126) {
      if (at + 4 > bytes.length) return null;
      length = bytes.readUInt16BE(at + 2);
      header = 4;
    } else if (length === 127) {
      if (at + 10 > bytes.length) return null;
      length = Number(bytes.readBigUInt64BE(at + 2));
      header = 10;
    }
    if (at + header + length > bytes.length) return null;
    if (opcode === 0x8) return length >= 2 ? bytes.readUInt16BE(at + header) : 1005;
    at += header + length;
  }
  return null;
}

const CHUNK = Buffer.alloc(1024 * 1024);

/**
 * Sends one binary frame that declares `declaredBytes` of payload, and streams zeros as its payload
 * until it is all sent or a close frame or the end of the connection arrives. Resolves the bytes sent.
 */
export async function sendLargeFrame(raw: RawWebSocket, declaredBytes: number): Promise<number> {
  const header = Buffer.alloc(14);
  header[0] = 0x82;
  header[1] = 0x80 | 127;
  header.writeBigUInt64BE(BigInt(declaredBytes), 2);
  // A zero mask leaves the payload as it is.
  raw.socket.write(header);
  let stopped = false;
  void raw.closed.then(() => (stopped = true));
  let sent = 0;
  while (sent < declaredBytes && !stopped && !raw.socket.destroyed) {
    const chunk = CHUNK.subarray(0, Math.min(CHUNK.length, declaredBytes - sent));
    sent += chunk.length;
    if (!raw.socket.write(chunk)) {
      await new Promise<void>((resolve) => {
        raw.socket.once('drain', resolve);
        void raw.closed.then(() => resolve());
      });
    }
  }
  return sent;
}
