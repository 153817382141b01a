// Job events passed between gateway replicas on one database: each hub publishes the JSON events it delivers, and the others deliver them to their own client sockets.

import { randomUUID } from 'node:crypto';
import { parseJsonOrUndefined } from '../isolation/json-body.js';

/** A job's JSON event exactly as a client socket gets it, with the job's key and client_id (null: a job without a client, for admin sockets). */
export interface RelayedJobEvent {
  keyId: string;
  clientId: string | null;
  text: string;
}

/** What carries the relay's messages between processes (PostgreSQL's NOTIFY and LISTEN on one channel). */
export interface RelayTransport {
  /** Sends `payloads`, in this order, to every listening process (this one included); rejects when they could not be sent. */
  send(payloads: readonly string[]): Promise<void>;
  /** Calls `onPayload` with every payload any process sends; resolves once listening, with the function that stops it. */
  listen(onPayload: (payload: string) => void): Promise<() => void>;
}

/** What `publish` did with an event: queued for the other replicas, or not relayed and why. */
export type PublishOutcome = 'queued' | 'too_large' | 'backlog_full';

/** PostgreSQL refuses a notification payload of 8000 bytes or more. */
export const MAX_PAYLOAD_BYTES = 7999;

/** Events waiting while a send is in flight; past this (the database is slow or away) events are not relayed. */
export const MAX_PENDING_EVENTS = 1000;

/**
 * Publishes this process's job events and delivers the other processes' ones. A message is one
 * notification: a first line `[origin, seq, keyId, clientId]` (JSON; `origin` is a per-process id, by
 * which a process ignores its own messages, `seq` keeps identical events distinct), then the event's
 * text. One send is in flight at a time and the events published meanwhile go in the next one, so
 * they arrive in the order they were published. Publishing never waits and never throws: an event
 * too large for one notification, past the backlog, or sent while the database is away is lost to
 * the other replicas only.
 */
export class JobEventRelay {
  /** This process's id in the messages. */
  readonly origin = randomUUID();
  private readonly transport: RelayTransport;
  private stopListening: () => void = () => undefined;
  private receiver: ((event: RelayedJobEvent) => void) | null = null;
  private pending: string[] = [];
  private sending = false;
  private seq = 0;

  private constructor(transport: RelayTransport) {
    this.transport = transport;
  }

  /** Starts listening; resolves once messages sent from now on are received. */
  static async open(transport: RelayTransport): Promise<JobEventRelay> {
    const relay = new JobEventRelay(transport);
    relay.stopListening = await transport.listen((payload) => relay.onPayload(payload));
    return relay;
  }

  /** Passes a job's event to the other replicas (without waiting); says whether it was queued or why not. */
  publish(event: RelayedJobEvent): PublishOutcome {
    const payload = `${JSON.stringify([this.origin, this.seq, event.keyId, event.clientId])}\n${event.text}`;
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) return 'too_large';
    if (this.pending.length >= MAX_PENDING_EVENTS) return 'backlog_full';
    this.seq += 1;
    this.pending.push(payload);
    this.flush();
    return 'queued';
  }

  /** Calls `deliver` with every event another process publishes; returns the function that stops it. */
  receive(deliver: (event: RelayedJobEvent) => void): () => void {
    this.receiver = deliver;
    return () => {
      if (this.receiver === deliver) this.receiver = null;
    };
  }

  /** Stops listening and drops the events not sent yet. */
  close(): void {
    this.pending = [];
    this.receiver = null;
    this.stopListening();
  }

  private flush(): void {
    if (this.sending || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.sending = true;
    this.transport
      .send(batch)
      // Lost like an event sent while a client's socket is down: the job's state still reaches every replica through the job store.
      .catch(() => undefined)
      .finally(() => {
        this.sending = false;
        this.flush();
      });
  }

  private onPayload(payload: string): void {
    const receiver = this.receiver;
    if (!receiver) return;
    const newline = payload.indexOf('\n');
    if (newline < 0) return;
    const header = parseJsonOrUndefined(payload.slice(0, newline));
    if (!Array.isArray(header) || header.length !== 4) return;
    const [origin, , keyId, clientId] = header as unknown[];
    if (typeof origin !== 'string' || origin === this.origin || typeof keyId !== 'string' || (clientId !== null && typeof clientId !== 'string')) return;
    receiver({ keyId, clientId, text: payload.slice(newline + 1) });
  }
}
