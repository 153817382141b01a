// The event hub of one backend: reads every job's events from the gateway's own ComfyUI socket, records them, and passes each to the sockets of the job's key and client.

import { ownCachedOutput, type EarlierFileCheck } from '../isolation/cached-outputs.js';
import { nodeIds } from '../isolation/files.js';
import type { Logger } from '../log/logger.js';
import type { JobError } from '../store/types.js';
import { ClientSinkRegistry, type ClientSink, type ClientSinks, type EventTarget } from './client-sinks.js';
import type { JobEventRelay } from './job-event-relay.js';
import {
  binaryFrameType,
  overwriteWithoutPreviewMetadata,
  PREVIEW_IMAGE,
  PREVIEW_IMAGE_WITH_METADATA,
  readPreviewWithMetadata,
  TEXT,
  withoutPreviewMetadata,
  withPreviewMetadata,
  type PreviewWithMetadata,
} from './preview-frames.js';
import { UpstreamEvents, type UpstreamEventsOptions, type UpstreamMessage } from './upstream-events.js';
import { giveBackMessage } from './upstream-socket.js';

/** How the hub finds the job ComfyUI knows by a prompt_id (the JobStore satisfies it). */
export interface JobLookup {
  byUpstreamId(backend: string, upstreamId: string): EventTarget | undefined;
}

/** How a job ended. */
export type JobOutcome = 'success' | 'error' | 'interrupted';

/** Told what happens to each job; times are Unix seconds (ComfyUI's own `timestamp` when the message has one). */
export interface JobObserver {
  /**
   * `execution_start`; `estimated` when the start itself was not seen and `at` is when a comparison with ComfyUI's
   * queue found the job running (the job's end then reads ComfyUI's own start from its history entry).
   */
  started(jobId: string, at: number, estimated?: boolean): void;
  /** `execution_cached`: the nodes ComfyUI takes from its cache, whose `executed` outputs an earlier prompt made. */
  cached(jobId: string, nodes: readonly string[]): void;
  /** `executed` of a node (cached nodes included); `output` is ComfyUI's UI dict, or null. */
  executed(jobId: string, node: string, output: unknown): void;
  /** `execution_success`, `execution_error` (with the error) or `execution_interrupted`. */
  ended(jobId: string, outcome: JobOutcome, at: number, error: JobError | null): void;
}

export type { ClientSink, ClientSinks } from './client-sinks.js';

/** Bounds on the events of not-yet-known prompts held while an answer to `POST /prompt` is awaited. */
export interface HoldLimits {
  /** Default 1,000. */
  maxMessages: number;
  /** Default 8 MiB. */
  maxBytes: number;
  /** How long an event is held at most (default 10 s). */
  maxMs: number;
}

export interface EventHubOptions {
  /** The backend's name, as in `JobRecord.backend` (`default` for the one upstream). */
  backend: string;
  /** ComfyUI's base URL. */
  upstream: URL;
  jobs: JobLookup;
  observer: JobObserver;
  /** Which files of the nodes ComfyUI takes from its cache a job's key is shown in their `executed` events; the others are left out. */
  isShownEarlierFile: EarlierFileCheck;
  log: Logger;
  /** Timings of the socket to ComfyUI. */
  socket?: Pick<UpstreamEventsOptions, 'clientId' | 'pingIntervalMs' | 'handshakeTimeoutMs' | 'reconnectMinMs' | 'reconnectMaxMs' | 'silenceLimitMs'>;
  hold?: Partial<HoldLimits>;
  /** Runs each time the socket to ComfyUI opens, the first time and after a reconnect (a time to reconcile jobs with ComfyUI). */
  onConnected?(): void;
  /**
   * Runs when the running prompt ends with `executing` and no node, with no end event before it: releases before August
   * 2024 send no `execution_success`, and the prompt's history entry, written by then, tells how it ended.
   */
  onEndedUnannounced?(): void;
  /** The client sockets its jobs' events go to, shared with the other backends' hubs; by default its own, with `relay`. */
  sinks?: ClientSinkRegistry;
  /** With several replicas on one database and no shared `sinks`: carries the JSON events of this hub's jobs to the client sockets of the other replicas, and theirs to this one's. */
  relay?: JobEventRelay;
}

