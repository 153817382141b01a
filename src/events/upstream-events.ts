// The gateway's own WebSocket to one ComfyUI backend, with a clientId the gateway owns: it receives the events of every prompt forwarded with that client_id.

import { randomBytes } from 'node:crypto';
import { parseComfyJson } from '../isolation/json-body.js';
import type { Logger } from '../log/logger.js';
import { MAX_UPSTREAM_MESSAGE_BYTES } from '../proxy/websocket.js';
import { ASK_FOR_PREVIEW_METADATA } from './preview-frames.js';
import { UpstreamSocket } from './upstream-socket.js';

/** A JSON message from ComfyUI (`data` is `{}` when the message has none). */
export interface UpstreamMessage {
  type: string;
  data: Record<string, unknown>;
}

/** What the socket reports. A listener that throws is logged, never passed on. */
export interface UpstreamListener {
  /** The socket is open: the first time, and again after every reconnect. */
  opened(): void;
  /** The socket closed or could not connect; it reconnects by itself. */
  closed(): void;
  /** A JSON message other than the answer to the gateway's feature_flags; `raw` is its text as ComfyUI sent it. */
  text(message: UpstreamMessage, raw: string): void;
  /** A binary frame (a preview, progress text, a `SaveImageWebsocket` image), in a buffer the listener may give back with giveBackMessage once nothing reads it. */
  binary(frame: Buffer): void;
}

export interface UpstreamEventsOptions {
  /** ComfyUI's base URL (http or https). */
  upstream: URL;
  log: Logger;
  listener: UpstreamListener;
  /** How often ComfyUI is pinged; a socket that has not answered the previous ping is cut and reopened (default 30 s). */
  pingIntervalMs?: number;
  /** How long ComfyUI may take to accept the socket (default 10 s). */
  handshakeTimeoutMs?: number;
  /** The clientId to connect with (the gateway uses one for all its backends); a new random one by default. */
  clientId?: string;
  /** The first wait before reconnecting (default 250 ms); it doubles after each failed attempt, up to `reconnectMaxMs`. */
  reconnectMinMs?: number;
  /** The longest wait between attempts (default 30 s). */
  reconnectMaxMs?: number;
  /**
   * How long the socket may stay silent after ComfyUI accepted a prompt before it is taken to have lost its place in
   * ComfyUI and is reopened (default 10 s; see `promptAccepted`).
   */
  silenceLimitMs?: number;
}

/**
 * One WebSocket to ComfyUI at `/ws?clientId=<clientId>`, opened by `open` and reopened whenever it drops
 * or cannot connect (with capped exponential backoff; logged at warn, never thrown). On open it asks
 * for previews with metadata, and keeps ComfyUI's answer (releases before feature flags never answer).
 * The clientId is fixed for the life of the object, so prompts forwarded before a reconnect still
 * reach it; ComfyUI sends a prompt's events only while this socket is connected and holds that clientId
 * in ComfyUI (a socket that lost it is found silent after the next accepted prompt: see promptAccepted).
 */
export class UpstreamEvents {
  /** The clientId ComfyUI knows this socket by: the `client_id` to give every prompt forwarded to this backend. */
  readonly clientId: string;
  private readonly url: URL;
  private socket: UpstreamSocket | null = null;
  private flags: Record<string, unknown> | null = null;
  private readonly flagsListeners = new Set<(flags: Record<string, unknown>) => void>();
  private failures = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Text and binary messages received, on every connection. */
  private received = 0;
  /** When ComfyUI accepted the oldest prompt no message has followed yet (Date.now()), or 0. */
  private unheardSince = 0;
  /** `received` when that prompt was sent. */
  private receivedBeforeUnheard = 0;
  /** Checks, once `silenceLimitMs` is up, that a message came after the accepted prompts; one at a time. */
  private silenceTimer: NodeJS.Timeout | null = null;
  private readonly checkSilenceNow = (): void => this.checkSilence();

  constructor(private readonly options: UpstreamEventsOptions) {
    this.clientId = options.clientId ?? randomBytes(16).toString('hex');
    const base = `${options.upstream.protocol === 'https:' ? 'wss' : 'ws'}://${options.upstream.host}`;
    this.url = new URL(`${base}/ws?clientId=${this.clientId}`);
  }

  /** Opens the socket (and keeps it open until `close`). */
  open(): void {
    this.connect();
  }

  /** Whether the socket is open now. */
  get connected(): boolean {
    return this.socket?.open === true;
  }

  /** ComfyUI's feature flags as it answered on the current connection; null until it answers (older releases never do). */
  featureFlags(): Record<string, unknown> | null {
    return this.flags;
  }

  /** Calls `listener` with ComfyUI's feature flags each time it answers the gateway's (on every connection); returns the function that stops it. */
  onFeatureFlags(listener: (flags: Record<string, unknown>) => void): () => void {
    this.flagsListeners.add(listener);
    return () => this.flagsListeners.delete(listener);
  }

  /** How many text and binary messages the socket has received: read just before a prompt is sent, for `promptAccepted`. */
  get messagesReceived(): number {
    return this.received;
  }

