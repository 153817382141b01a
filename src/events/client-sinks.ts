// The client sockets that receive job events, shared by the event hubs of every backend, and the relay of those events to other replicas.

import type { Logger } from '../log/logger.js';
import type { JobRecord } from '../store/types.js';
import type { JobEventRelay, RelayedJobEvent } from './job-event-relay.js';

/** A client socket the hubs send its jobs' events to. */
export interface ClientSink {
  /** `written`, when given, must be called once `data` is no longer needed (sent, or dropped), and not before: its buffer is then used again. */
  send(data: Buffer | string, isBinary: boolean, written?: () => void): void;
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
  /** By key, then by client_id: looked up for every event, without building a joined id each time. */
  private readonly sinks = new Map<string, Map<string, Set<ClientSink>>>();
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
    let ofKey = this.sinks.get(keyId);
    if (!ofKey) this.sinks.set(keyId, (ofKey = new Map()));
    let set = ofKey.get(clientId);
    if (!set) ofKey.set(clientId, (set = new Set()));
    set.add(sink);
    if (sink.seesJobsWithoutClient) this.sinksOfJobsWithoutClient.add(sink);
    return () => {
      set.delete(sink);
      this.sinksOfJobsWithoutClient.delete(sink);
      if (set.size > 0 || ofKey.get(clientId) !== set) return;
      ofKey.delete(clientId);
      if (ofKey.size === 0 && this.sinks.get(keyId) === ofKey) this.sinks.delete(keyId);
    };
  }

  /** The sinks of a key's client, or the admin sinks for a job without a client. */
  sinksOf(keyId: string, clientId: string | null): ReadonlySet<ClientSink> | undefined {
    return clientId === null ? this.sinksOfJobsWithoutClient : this.sinks.get(keyId)?.get(clientId);
  }

  /** Sends a job's JSON event to its sockets here (`sinks`, when the caller has looked them up already) and on the other replicas. */
  sendText(job: EventTarget, type: string, text: string, sinks = this.sinksOf(job.key_id, job.client_id)): void {
    for (const sink of sinks ?? []) sink.send(text, false);
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