/** An event as received, kept until it can be attributed to a job. */
type Incoming =
  | { kind: 'text'; message: UpstreamMessage; raw: string; receivedAt: number }
  | { kind: 'binary'; frame: Buffer; preview: PreviewWithMetadata | null; receivedAt: number };

interface Held {
  upstreamId: string;
  event: Incoming;
  bytes: number;
  /** Date.now() after which it is dropped. */
  until: number;
  /** Delivered with its prompt's other held events (it stays in the queue of all held events until the queue is swept or compacted). */
  delivered: boolean;
}

const END_EVENTS = new Set(['execution_success', 'execution_error', 'execution_interrupted']);
/**
 * ComfyUI's messages of the running prompt that may name no prompt_id: `executing` with only a node (sent to a
 * socket that reconnects while the prompt runs), `progress` of releases that did not name it, `display_component`
 * (API nodes' UI, broadcast), and the prompt's other events as older releases sent them. Any other JSON message that
 * names no prompt is ComfyUI's or a custom node's broadcast (the asset seeder's counts of every key's files,
 * downloads), which is nobody's job: it is passed to no user key's socket.
 */
const EVENTS_OF_THE_RUNNING_PROMPT = new Set([
  'execution_start',
  'execution_cached',
  'executing',
  'progress',
  'progress_state',
  'executed',
  'display_component',
  ...END_EVENTS,
]);
const DEFAULT_HOLD: HoldLimits = { maxMessages: 1000, maxBytes: 8 * 1024 * 1024, maxMs: 10_000 };
/** Delivered entries the queue of held events may keep beyond as many as it holds undelivered before it is compacted. */
const COMPACT_SLACK = 64;

/**
 * One backend's events. ComfyUI sends a prompt's events only to the socket whose clientId is the
 * prompt's client_id, so every prompt forwarded to this backend must carry `clientId` as its
 * client_id. Each event is attributed by its `prompt_id` (type 4 previews by their metadata); events
 * without one (type 1 previews, progress text, `executing` with only a node) belong to the prompt
 * running on the backend, from its `execution_start` to its end, if they are of the kinds a prompt
 * sends (see EVENTS_OF_THE_RUNNING_PROMPT): other messages that name no prompt belong to no job, and
 * binary frames of a type ComfyUI does not define (1, 3 and 4 are its own) to none either. The
 * job's key and client sockets get the event with `prompt_id` set to the job's id; the observer is
 * told of starts, outputs and ends.
 * `status` broadcasts are kept and offered to subscribers, never sent to sinks. Sinks may be shared by
 * the hubs of every backend, and relay JSON events to other replicas (see ClientSinkRegistry).
 */
