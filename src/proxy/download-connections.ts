// Connections to one ComfyUI for downloads: every read lands in a shared, reused buffer, and a connection is kept open a short while between downloads.

import { connect, type Socket } from 'node:net';
import { BufferPool } from './buffer-pool.js';

/** Bytes of one read from ComfyUI. */
const READ_BYTES = 256 * 1024;
/** Read buffers kept for later reads once the client's socket has sent them (8 MiB). */
const KEPT_BUFFERS = 32;
/**
 * Bytes of one read of a large answer (see LARGE_ANSWER_BYTES): a quarter of the reads and writes per
 * byte. Not for every answer: a small file read into a buffer this large wastes most of it, and many
 * at once outgrow the kept buffers.
 */
const LARGE_READ_BYTES = 1024 * 1024;
/** Large read buffers kept (8 MiB). */
const KEPT_LARGE_BUFFERS = 8;
/** An answer whose body is at least this long is read in LARGE_READ_BYTES after its first read. */
export const LARGE_ANSWER_BYTES = 4 * 1024 * 1024;
/** Connections kept open per ComfyUI between downloads. */
const KEPT_CONNECTIONS = 16;
/** How long a connection is kept without a download: well under the keep-alive of aiohttp (75 s) and of Node.js servers (5 s). */
const KEPT_FOR_MS = 2000;

const readBuffers = new BufferPool(READ_BYTES, KEPT_BUFFERS);
const largeReadBuffers = new BufferPool(LARGE_READ_BYTES, KEPT_LARGE_BUFFERS);

/** Returns a read buffer once nothing uses its bytes any more. */
export function giveBack(buffer: Buffer): void {
  (buffer.buffer.byteLength === LARGE_READ_BYTES ? largeReadBuffers : readBuffers).giveBack(buffer);
}

/** The download a connection carries: it gets each read, and hears when the connection fails. */
export interface ConnectionUser {
  /** `bytes` read into `buffer`; the user gives the buffer back (giveBack) once they are sent on. */
  onRead(bytes: number, buffer: Buffer): void;
  /** The connection failed, ComfyUI closed it, or it stood still for the timeout: it is closed now. */
  onFailure(error: Error, timedOut: boolean): void;
}

/** One connection to ComfyUI, carrying one download at a time. */
export class DownloadConnection {
  readonly socket: Socket;
  user: ConnectionUser | null = null;
  /** Whether it carried an answer before: a kept connection may have been closed by ComfyUI meanwhile. */
  kept = false;
  /** Whether its reads take large buffers: set by its user while a large answer is read (LARGE_ANSWER_BYTES). */
  largeReads = false;

  constructor(host: string, port: number, onClosed: (connection: DownloadConnection) => void) {
    const onread = {
      buffer: () => (this.largeReads ? largeReadBuffers : readBuffers).take(),
      callback: (bytes: number, buffer: Uint8Array) => this.onRead(bytes, buffer as Buffer),
    };
    this.socket = connect({ host, port, onread });
    this.socket.setNoDelay(true);
    this.socket.on('timeout', () => this.fail(new Error('ComfyUI went silent'), true));
    this.socket.on('error', (error) => this.fail(error, false));
    this.socket.on('end', () => this.fail(new Error('ComfyUI closed the connection'), false));
    this.socket.on('close', () => onClosed(this));
  }

  /** Closes the connection without telling its user. */
  close(): void {
    this.user = null;
    this.socket.destroy();
  }

  private onRead(bytes: number, buffer: Buffer): true {
    if (this.user) {
      // A read runs outside any request's promise: whatever its user throws fails this download, not the process.
      try {
        this.user.onRead(bytes, buffer);
      } catch (error) {
        this.fail(error as Error, false);
      }
    } else {
      // Bytes while no download waits for any: the connection is out of step with ComfyUI.
      giveBack(buffer);
      this.close();
    }
    return true;
  }

  private fail(error: Error, timedOut: boolean): void {
    const user = this.user;
    this.close();
    user?.onFailure(error, timedOut);
  }
}

/** The connections to one ComfyUI that downloads use. */
export class DownloadConnections {
  private readonly idle: DownloadConnection[] = [];

  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  /** A kept connection (the most recently used), or a new one when `fresh` or none is kept; `timeoutMs` is how long it may stand still. */
  take(user: ConnectionUser, timeoutMs: number, fresh = false): DownloadConnection {
    const connection = (!fresh && this.idle.pop()) || new DownloadConnection(this.host, this.port, (closed) => this.forget(closed));
    connection.user = user;
    connection.socket.setTimeout(timeoutMs);
    return connection;
  }

  /** Keeps a connection whose answer was read whole for the next download, while fewer than KEPT_CONNECTIONS are kept. */
  keep(connection: DownloadConnection): void {
    connection.user = null;
    connection.largeReads = false;
    if (this.idle.length >= KEPT_CONNECTIONS) return connection.close();
    connection.kept = true;
    connection.socket.setTimeout(KEPT_FOR_MS);
    this.idle.push(connection);
  }

  /** Closes the kept connections. */
  close(): void {
    for (const connection of this.idle.splice(0)) connection.close();
  }

  private forget(connection: DownloadConnection): void {
    const at = this.idle.indexOf(connection);
    if (at >= 0) this.idle.splice(at, 1);
  }
}
