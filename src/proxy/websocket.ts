// Relays a WebSocket between the client and ComfyUI (text and binary frames, close codes, keep-alive pings, message size, backpressure), or accepts one the gateway serves itself.

import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { GatewayError, upstreamTimeout, upstreamUnavailable } from '../errors.js';
import { TurnBudget } from '../jobs/turn-budget.js';
import { rejectUpgrade } from '../server/respond.js';
import { upstreamRequestHeaders } from './headers.js';

export interface WebSocketProxyOptions {
  upstream: URL;
  /** How long ComfyUI may take to accept the upgrade. */
  handshakeTimeoutMs: number;
  /** How often both sides are pinged; a side that has not answered the previous ping is cut. */
  pingIntervalMs: number;
}

/** A message on its way through the relay. */
export interface Frame {
  data: Buffer | string;
  isBinary: boolean;
}

/** Ways to look at, change, drop or answer messages on their way through. Each returns the frame to pass on, or null. */
export interface RelayHooks {
  /** Runs once ComfyUI has accepted, before any client message is passed on; may send to ComfyUI first. */
  onUpstreamOpen?(sendUpstream: (text: string) => void): void;
  fromUpstream?(frame: Frame): Frame | null;
  /** `replyToClient` answers the client directly, for a message the gateway handles itself. */
  fromClient?(frame: Frame, replyToClient: (text: string) => void): Frame | null;
}

/**
 * Sends the client a message of the gateway's own. While more than HIGH_WATER_BYTES wait to be written
 * to the client, binary frames (previews, progress text) are dropped; JSON events are sent until more
 * than MAX_LAG_BYTES wait, when the socket is cut instead (see clientSender).
 * `written`, when given, is called once `data` is no longer needed: written to the socket, or dropped.
 */
export type ClientSender = (data: Buffer | string, isBinary: boolean, written?: () => void) => void;

/** Closes an open socket from the gateway's side with a close code and reason (and, for a relayed one, its socket to ComfyUI too). */
export type SocketCloser = (code: number, reason: string) => void;

export interface RelayOptions {
  /** The ComfyUI to relay to (default: the proxy's `upstream`). */
  upstream?: URL;
  /** The request target at ComfyUI (default: the client's). */
  target?: string;
  /** Headers to set on the upstream handshake (null removes one). */
  headers?: Record<string, string | null>;
  hooks?: RelayHooks;
  /**
   * Runs when the client's socket is open (both sides connected), with a function that sends the
   * client a message from the gateway itself (events it relays from elsewhere) and one that closes
   * both sides; `onEnd` runs when that socket closes.
   */
  onOpen?(sendToClient: ClientSender, close: SocketCloser): void;
  /** Runs once when the relay ends (or never began), with the status the client got and the connected time. */
  onEnd(outcome: { status: number; connectedMs: number }): void;
}

/** A client socket the gateway talks to itself, with no socket to ComfyUI behind it. */
export interface AcceptOptions {
  /** Runs when the socket is open, with the function that sends it a message and the one that closes it. */
  onOpen(sendToClient: ClientSender, close: SocketCloser): void;
  /** Runs for every message the client sends. */
  onMessage(frame: Frame): void;
  /** Runs once when the socket closes (status 101), or with 499 when the client left before it opened. */
  onEnd(outcome: { status: number; connectedMs: number }): void;
}

export interface WebSocketProxy {
  /** Connects to ComfyUI first, then accepts the client. */
  relay(req: IncomingMessage, socket: Duplex, head: Buffer, options: RelayOptions): void;
  /** Accepts the client without a socket to ComfyUI (kept alive, and closed with the others, like relayed ones). */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, options: AcceptOptions): void;
  /** Closes every relayed socket. */
  close(): void;
}

/** ComfyUI's own limit on a message it receives (aiohttp's default `max_msg_size`): what a client may send. */
const MAX_CLIENT_MESSAGE_BYTES = 4 * 1024 * 1024;
/** What ComfyUI may send in one message: it sets no limit itself, and `SaveImageWebsocket` sends whole images. */
export const MAX_UPSTREAM_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Bytes waiting to be written to one side above which the other side is no longer read. */
const HIGH_WATER_BYTES = 1024 * 1024;
/**
 * Bytes waiting to be written to a client above which its socket is cut when the gateway sends it a message of its
 * own: the client has stopped reading (a client's unsolicited pongs would keep it from looking dead for good). The
 * largest message ComfyUI may send, which a client that reads may still be taking in, and 16 MiB more.
 */
const MAX_LAG_BYTES = MAX_UPSTREAM_MESSAGE_BYTES + 16 * 1024 * 1024;

/**
 * How many sockets' ends, of clients or of ComfyUI, one turn of the event loop takes. A client process that exits
 * with 1,000 sockets ends them all at once, as does a ComfyUI that stops with 1,000 relayed; each end costs the
 * gateway 75–90 µs (ws's close, the other side's close frame, the kernel's close, the socket's metrics,
 * access-log line and usage record), so taken in one turn they held every other request for about 100 ms.
 */