export class EventHub implements ClientSinks {
  private readonly backend: string;
  private readonly jobs: JobLookup;
  private readonly observer: JobObserver;
  private readonly isShownEarlierFile: EarlierFileCheck;
  /**
   * By job, from its `execution_cached` to its end or the next job's `execution_cached`: the nodes ComfyUI takes
   * from its cache. Kept while the socket to ComfyUI is down: ComfyUI goes on with the prompt, and its later
   * events come on the socket that takes the same clientId. A job without an entry is one whose
   * `execution_cached` was sent while the socket was down: any of its nodes may be cached.
   */
  private readonly cachedNodes = new Map<string, ReadonlySet<string>>();
  private readonly log: Logger;
  private readonly sinks: ClientSinkRegistry;
  /** Whether this hub made `sinks` (and so starts and closes it). */
  private readonly ownsSinks: boolean;
  private readonly limits: HoldLimits;
  private readonly upstream: UpstreamEvents;
  private readonly onEndedUnannounced: () => void;
  private readonly statusListeners = new Set<(data: Record<string, unknown>) => void>();
  private latestStatus: Record<string, unknown> | null = null;
  /** The prompt_id running on the backend, known or not. */
  private running: string | null = null;
  /** How many times the socket told which prompt runs (an event naming a prompt, an end) or closed: a reading of ComfyUI's queue is taken only if none came while it was read. */
  private runningNews = 0;
  private expectedAnswers = 0;
  /** Every held event in the order it came (so the oldest expire first), with some already delivered. */
  private held: Held[] = [];
  /** The held events not delivered: their count, their bytes, and each prompt's in order. */
  private heldCount = 0;
  private heldBytes = 0;
  private readonly heldById = new Map<string, Held[]>();
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(options: EventHubOptions) {
    this.backend = options.backend;
    this.jobs = options.jobs;
    this.observer = options.observer;
    this.isShownEarlierFile = options.isShownEarlierFile;
    this.log = options.log.child({ backend: options.backend });
    this.ownsSinks = options.sinks === undefined;
    this.sinks = options.sinks ?? new ClientSinkRegistry({ log: this.log, ...(options.relay ? { relay: options.relay } : {}) });
    this.limits = { ...DEFAULT_HOLD, ...options.hold };
    this.onEndedUnannounced = options.onEndedUnannounced ?? (() => undefined);
    this.upstream = new UpstreamEvents({
      ...options.socket,
      upstream: options.upstream,
      log: this.log,
      listener: {
        opened: () => options.onConnected?.(),
        closed: () => {
          this.running = null;
          this.runningNews += 1;
        },
        text: (message, raw) => this.onText(message, raw),
        binary: (frame) => this.onBinary(frame),
      },
    });
  }

  /** Connects to ComfyUI (and reconnects whenever the socket drops, until `close`), and takes the other replicas' events. */
  start(): void {
    this.upstream.open();
    if (this.ownsSinks) this.sinks.start();
  }

  /** The `client_id` every prompt forwarded to this backend must carry. */
  get clientId(): string {
    return this.upstream.clientId;
  }

  /** Whether the socket to ComfyUI is open (prompts that run while it is not lose their events). */
  get connected(): boolean {
    return this.upstream.connected;
  }

  /** Reconnects now if the socket is waiting to (the backend answers its health checks again). */
  reconnectNow(): void {
    this.upstream.reconnectNow();
  }

  /** ComfyUI's feature flags, or null until it answers (older releases never do). */
  featureFlags(): Record<string, unknown> | null {
    return this.upstream.featureFlags();
  }

  /** Calls `listener` with ComfyUI's feature flags whenever it answers the hub's; returns the function that stops it. */
  onFeatureFlags(listener: (flags: Record<string, unknown>) => void): () => void {
    return this.upstream.onFeatureFlags(listener);
  }

  /** The `data` of ComfyUI's latest `status` broadcast (`{status: {exec_info: {queue_remaining}}}`), or null before the first. */
  status(): Record<string, unknown> | null {
    return this.latestStatus;
  }

  /**
   * The prompt_id ComfyUI runs now, as its latest events tell (before the job registry records them); null
   * while none runs or the socket is closed.
   */
  runningPrompt(): string | null {
    return this.running;
  }

  /**
   * Call just before reading ComfyUI's `GET /queue`; call the returned function with the prompt_id it lists
   * as running (null: none). The hub takes it as the prompt running now if its socket is open and heard no
   * event naming a prompt, and no end, meanwhile: after a reconnect nothing else tells it until ComfyUI's
   * next event of the prompt, and interrupts wait for that (see interruptIfRunning).
   */
  runningFromQueue(): (running: string | null) => void {
    const newsBefore = this.runningNews;
    return (running) => {
      if (this.runningNews === newsBefore && this.connected) this.running = running;
    };
  }

  /** Calls `listener` with the `data` of every `status` broadcast from now on; returns the function that stops it. */
  onStatus(listener: (data: Record<string, unknown>) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  register(keyId: string, clientId: string, sink: ClientSink): () => void {
    return this.sinks.register(keyId, clientId, sink);
  }

  /**
   * Call before forwarding a prompt: until the returned function is called, events of prompts the
   * registry does not know yet are held (a ComfyUI may run a prompt before its answer names it).
   * Call the returned function once the answer failed, or after `answered` when it named the prompt.
   */
  expectAnswer(): () => void {
    this.expectedAnswers += 1;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.expectedAnswers -= 1;
    };
  }

