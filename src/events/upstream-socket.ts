// A WebSocket client for one socket to ComfyUI (plain or TLS) whose reads land in one buffer used again, so the events it carries cost no allocation but their own.

import { createHash, randomBytes } from 'node:crypto';
import { connect as connectPlain, isIP, type OnReadOpts, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import { socketHost } from '../auth/host-names.js';
import { BufferPool } from '../proxy/buffer-pool.js';
import { couldStartResponseHead, MAX_HEAD_BYTES, parseResponseHead } from '../proxy/http1-head.js';
import { FrameError, FrameReader, OPCODE } from './frame-reader.js';

/** What the socket reports. */
export interface UpstreamSocketEvents {
  /** The opening handshake succeeded. */
  open(): void;
  text(text: string): void;
  /** A binary message, in a buffer of its own; see giveBackMessage. */
  binary(message: Buffer): void;
  pong(): void;
  /** The socket is closed (once): `code` is the server's close code (1006 when the connection just ended), `error` what went wrong, if anything. */
  closed(code: number, error: Error | null): void;
}

export interface UpstreamSocketOptions {
  /** How long the server may take to accept the socket. */
  handshakeTimeoutMs: number;
  /** The largest message read; a larger one closes the socket (1009). */
  maxMessageBytes: number;
}

/** RFC 6455 §1.3: appended to the key to make the server's `Sec-WebSocket-Accept`. */
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Bytes of one read from the server. */
const READ_BYTES = 64 * 1024;
/**
 * Bytes read before the socket lets the event loop turn. While the server's bytes wait in the kernel, libuv
 * reads up to 32 full buffers (2 MiB) in one go, and every message among them is passed on before any
 * timer or other socket is served: such a turn kept the loop 17.6 ms on an idle machine, and four
 * buffers of progress messages (1,700 of them, each written to its client's socket) still took 16.7 ms.
 */
const READ_BYTES_PER_TURN = READ_BYTES;
/** Binary messages up to this size (previews, mostly) are read into buffers used again; larger ones get a buffer of their own. */
const MESSAGE_BUFFER_BYTES = 256 * 1024;
/** Message buffers kept for later messages once their clients have been sent them (4 MiB). */
const KEPT_MESSAGE_BUFFERS = 16;
const messageBuffers = new BufferPool(MESSAGE_BUFFER_BYTES, KEPT_MESSAGE_BUFFERS);

/**
 * Gives back the buffer of a binary message this socket reported, to be read into again: call it only
 * once nothing reads its bytes any more (every client socket sent it has called back). A message
 * never given back is simply collected.
 */
export function giveBackMessage(message: Buffer): void {
  messageBuffers.giveBack(message);
}

/** How long a closing socket waits for the server to close the connection after the client's close frame. */
const CLOSE_WAIT_MS = 1000;

/**
 * One WebSocket to `url` (`ws:` or `wss:`; no extension or subprotocol asked for). Every read lands in
 * the socket's one read buffer and is parsed there (FrameReader), so a binary message is copied once,
 * into a buffer used again once it is given back (giveBackMessage): through a general client each read is a new buffer and each message another,
 * and at 100 KB previews V8 spends its time in full collections to reclaim them. The handshake is
 * checked as RFC 6455 §4.1 asks (status 101, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, no
 * extension or protocol that was not offered); a redirect is refused like any other answer.
 */
export class UpstreamSocket {
  private readonly socket: Socket;
  private readonly reader: FrameReader;
  private readonly key = randomBytes(16).toString('base64');
  /** The answer's bytes until its head is read whole; null once the socket is open. */
  private head: Buffer | null = Buffer.alloc(0);
  private isOpen = false;
  /** The socket's close frame is sent: the server ends the connection next, or CLOSE_WAIT_MS after it is cut. */
  private closeSent = false;
  private ended = false;
  private error: Error | null = null;
  private closeCode = 1006;
  /** Bytes read since reading last paused for a turn of the event loop. */
  private readSincePause = 0;
  private readonly resumeReading = (): void => void this.socket.resume();

  constructor(
    url: URL,
    options: UpstreamSocketOptions,
    private readonly events: UpstreamSocketEvents,
  ) {
    const host = socketHost(url);
    const tls = url.protocol === 'wss:';
    const port = Number(url.port || (tls ? 443 : 80));
    const onread: OnReadOpts = { buffer: Buffer.allocUnsafeSlow(READ_BYTES), callback: (bytes, buffer) => this.onRead(bytes, buffer as Buffer) };
    // tls.connect documents `onread` as net.Socket's, though its type leaves it out.
    const tlsOptions: ConnectionOptions & { onread: OnReadOpts } = { host, port, onread, ...(isIP(host) ? {} : { servername: host }) };
    this.socket = tls ? connectTls(tlsOptions) : connectPlain({ host, port, onread });
    this.reader = new FrameReader(
      {
        text: (text) => events.text(text),
        binary: (message) => events.binary(message),
        ping: (payload) => this.write(OPCODE.pong, payload),
        pong: () => events.pong(),
        close: (code) => {
          this.closeCode = code ?? 1005;
          this.closeWith(code === null ? Buffer.alloc(0) : closePayload(code));
        },
      },
      options.maxMessageBytes,
      (bytes) => (bytes <= MESSAGE_BUFFER_BYTES ? messageBuffers.take(bytes) : Buffer.allocUnsafeSlow(bytes)),
    );
    this.socket.setNoDelay(true);
    this.socket.setTimeout(options.handshakeTimeoutMs);
    this.socket.once(tls ? 'secureConnect' : 'connect', () => this.socket.write(upgradeRequest(url, this.key)));
    this.socket.on('timeout', () => this.fail(new Error('Opening handshake has timed out')));
    this.socket.on('error', (error) => (this.error ??= error));
    this.socket.on('end', () => {
      if (this.head !== null) this.error ??= new Error('ComfyUI closed the connection during the WebSocket handshake');
    });
    this.socket.on('close', () => this.end());
  }

  /** Whether the handshake succeeded and the socket has not begun closing. */
  get open(): boolean {
    return this.isOpen;
  }

  sendText(text: string): void {
    if (this.isOpen) this.write(OPCODE.text, Buffer.from(text));
  }

  ping(): void {
    if (this.isOpen) this.write(OPCODE.ping, Buffer.alloc(0));
  }

  /**
   * Closes the socket normally (1000): sends a close frame, then waits up to CLOSE_WAIT_MS for the server
   * to end the connection, which ComfyUI does as its handler of the socket ends.
   */
  close(): void {
    this.closeWith(closePayload(1000));
  }

  /** Cuts the connection at once. */
  terminate(): void {
    this.socket.destroy();
  }

  /** Reads what came; returns false (reading stops, to start again at the end of this turn of the event loop) once READ_BYTES_PER_TURN have been read. */
  private onRead(bytes: number, buffer: Buffer): boolean {
    const read = buffer.subarray(0, bytes);
    try {
      if (this.head === null) this.reader.push(read);
      else this.readHandshake(read);
    } catch (error) {
      if (error instanceof FrameError) this.closeWith(closePayload(error.closeCode), error);
      else this.fail(error as Error);
    }
    this.readSincePause += bytes;
    if (this.readSincePause < READ_BYTES_PER_TURN) return true;
    this.readSincePause = 0;
    setImmediate(this.resumeReading);
    return false;
  }

  private readHandshake(read: Buffer): void {
    const head = Buffer.concat([this.head!, read]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (!couldStartResponseHead(head) || head.length > MAX_HEAD_BYTES)
        throw new Error('ComfyUI sent an answer to the WebSocket handshake that is not HTTP/1.1');
      this.head = head;
      return;
    }
    this.head = null;
    const problem = handshakeProblem(head.toString('latin1', 0, end), this.key);
    if (problem) throw new Error(problem);
    this.isOpen = true;
    this.socket.setTimeout(0);
    this.events.open();
    if (end + 4 < head.length) this.reader.push(head.subarray(end + 4));
  }

  /**
   * Sends a close frame with `payload` and ends the connection; the server has CLOSE_WAIT_MS to close its side. Once the
   * frame is sent, the server's own close frame (its answer) changes nothing: the server ends the connection next.
   */
  private closeWith(payload: Buffer, error: Error | null = null): void {
    if (error) this.error ??= error;
    if (this.closeSent) return;
    if (!this.isOpen) return void this.socket.destroy();
    this.write(OPCODE.close, payload);
    this.closeSent = true;
    this.isOpen = false;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_WAIT_MS).unref();
  }

  private fail(error: Error): void {
    this.error ??= error;
    this.socket.destroy();
  }

  /** Writes one frame of `payload`, masked as a client must (RFC 6455 §5.3). */
  private write(opcode: number, payload: Buffer): void {
    const lengthBytes = payload.length < 126 ? 0 : payload.length < 65536 ? 2 : 8;
    const frame = Buffer.allocUnsafe(6 + lengthBytes + payload.length);
    frame[0] = 0x80 | opcode;
    if (lengthBytes === 0) frame[1] = 0x80 | payload.length;
    else if (lengthBytes === 2) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(payload.length, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeBigUInt64BE(BigInt(payload.length), 2);
    }
    const maskAt = 2 + lengthBytes;
    randomBytes(4).copy(frame, maskAt);
    for (let i = 0; i < payload.length; i++) frame[maskAt + 4 + i] = payload[i]! ^ frame[maskAt + (i & 3)]!;
    this.socket.write(frame);
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.isOpen = false;
    this.events.closed(this.closeCode, this.error);
  }
}