export const SOCKET_ENDS_PER_TURN = 32;

/**
 * Closes a socket once its peer has closed its side, as many a turn as `ends` lets pass: a WebSocket has no use
 * for a half-closed connection (RFC 6455 §7.1.1 closes it once the closing handshake is done), so a peer that sent
 * its FIN has gone. The socket's own listeners of its end (ws's, which would shut down the gateway's side and close
 * the socket once that completes, a turn later) are set aside and run just before the socket is closed, in the
 * same turn. `Duplex.allowHalfOpen` may be changed until 'end' is emitted (Node.js's stream documentation).
 */
function closeWhenPeerLeaves(socket: Duplex, ends: TurnBudget): void {
  const listenersOfEnd = socket.rawListeners('end') as Array<(this: Duplex) => void>;
  socket.removeAllListeners('end');
  // A socket the gateway dialled (to ComfyUI) would otherwise end its own side as soon as the peer's FIN is read.
  socket.allowHalfOpen = true;
  socket.once('end', () => {
    void ends.take().then(() => {
      // A socket cut in the meantime (a ping unanswered, a write refused) has had its close, ws's included.
      if (socket.destroyed) return;
      for (const listener of listenersOfEnd) listener.call(socket);
      socket.destroy();
    });
  });
}

/** A WebSocket relay built on `ws`: one upstream socket for each client socket. */
export function createWebSocketProxy(options: WebSocketProxyOptions): WebSocketProxy {
  const server = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_CLIENT_MESSAGE_BYTES, clientTracking: true });
  const socketBase = (upstream: URL): string => `${upstream.protocol === 'https:' ? 'wss' : 'ws'}://${upstream.host}`;
  const alive = new WeakMap<WebSocket, boolean>();
  const upstreams = new Set<WebSocket>();
  const socketEnds = new TurnBudget(SOCKET_ENDS_PER_TURN);

  const heartbeat = setInterval(() => {
    for (const ws of [...server.clients, ...upstreams]) {
      // A socket to ComfyUI still connecting has its handshake timeout instead (ws throws when one is pinged).
      if (ws.readyState === WebSocket.CONNECTING) continue;
      // A side the relay stopped reading cannot be heard answering; it is judged again once it is read.
      if (ws.isPaused) {
        alive.set(ws, true);
        continue;
      }
      if (alive.get(ws) === false) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, options.pingIntervalMs).unref();

  function relay(req: IncomingMessage, socket: Duplex, head: Buffer, relayOptions: RelayOptions): void {
    const { hooks = {}, onEnd } = relayOptions;
    const target = relayOptions.upstream ?? options.upstream;
    const headers = upstreamRequestHeaders(req, target.origin, { websocket: true });
    for (const [name, value] of Object.entries(relayOptions.headers ?? {})) {
      if (value === null) delete headers[name];
      else headers[name] = value;
    }
    const upstream = new WebSocket(socketBase(target) + (relayOptions.target ?? req.url), {
      headers: headers as Record<string, string>,
      perMessageDeflate: false,
      handshakeTimeout: options.handshakeTimeoutMs,
      maxPayload: MAX_UPSTREAM_MESSAGE_BYTES,
      followRedirects: false,
    });
    upstreams.add(upstream);
    let client: WebSocket | null = null;
    let openedAt = 0;
    const early: Frame[] = [];
    const finish = once((status: number) => onEnd({ status, connectedMs: openedAt ? Date.now() - openedAt : 0 }));

    socket.once('close', () => {
      if (!client) upstream.terminate();
    });
    upstream.on('message', (data, isBinary) => {
      const frame = hooks.fromUpstream ? hooks.fromUpstream({ data: data as Buffer, isBinary }) : { data: data as Buffer, isBinary };
      if (!frame) return;
      if (client) forward(frame, upstream, client);
      else early.push(frame);
    });
    upstream.on('pong', () => alive.set(upstream, true));
    upstream.once('unexpected-response', (_request, response) => {
      upstreams.delete(upstream);
      const status = response.statusCode ?? 502;
      response.resume();
      rejectUpgrade(socket, new GatewayError(status, 'UPSTREAM_REFUSED', `ComfyUI refused the WebSocket with status ${status}.`));
      upstream.terminate();
      finish(status);
    });
    upstream.once('error', (error) => {
      upstreams.delete(upstream);
      if (client) {
        if (isFrameError(error)) closeWith(client, 1001, Buffer.from('ComfyUI broke the protocol'));
        else closeWith(client, 1011, Buffer.from('upstream error'));
        return;
      }
      // ws reports a handshake that took too long as 'Opening handshake has timed out'.
      const timedOut = /timeout|timed out/i.test(error.message);
      rejectUpgrade(socket, timedOut ? upstreamTimeout(error) : upstreamUnavailable(error));
      finish(timedOut ? 504 : 502);
    });
    let upstreamSocket: Duplex | null = null;
    upstream.once('upgrade', (response) => (upstreamSocket = response.socket));
    upstream.once('open', () => {
      // ws has taken the socket by now: its listeners are in place to be set aside.
      if (upstreamSocket) closeWhenPeerLeaves(upstreamSocket, socketEnds);
      if (socket.destroyed) {
        upstream.terminate();
        finish(499);
        return;
      }
      hooks.onUpstreamOpen?.((text) => upstream.send(text));
      server.handleUpgrade(req, socket, head, (ws) => {
        closeWhenPeerLeaves(socket, socketEnds);
        client = ws;
        openedAt = Date.now();
        relayOptions.onOpen?.(clientSender(ws), (code, reason) => {
          closeWith(ws, code, Buffer.from(reason));
          closeWith(upstream, code, Buffer.from(reason));
        });
        for (const frame of early.splice(0)) ws.send(frame.data, { binary: frame.isBinary });
        const replyToClient = (text: string): void => {
          if (ws.readyState === WebSocket.OPEN) ws.send(text);
        };
        ws.on('message', (data, isBinary) => {
          const incoming = { data: data as Buffer, isBinary };
          const frame = hooks.fromClient ? hooks.fromClient(incoming, replyToClient) : incoming;
          if (frame) forward(frame, ws, upstream);
        });
        ws.on('pong', () => alive.set(ws, true));
        ws.once('close', (code, reason) => {
          closeWith(upstream, code, reason);
          finish(101);
        });
        // ws itself closes a client that broke the protocol (1009 for a message over the limit); ComfyUI is told the client went away.
        ws.on('error', (error) => {
          if (isFrameError(error)) closeWith(upstream, 1001, Buffer.from('the client broke the protocol'));
        });
        upstream.once('close', (code, reason) => {
          upstreams.delete(upstream);
          closeWith(ws, code, reason);
        });
      });
    });
  }

  function accept(req: IncomingMessage, socket: Duplex, head: Buffer, acceptOptions: AcceptOptions): void {
    if (socket.destroyed) return acceptOptions.onEnd({ status: 499, connectedMs: 0 });
    server.handleUpgrade(req, socket, head, (ws) => {
      closeWhenPeerLeaves(socket, socketEnds);
      const openedAt = Date.now();
      ws.on('message', (data, isBinary) => acceptOptions.onMessage({ data: data as Buffer, isBinary }));
      ws.on('pong', () => alive.set(ws, true));
      ws.once('close', () => acceptOptions.onEnd({ status: 101, connectedMs: Date.now() - openedAt }));
      // ws itself closes a client that broke the protocol (1009 for a message over the limit).
      ws.on('error', () => undefined);
      acceptOptions.onOpen(clientSender(ws), (code, reason) => closeWith(ws, code, Buffer.from(reason)));
    });
  }

  function close(): void {
    clearInterval(heartbeat);
    for (const ws of [...server.clients, ...upstreams]) ws.terminate();
    server.close();
  }

  return { relay, accept, close };
}

/**
 * The gateway's own messages to a client socket: dropped once it is closed, and binary frames dropped while it lags (see
 * ClientSender). A socket that lags by more than MAX_LAG_BYTES is cut, so that what waits for it is let go: events are
 * not held without bound for a client that does not read them.
 */
function clientSender(ws: WebSocket): ClientSender {
  return (data, isBinary, written) => {
    if (ws.readyState === WebSocket.OPEN && ws.bufferedAmount > MAX_LAG_BYTES) ws.terminate();
    if (ws.readyState !== WebSocket.OPEN || (isBinary && ws.bufferedAmount > HIGH_WATER_BYTES)) return written?.();
    ws.send(data, { binary: isBinary }, written);
  };
}

/**
 * Sends a message on from one side to the other. While the receiving side has more than
 * HIGH_WATER_BYTES waiting to be written, the sending side is not read; it is read again once the
 * receiving side has written its messages out.
 */
function forward(frame: Frame, from: WebSocket, to: WebSocket): void {
  if (to.readyState !== WebSocket.OPEN) return;
  to.send(frame.data, { binary: frame.isBinary }, () => {
    if (from.isPaused && to.bufferedAmount <= HIGH_WATER_BYTES) from.resume();
  });
  if (to.bufferedAmount > HIGH_WATER_BYTES && from.readyState === WebSocket.OPEN) from.pause();
}

/** An error for which ws has already closed that side with the matching code (1002, 1007 or 1009), as opposed to a broken connection. */
function isFrameError(error: Error): boolean {
  return String((error as NodeJS.ErrnoException).code ?? '').startsWith('WS_ERR_');
}

/** Passes a close on to the other side; codes that cannot be sent (1005 no status, 1006 abnormal) become a plain close or a cut. */
function closeWith(ws: WebSocket, code: number, reason: Buffer): void {
  if (ws.readyState === WebSocket.CLOSED || ws.readyState === WebSocket.CLOSING) return;
  // A side that is not read would never hear the answer to its close.
  ws.resume();
  if (code === 1006) ws.terminate();
  else if (code === 1005 || !isSendableCloseCode(code)) ws.close();
  else ws.close(code, reason);
}

function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

function once<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
  let done = false;
  return (...args: A) => {
    if (done) return;
    done = true;
    fn(...args);
  };
}