  /** How many messages the socket to ComfyUI has received: read just before a prompt is sent, for `promptAccepted`. */
  get messagesReceived(): number {
    return this.upstream.messagesReceived;
  }

  /** ComfyUI accepted a prompt sent when `messagesReceived` was `receivedBefore`: a socket that hears nothing after it is reopened (UpstreamEvents.promptAccepted). */
  promptAccepted(receivedBefore: number): void {
    this.upstream.promptAccepted(receivedBefore);
  }

  /** Call once the job ComfyUI knows by `upstreamId` is in the registry: its held events are delivered, in order. */
  answered(upstreamId: string): void {
    const job = this.jobs.byUpstreamId(this.backend, upstreamId);
    if (job) this.deliverHeld(job, upstreamId);
  }

  /** Closes the socket to ComfyUI, stops taking the other replicas' events and drops held events. */
  close(): void {
    this.upstream.close();
    if (this.ownsSinks) this.sinks.close();
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.held = [];
    this.heldCount = 0;
    this.heldBytes = 0;
    this.heldById.clear();
    this.cachedNodes.clear();
  }

  private onText(message: UpstreamMessage, raw: string): void {
    const { type, data } = message;
    if (type === 'status') {
      this.latestStatus = data;
      for (const listener of this.statusListeners) listener(data);
      return;
    }
    const promptId = typeof data.prompt_id === 'string' ? data.prompt_id : null;
    const ends = END_EVENTS.has(type) || (type === 'executing' && data.node === null);
    // A backend runs one prompt at a time: any event of a prompt that has not ended says it is the one running.
    if (promptId !== null || ends) this.runningNews += 1;
    if (promptId !== null && !ends) this.running = promptId;
    const owner = promptId ?? (EVENTS_OF_THE_RUNNING_PROMPT.has(type) ? this.running : null);
    // An end event clears the running prompt first: one still running at `executing` with no node ended without one.
    const unannounced = type === 'executing' && ends && promptId !== null && promptId === this.running;
    if (ends && owner === this.running) this.running = null;
    if (owner !== null) this.dispatch(owner, { kind: 'text', message, raw, receivedAt: Date.now() / 1000 });
    if (unannounced) this.onEndedUnannounced();
  }

  private onBinary(frame: Buffer): void {
    const type = binaryFrameType(frame);
    // A type ComfyUI does not define (a custom node's own) may carry anything, of any key's: no user key's socket gets it.
    if (type !== PREVIEW_IMAGE && type !== TEXT && type !== PREVIEW_IMAGE_WITH_METADATA) return giveBackMessage(frame);
    const preview = type === PREVIEW_IMAGE_WITH_METADATA ? readPreviewWithMetadata(frame) : null;
    const promptId = preview?.metadata.prompt_id;
    const owner = typeof promptId === 'string' ? promptId : this.running;
    if (owner !== null) this.dispatch(owner, { kind: 'binary', frame, preview, receivedAt: Date.now() / 1000 });
  }

  /** Delivers an event to its job, or holds it while the job may still become known, or drops it. */
  private dispatch(upstreamId: string, event: Incoming): void {
    const job = this.jobs.byUpstreamId(this.backend, upstreamId);
    if (job) {
      this.deliverHeld(job, upstreamId);
      this.deliver(job, upstreamId, event);
    } else if (this.expectedAnswers > 0 || this.heldById.has(upstreamId)) {
      this.hold(upstreamId, event);
    }
  }