/** The opening handshake's request (RFC 6455 §4.1). */
function upgradeRequest(url: URL, key: string): string {
  return (
    `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
}

/** What is wrong with the server's answer to the handshake, or null when it accepted the socket as asked. */
function handshakeProblem(headText: string, key: string): string | null {
  const head = parseResponseHead(headText);
  if (!head) return 'ComfyUI sent an answer to the WebSocket handshake that is not plain HTTP/1.1';
  if (head.status !== 101) return `Unexpected server response: ${head.status}`;
  const field = (name: string): string => {
    const value = head.headers[name];
    return Array.isArray(value) ? value.join(',') : (value ?? '');
  };
  if (field('upgrade').trim().toLowerCase() !== 'websocket') return 'Invalid Upgrade header';
  if (
    !field('connection')
      .split(',')
      .some((token) => token.trim().toLowerCase() === 'upgrade')
  )
    return 'Invalid Connection header';
  const accept = createHash('sha1')
    .update(key + ACCEPT_GUID)
    .digest('base64');
  if (field('sec-websocket-accept').trim() !== accept) return 'Invalid Sec-WebSocket-Accept header';
  if (head.headers['sec-websocket-extensions'] !== undefined) return 'Server sent a Sec-WebSocket-Extensions header but no extension was requested';
  if (head.headers['sec-websocket-protocol'] !== undefined) return 'Server sent a subprotocol but none was requested';
  return null;
}

/** A close frame's payload carrying `code`. */
function closePayload(code: number): Buffer {
  const payload = Buffer.alloc(2);
  payload.writeUInt16BE(code);
  return payload;
}
