// The client sockets that receive job events, shared by the event hubs of every backend, and the relay of those events to other replicas.

import type { Logger } from '../log/logger.js';
import type { JobRecord } from '../store/types.js';
import type { JobEventRelay, RelayedJobEvent } from './job-event-relay.js';

/** A client socket the hubs send its jobs' events to. */
export interface ClientSink {
  send(data: Buffer | string, isBinary: boolean): void;
  /** Whether the client asked for previews with metadata (type 4); other clients get type 1. */
  wantsPreviewMetadata(): boolean;
  /** An admin's socket: it also gets the events of every key's jobs sent without a client_id, which ComfyUI broadcasts. */
  seesJobsWithoutClient?: boolean;
}

/** Where client sockets are registered to receive the events of their key's jobs. */
export interface ClientSinks {
  /** Registers a socket for the jobs of `keyId` whose client_id is `clientId`; returns the function that unregisters it. */
  register(keyId: string, clientId: string, sink: ClientSink): () => void;
}

/** The job an event is for, as its key and client know it. */
export type EventTarget = Pick<JobRecord, 'id' | 'key_id' | 'client_id'>;

/**
 * Every client socket of this replica, by key and client_id. A client's one socket gets the events
 * of its jobs on every backend, since each backend's hub delivers here. With a `relay`, every JSON
 * event is also published to the other replicas, whose registries deliver it to their own sockets of
 * that key and client (binary frames stay on this replica).
 */
export class ClientSinkRegistry implements ClientSinks {
  private readonly sinks = new Map<string, Set<ClientSink>>();
  private readonly sinksOfJobsWithoutClient = new Set<ClientSink>();
  private readonly relay: JobEventRelay | undefined;
  private readonly log: Logger;
  private stopRelay: () => void = () => undefined;

  constructor(options: { log: Logger; relay?: JobEventRelay }) {
    this.relay = options.relay;
    this.log = options.log;
  }

  /** Starts delivering the other replicas' events here. */
  start(): void {
    if (this.relay) this.stopRelay = this.relay.receive((event) => this.deliverRelayed(event));
  }

  /** Stops taking the other replicas' events. */
  close(): void {
    this.stopRelay();
    this.stopRelay = () => undefined;
  }

  /** Whether JSON events must be rendered even without a local socket (another replica may have one). */
  get relays(): boolean {
    return this.relay !== undefined;
  }

  register(keyId: string, clientId: string, sink: ClientSink): () => void {
    const id = sinkId(keyId, clientId);
    let set = this.sinks.get(id);
    if (!set) this.sinks.set(id, (set = new Set()));
    set.add(sink);
    if (sink.seesJobsWithoutClient) this.sinksOfJobsWithoutClient.add(sink);
    return () => {
      set.delete(sink);
      this.sinksOfJobsWithoutClient.delete(sink);
      if (set.size === 0 && this.sinks.get(id) === set) this.sinks.delete(id);
    };
  }

  /** The sinks of a key's client, or the admin sinks for a job without a client. */
  sinksOf(keyId: string, clientId: string | null): ReadonlySet<ClientSink> | undefined {
    return clientId === null ? this.sinksOfJobsWithoutClient : this.sinks.get(sinkId(keyId, clientId));
  }

  /** Sends a job's JSON event to its sockets here and on the other replicas. */
  sendText(job: EventTarget, type: string, text: string): void {
    for (const sink of this.sinksOf(job.key_id, job.client_id) ?? []) sink.send(text, false);
    const outcome = this.relay?.publish({ keyId: job.key_id, clientId: job.client_id, text });
    if (outcome === 'too_large' || outcome === 'backlog_full')
      this.log.debug({ job_id: job.id, event: type, reason: outcome }, 'job event not passed to the other replicas');
  }

  /** Sends the job's sockets an event of the gateway's own, in ComfyUI's shape (a job refused when it was sent, or lost with its backend). */
  announce(job: EventTarget, type: string, data: Record<string, unknown>): void {
    this.sendText(job, type, JSON.stringify({ type, data: { ...data, prompt_id: job.id } }));
  }

  /** Delivers another replica's event to this replica's sinks of its key and client. */
  private deliverRelayed({ keyId, clientId, text }: RelayedJobEvent): void {
    for (const sink of this.sinksOf(keyId, clientId) ?? []) sink.send(text, false);
  }
}

function sinkId(keyId: string, clientId: string): string {
  return `${keyId}\n${clientId}`;
}