  private hold(upstreamId: string, event: Incoming): void {
    const bytes = event.kind === 'text' ? Buffer.byteLength(event.raw) : event.frame.length;
    if (this.heldCount >= this.limits.maxMessages || this.heldBytes + bytes > this.limits.maxBytes) {
      this.log.debug({ prompt_id: upstreamId }, 'event of an unknown prompt dropped: too many held');
      return;
    }
    const entry: Held = { upstreamId, event, bytes, until: Date.now() + this.limits.maxMs, delivered: false };
    this.held.push(entry);
    this.heldCount += 1;
    this.heldBytes += bytes;
    const ofPrompt = this.heldById.get(upstreamId);
    if (ofPrompt) ofPrompt.push(entry);
    else this.heldById.set(upstreamId, [entry]);
    if (!this.sweepTimer) this.scheduleSweep();
  }

  private deliverHeld(job: EventTarget, upstreamId: string): void {
    const mine = this.heldById.get(upstreamId);
    if (!mine) return;
    this.heldById.delete(upstreamId);
    for (const entry of mine) {
      entry.delivered = true;
      this.heldCount -= 1;
      this.heldBytes -= entry.bytes;
    }
    // Delivered entries leave the queue when they expire, or here once they outnumber the others: its length stays within twice the held events.
    if (this.held.length > 2 * this.heldCount + COMPACT_SLACK) this.held = this.held.filter((entry) => !entry.delivered);
    for (const entry of mine) this.deliver(job, upstreamId, entry.event);
  }

  /** Drops held events whose time is up, then waits for the next one's. */
  private scheduleSweep(): void {
    const first = this.held[0];
    if (!first) {
      this.sweepTimer = null;
      return;
    }
    this.sweepTimer = setTimeout(
      () => {
        const now = Date.now();
        let expired = 0;
        while (expired < this.held.length && this.held[expired]!.until <= now) expired += 1;
        let dropped = 0;
        for (const entry of this.held.splice(0, expired)) {
          if (entry.delivered) continue;
          dropped += 1;
          this.heldCount -= 1;
          this.heldBytes -= entry.bytes;
          // A prompt's events expire in the order they came: this one is the first of its prompt's.
          const ofPrompt = this.heldById.get(entry.upstreamId)!;
          ofPrompt.shift();
          if (ofPrompt.length === 0) this.heldById.delete(entry.upstreamId);
        }
        if (dropped > 0) this.log.debug({ events: dropped }, 'events of prompts never answered dropped');
        this.scheduleSweep();
      },
      Math.max(0, first.until - Date.now()),
    ).unref();
  }

  /** Sends the job's sockets an event of the gateway's own, in ComfyUI's shape (a held job ComfyUI refused when it was sent). */
  announce(job: EventTarget, type: string, data: Record<string, unknown>): void {
    this.sinks.announce(job, type, data);
  }

  private deliver(job: EventTarget, upstreamId: string, event: Incoming): void {
    if (event.kind === 'text') {
      this.observe(job.id, event.message, event.receivedAt);
      this.noteCachedNodes(job.id, event.message);
    }
    const sinks = this.sinks.sinksOf(job.key_id, job.client_id);
    const renamed = job.id !== upstreamId;
    if (event.kind === 'text') {
      if (!sinks?.size && !this.sinks.relays) return;
      const { type, data } = event.message;
      const shown = this.shownData(job, upstreamId, event.message);
      this.sinks.sendText(job, type, shown === data ? event.raw : JSON.stringify({ type, data: shown }), sinks);
      return;
    }
    const { frame, preview } = event;
    // The frame's buffer is read into again once every socket sent it has written it: counted from one, which the end of this call takes away.
    let unwritten = 1;
    const written = (): void => {
      unwritten -= 1;
      if (unwritten === 0) giveBackMessage(frame);
    };
    const send = (sink: ClientSink, data: Buffer): void => {
      unwritten += 1;
      sink.send(data, true, written);
    };
    if (!preview) {
      for (const sink of sinks ?? []) send(sink, frame);
      return written();
    }
    let someWantMetadata = false;
    for (const sink of sinks ?? []) someWantMetadata ||= sink.wantsPreviewMetadata();
    if (!someWantMetadata) {
      // Nobody reads the metadata: the plain frame is made in the frame itself, without copying the image.
      const plain = overwriteWithoutPreviewMetadata(frame, preview);
      for (const sink of sinks ?? []) send(sink, plain);
      return written();
    }
    const withMetadata =
      renamed && preview.metadata.prompt_id === upstreamId ? withPreviewMetadata({ ...preview.metadata, prompt_id: job.id }, preview.image) : frame;
    let plain: Buffer | null = null;
    for (const sink of sinks ?? []) send(sink, sink.wantsPreviewMetadata() ? withMetadata : (plain ??= withoutPreviewMetadata(preview)));
    written();
  }