  /**
   * ComfyUI accepted a prompt sent when `messagesReceived` was `receivedBefore`. ComfyUI then tells every
   * socket it knows of its queue (a `status` broadcast), so the socket must receive some message within
   * `silenceLimitMs`. If none comes, ComfyUI no longer sends to it: it dropped the socket's clientId when
   * the handler of an earlier connection under the same clientId ended (after a reconnect that ComfyUI
   * noticed late). The socket is then closed normally and reopened with the same clientId. One timer at
   * most, however many prompts wait.
   */
  promptAccepted(receivedBefore: number): void {
    if (this.received !== receivedBefore || !this.connected) return;
    // An earlier prompt waits already, and nothing came since: its deadline comes first.
    if (this.unheardSince !== 0 && this.receivedBeforeUnheard === receivedBefore) return;
    this.unheardSince = Date.now();
    this.receivedBeforeUnheard = receivedBefore;
    this.silenceTimer ??= setTimeout(this.checkSilenceNow, this.silenceLimitMs).unref();
  }

  /** Connects now instead of after the wait before the next attempt (ComfyUI was seen answering again). */
  reconnectNow(): void {
    if (this.closed || !this.reconnectTimer) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.failures = 0;
    this.connect();
  }

  /** Closes the socket for good. */
  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.stopSilenceCheck();
    this.socket?.terminate();
  }

  private get silenceLimitMs(): number {
    return this.options.silenceLimitMs ?? 10_000;
  }

  /** The silence timer's check: a message came since the oldest unheard prompt was sent, or time is not up yet, or the socket is reopened. */
  private checkSilence(): void {
    this.silenceTimer = null;
    if (this.unheardSince === 0) return;
    if (this.received !== this.receivedBeforeUnheard) return void (this.unheardSince = 0);
    const silentMs = Date.now() - this.unheardSince;
    if (silentMs < this.silenceLimitMs) {
      this.silenceTimer = setTimeout(this.checkSilenceNow, this.silenceLimitMs - silentMs).unref();
      return;
    }
    this.unheardSince = 0;
    this.options.log.warn(
      { url: this.options.upstream.origin, silent_ms: silentMs },
      'ComfyUI event socket got nothing after ComfyUI accepted a prompt: ComfyUI no longer sends to it; reopening it',
    );
    this.socket?.close();
  }

  private stopSilenceCheck(): void {
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.silenceTimer = null;
    this.unheardSince = 0;
  }

  private connect(): void {
    const { log, listener } = this.options;
    let alive = true;
    let pingTimer: NodeJS.Timeout | null = null;
    const socket = new UpstreamSocket(
      this.url,
      { handshakeTimeoutMs: this.options.handshakeTimeoutMs ?? 10_000, maxMessageBytes: MAX_UPSTREAM_MESSAGE_BYTES },
      {
        open: () => {
          this.failures = 0;
          socket.sendText(ASK_FOR_PREVIEW_METADATA);
          pingTimer = setInterval(() => {
            if (!alive) return socket.terminate();
            alive = false;
            socket.ping();
          }, this.options.pingIntervalMs ?? 30_000).unref();
          log.info({ url: this.options.upstream.origin }, 'ComfyUI event socket open');
          this.report(() => listener.opened());
        },
        pong: () => (alive = true),
        binary: (frame) => {
          this.received += 1;
          this.report(() => listener.binary(frame));
        },
        text: (raw) => {
          this.received += 1;
          this.onText(raw);
        },
        closed: (code, error) => {
          const wasOpen = pingTimer !== null;
          if (pingTimer) clearInterval(pingTimer);
          this.stopSilenceCheck();
          if (wasOpen) this.report(() => listener.closed());
          if (this.closed) return;
          const delay = Math.min(this.options.reconnectMaxMs ?? 30_000, (this.options.reconnectMinMs ?? 250) * 2 ** this.failures);
          this.failures += 1;
          log.warn(
            { url: this.options.upstream.origin, code, err: error?.message, retry_in_ms: delay },
            wasOpen ? 'ComfyUI event socket closed; reconnecting' : 'ComfyUI event socket could not connect; retrying',
          );
          this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = null;
            this.connect();
          }, delay).unref();
        },
      },
    );
    this.socket = socket;
    this.flags = null;
  }

  /** A JSON message: ComfyUI's answer to the gateway's feature flags is kept, any other goes to the listener. */
  private onText(raw: string): void {
    const message = parseComfyJson(raw, JSON.parse) as { type?: unknown; data?: unknown } | null | undefined;
    if (typeof message?.type !== 'string') return;
    const body = typeof message.data === 'object' && message.data !== null ? (message.data as Record<string, unknown>) : {};
    if (message.type === 'feature_flags') {
      this.flags = body;
      for (const flagsListener of [...this.flagsListeners]) this.report(() => flagsListener(body));
      return;
    }
    this.report(() => this.options.listener.text({ type: message.type as string, data: body }, raw));
  }

  /** Runs a listener call; a listener that throws is logged, so one bad message cannot stop the socket. */
  private report(call: () => void): void {
    try {
      call();
    } catch (error) {
      this.options.log.error({ err: error }, 'ComfyUI event handling failed');
    }
  }
}