  /**
   * Keeps the nodes a job's `execution_cached` lists until the job ends. A backend runs one prompt at a time, so
   * another job's entry is then of a prompt that ended unseen (while the socket was down): it is let go.
   */
  private noteCachedNodes(jobId: string, { type, data }: UpstreamMessage): void {
    if (type === 'execution_cached') {
      this.cachedNodes.clear();
      this.cachedNodes.set(jobId, new Set(nodeIds(data.nodes)));
    } else if (END_EVENTS.has(type)) {
      this.cachedNodes.delete(jobId);
    }
  }

  /**
   * An event's data as the job's key is shown it (the same object when nothing changes): with the job's id in
   * place of ComfyUI's prompt_id, and the `executed` output of a node that may be cached (see cachedNodes) without
   * the files an earlier prompt made that are not the key's (null when none is).
   */
  private shownData(job: EventTarget, upstreamId: string, { type, data }: UpstreamMessage): Record<string, unknown> {
    const renamed = job.id !== upstreamId && data.prompt_id === upstreamId ? withJobId(data, job.id) : data;
    const cached = this.cachedNodes.get(job.id);
    if (type !== 'executed' || (cached !== undefined && !cached.has(String(data.node)))) return renamed;
    const output = ownCachedOutput(data.output, (file) => this.isShownEarlierFile(job.key_id, this.backend, file));
    return output === data.output ? renamed : { ...renamed, output };
  }

  /** Tells the observer of a job's start, outputs and end; an observer that throws is logged. */
  private observe(jobId: string, { type, data }: UpstreamMessage, receivedAt: number): void {
    const at = typeof data.timestamp === 'number' ? data.timestamp / 1000 : receivedAt;
    try {
      if (type === 'execution_start') this.observer.started(jobId, at);
      else if (type === 'execution_cached') this.observer.cached(jobId, nodeIds(data.nodes));
      else if (type === 'executed') this.observer.executed(jobId, String(data.node), data.output ?? null);
      else if (type === 'execution_success') this.observer.ended(jobId, 'success', at, null);
      else if (type === 'execution_interrupted') this.observer.ended(jobId, 'interrupted', at, null);
      else if (type === 'execution_error') this.observer.ended(jobId, 'error', at, executionError(data));
    } catch (error) {
      this.log.error({ err: error, job_id: jobId, event: type }, 'job observer failed');
    }
  }
}

/** An event's data with the job's id in place of ComfyUI's prompt_id (also in `progress_state`'s nodes). */
function withJobId(data: Record<string, unknown>, jobId: string): Record<string, unknown> {
  const result: Record<string, unknown> = { ...data, prompt_id: jobId };
  const nodes = data.nodes;
  if (typeof nodes === 'object' && nodes !== null && !Array.isArray(nodes)) {
    result.nodes = Object.fromEntries(
      Object.entries(nodes).map(([id, node]) => [id, typeof node === 'object' && node !== null && 'prompt_id' in node ? { ...node, prompt_id: jobId } : node]),
    );
  }
  return result;
}

/** A job's error from ComfyUI's `execution_error`. */
function executionError(data: Record<string, unknown>): JobError {
  const text = (value: unknown): string | null => (typeof value === 'string' ? value : null);
  return {
    message: text(data.exception_message) ?? 'ComfyUI reported an execution error',
    node_id: text(data.node_id),
    node_type: text(data.node_type),
    exception_type: text(data.exception_type),
  };
}
