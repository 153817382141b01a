// The storage contracts: what the gateway needs from a key store, a usage store and a counter store.

import type { JsonNumber } from '../json/exact-json.js';
import type { PromptPolicy } from '../policy/schema.js';

export type KeyRole = 'user' | 'admin';

/** A key as stored: the public key object plus the SHA-256 of the secret. Times are Unix seconds. */
export interface KeyRecord {
  key_id: string;
  name: string;
  created_at: number;
  last_used: number | null;
  rate_limit: number;
  is_active: boolean;
  metadata: Record<string, unknown>;
  role: KeyRole;
  /** Unix seconds after which the key is refused (KEY_EXPIRED); null for never. */
  expires_at: number | null;
  /** The first characters of the plaintext, kept to recognise a key in lists; null for keys made elsewhere. */
  key_prefix: string | null;
  /** Lowercase hex SHA-256 of the plaintext key; never leaves the gateway. */
  key_hash: string;
  /** After a rotation: the hash of the replaced secret, still accepted until `previous_key_valid_until`. */
  previous_key_hash: string | null;
  previous_key_valid_until: number | null;
  /** Jobs the key may have at once, held, queued or running (429 QUEUE_LIMIT beyond); null for no quota. */
  max_queued: number | null;
  /** Jobs of the key that may run at once, across every backend (the others wait, held); null for no quota. */
  max_running: number | null;
  /** ComfyUI execution seconds the key may use per UTC day (429 EXECUTION_BUDGET_EXCEEDED beyond); null for no quota. */
  daily_execution_seconds: number | null;
  /** What the key's prompts may hold (403 PROMPT_POLICY beyond; see policy/check.ts); null: none of its own (a user key gets `--default-policy`). */
  policy: PromptPolicy | null;
  /** Where the key's jobs' events are POSTed when a run names no webhook of its own (used only with `--webhook-secret`); null for none. */
  webhook_url: string | null;
}

/** The job quota fields of a key: each a whole number from 1 to `MAX_KEY_QUOTA`, or null for no quota. */
export const KEY_QUOTA_FIELDS = ['max_queued', 'max_running', 'daily_execution_seconds'] as const;

/** The largest value of a quota field (it fits a PostgreSQL `integer`). */
export const MAX_KEY_QUOTA = 1_000_000_000;

/** A key's job quotas. */
export type KeyQuotas = Pick<KeyRecord, (typeof KEY_QUOTA_FIELDS)[number]>;

/** The key object clients see: everything but the hashes. */
export type PublicKeyRecord = Omit<KeyRecord, 'key_hash' | 'previous_key_hash'>;

/** The fields a key update may change (the management API allows fewer: see server/key-input.ts). */
export type KeyPatch = Partial<Omit<KeyRecord, 'key_id' | 'created_at'>>;

/**
 * Where keys live. Reads are synchronous and served from memory (they sit on every request's path);
 * writes resolve only once the change is durable, and reject with the cause if it could not be made.
 */
export interface KeyStore {
  /** Loads the store. Throws `StoreCorruptError` if a file exists but cannot be read. */
  open(): Promise<void>;
  /** The key whose current or previous (rotated-out) secret has this hash. */
  findByHash(keyHash: string): KeyRecord | undefined;
  get(keyId: string): KeyRecord | undefined;
  list(): KeyRecord[];
  /** Every key's id, without reading the keys (which a large store holds only as an index). */
  ids(): IterableIterator<string>;
  size(): number;
  /** True while no key was ever stored here: deleting every key does not make a store pristine again. */
  isPristine(): boolean;
  /**
   * Adds a key. With `onlyIfPristine`, adds it only while the store has never held a key, checked and
   * written as one step (first-key bootstrap); resolves false when another key got there first.
   */
  create(record: KeyRecord, options?: { onlyIfPristine?: boolean }): Promise<boolean>;
  /** Applies a patch; resolves the updated record, or undefined when no key has that id. */
  update(keyId: string, patch: KeyPatch): Promise<KeyRecord | undefined>;
  /** Removes a key; resolves false when no key has that id. */
  delete(keyId: string): Promise<boolean>;
  /** Notes a use of the key; persisted in batches, never on the request path. */
  touch(keyId: string, at: number): void;
  /** Resolves when the store can take writes; rejects with the reason otherwise. */
  checkWritable(): Promise<void>;
  /**
   * Calls `listener` with a key's id and record (undefined once deleted) after each change applied here,
   * this process's own and those another process (the CLI, another replica) wrote to the same files or
   * database; returns a function that stops it. Absent where no other process changes keys behind the gateway's API.
   */
  onKeyChange?(listener: (keyId: string, key: KeyRecord | undefined) => void): () => void;
  /** Persists anything batched and releases files and timers. */
  close(): Promise<void>;
}

/**
 * Keys read and written one at a time, for a process that does not hold them all (the CLI): on
 * PostgreSQL each call is a query for the rows it needs; writes are announced to the gateways as a
 * `KeyStore`'s are.
 */
export interface KeyRows {
  /** The key with this id, or undefined when there is none (or it was deleted). */
  get(keyId: string): Promise<KeyRecord | undefined>;
  /** Adds a key with a new key_id (on PostgreSQL, rejects when that key_id was ever used). */
  create(record: KeyRecord): Promise<void>;
  /** Applies a patch; resolves the updated record, or undefined when no key has that id. */
  update(keyId: string, patch: KeyPatch): Promise<KeyRecord | undefined>;
  /** Removes a key; resolves false when no key has that id. */
  delete(keyId: string): Promise<boolean>;
  /**
   * Calls `onPage` with every key, oldest first, a page at a time (never all of them at once on
   * PostgreSQL); the next page is handed over once the promise `onPage` returns, if any, resolves.
   */
  eachPage(onPage: (records: KeyRecord[]) => void | Promise<void>): Promise<void>;
}

/**
 * The usage a command reports, read and never written (no appends, compactions or retention deletes),
 * as `KeyRows` is for keys: on PostgreSQL, a call reads the rows of the keys it names alone.
 */
export interface UsageRows {
  /** The usage of `keyIds` (their days from `fromDay` on, every day when not given), to report from. */
  ofKeys(keyIds: readonly string[], fromDay?: string): Promise<UsageStore>;
  /**
   * Calls `onPage` with the ids of the keys that have usage but are no key now (deleted since), in
   * key_id order, a page at a time, each once the promise `onPage` returns, if any, resolves.
   */
  eachPageOfKeysGone(onPage: (keyIds: string[]) => void | Promise<void>): Promise<void>;
}

/** One counted request, in the reference's `api_usage.json` record format. */
export interface UsageRecord {
  key_id: string;
  endpoint: string;
  timestamp: number;
  duration: number;
  success: boolean;
  metadata: { method: string; status: number };
}

/** The totals of one key on one UTC day. */
export interface DailyTotals {
  requests: number;
  successes: number;
  failures: number;
  duration: number;
  rate_limited: number;
  /** Prompts admitted (0 in data from before job metering). */
  prompts: number;
  /** Jobs that ran, counted on the day they finished. */
  prompts_run: number;
  /** Seconds those jobs spent executing in ComfyUI. */
  execution_seconds: number;
  /** Files those jobs produced. */
  outputs: number;
}

/** Every field of a day's totals, in the order stores keep them (a file's day bucket, the `usage_daily` columns). */
export const DAILY_TOTALS_FIELDS = [
  'requests',
  'successes',
  'failures',
  'duration',
  'rate_limited',
  'prompts',
  'prompts_run',
  'execution_seconds',
  'outputs',
] as const satisfies ReadonlyArray<keyof DailyTotals>;

/** Where usage goes. Recording is synchronous and buffered; the store persists in the background. */
export interface UsageStore {
  open(): Promise<void>;
  record(record: UsageRecord): void;
  /** Notes a request refused with 429; counted per day, not as a usage record. */
  recordRateLimited(keyId: string, at: number): void;
  /** Notes a prompt admitted for a key, counted on the UTC day of `at` (Unix seconds). */
  recordPromptAdmitted(keyId: string, at: number): void;
  /**
   * Notes a job that ran, counted on the UTC day of `at` (Unix seconds: when it finished), with the
   * seconds it executed and the files it produced (a value that is not a finite positive number counts
   * as 0; outputs are rounded down to a whole number).
   */
  recordJobRun(keyId: string, at: number, executionSeconds: number, outputs: number): void;

  /** Totals per UTC day (`YYYY-MM-DD`) for one key, for days from `fromDay` on. */
  dailyTotals(keyId: string, fromDay: string): Map<string, DailyTotals>;
  /** Counted requests of a key since `since` (Unix seconds), to the hour; covers at least the last 24 hours. */
  requestsSince(keyId: string, since: number): number;
  /** `dailyTotals` summed over every key, kept as running sums (it costs the same however many keys there are). */
  dailyTotalsOfAll(fromDay: string): Map<string, DailyTotals>;
  /** `requestsSince` summed over every key, kept as running sums. */
  requestsOfAllSince(since: number): number;
  /** Ids of every key with any usage. */
  keyIds(): string[];
  /** Start times (Unix seconds) of the counted requests of the last `windowSeconds`, per key. */
  recentRequestTimes(windowSeconds: number, now: number): Map<string, number[]>;
  /** Creates the usage file if it does not exist yet (it appears with the first key). */
  ensureCreated(): Promise<void>;
  /** Writes everything recorded so far to disk. */
  flush(): Promise<void>;
  /** The last error of a background write, or null while writes succeed. */
  lastWriteError(): Error | null;
  close(): Promise<void>;
}

/** The outcome of counting one request against a key's limit. */
export interface HitResult {
  allowed: boolean;
  limit: number;
  /** Requests left in the window after this one. */
  remaining: number;
  /** Unix seconds when the oldest counted request leaves the window. */
  resetAt: number;
}

/** Counts requests per key in a sliding window. `hit` checks and counts as one atomic step. */
export interface CounterStore {
  /** Synchronous where the store answers at once (in this process's memory), so a request waits for no turn of the event loop. */
  hit(keyId: string, limit: number, now: number): HitResult | Promise<HitResult>;
  /** Seeds the windows with requests counted before a restart. */
  restore(times: Map<string, number[]>, now: number): void;
  close(): Promise<void>;
}

/** What a key can own: a prompt, a WebSocket clientId, a file (an upload or an output), given by id. */
export type OwnedKind = 'prompt' | 'client' | 'file';

/** The owner recorded for the clientIds of the gateway's own sockets, so no key (admin or not, on any replica) may use one. */
export const GATEWAY_CLIENT_OWNER = ':gateway';

/**
 * Which key owns what, so that user keys see only their own work. Lookups are synchronous (from
 * memory); claims are durable when they resolve.
 */
export interface OwnershipStore {
  open(): Promise<void>;
  ownerOf(kind: OwnedKind, id: string): string | undefined;
  /**
   * Makes `keyId` the owner unless another key already is; resolves the owner after the call. Prompt
   * and clientId claims expire (see claim-retention.ts); a clientId claim is renewed by its owner's use;
   * a new claim of a key that holds its share of the kind forgets the key's own oldest of it.
   * @throws GatewayError CLAIMS_FULL (503) when a new claim would pass the cap of its kind
   */
  claim(kind: OwnedKind, id: string, keyId: string): Promise<string>;
  /** Forgets the claim if `keyId` holds it (a prompt ComfyUI refused); another key's claim is left alone. */
  release(kind: OwnedKind, id: string, keyId: string): Promise<void>;
  /** The key's prompts, newest first, at most `limit`, with whether their outputs were already recorded. */
  recentPrompts(keyId: string, limit: number): Array<{ promptId: string; outputsRecorded: boolean }>;
  /** Notes that a prompt's outputs were all recorded, so they need not be looked up again. */
  markOutputsRecorded(promptId: string): Promise<void>;
  /** The ComfyUI user (`--multi-user`) made for a key, if any. */
  comfyUserOf(keyId: string): string | undefined;
  setComfyUser(keyId: string, comfyUser: string): Promise<void>;
  close(): Promise<void>;
}

/** A browser session: an opaque id in a cookie, standing for a key until it expires. */
export interface Session {
  keyId: string;
  /** The hash of the secret signed in with: the session ends when the key no longer accepts that secret. */
  keyHash: string;
  createdAt: number;
  expiresAt: number;
}

/** Live sessions a key may hold; signing in once more drops its oldest. */
export const MAX_SESSIONS_PER_KEY = 20;

/** Server-side sessions. Only a hash of each session id is stored. */
export interface SessionStore {
  open(): Promise<void>;
  /**
   * Creates a session for a key signed in with the secret of `keyHash`, dropping the key's oldest
   * sessions beyond MAX_SESSIONS_PER_KEY; resolves its id (the cookie value), durable when it resolves.
   */
  create(keyId: string, keyHash: string, ttlSeconds: number, now: number): Promise<{ id: string; session: Session }>;
  /** The live session with this id, or undefined when unknown or expired. */
  find(id: string, now: number): Session | undefined;
  delete(id: string): Promise<void>;
  /** Ends every session of a key. */
  deleteForKey(keyId: string): Promise<void>;
  close(): Promise<void>;
}

/** One line of the audit trail: who did what to which key, when and from where. */
export interface AuditEntry {
  /** Unix seconds. */
  ts: number;
  /** A key_id, or `local` (this machine, without a key), `bootstrap` (the first key) or `cli`. */
  actor: string;
  /** `key.create`, `key.update`, `key.disable`, `key.enable`, `key.rotate`, `key.delete`, `session.sign_in`, `session.sign_out`. */
  action: string;
  key_id?: string;
  ip?: string;
  details?: Record<string, unknown>;
}

/** An append-only audit trail. */
export interface AuditStore {
  /** Appends an entry; durable when it resolves. */
  append(entry: AuditEntry): Promise<void>;
  /** Entries at or after `since` (Unix seconds), oldest first, at most `limit`. */
  list(options: { since: number; limit: number }): Promise<AuditEntry[]>;
}

/** A store file exists but cannot be read; the gateway refuses to start rather than overwrite it. */
export class StoreCorruptError extends Error {
  readonly file: string;
  constructor(file: string, reason: string) {
    super(
      `${file} cannot be read (${reason}). comfy-gate never overwrites a file it cannot read: ` +
        `restore it from a backup, repair it, or move it aside to start with an empty store.`,
    );
    this.name = 'StoreCorruptError';
    this.file = file;
  }
}

/** Where a job is: waiting in the gateway, sent to ComfyUI, running there, or finished one way or another. */
export type JobStatus = 'held' | 'queued' | 'running' | 'success' | 'error' | 'interrupted' | 'cancelled';

/** Statuses of a job that is not finished: it counts against `max_queued`. */
export const ACTIVE_JOB_STATUSES: readonly JobStatus[] = ['held', 'queued', 'running'];

/** A file a job produced (from ComfyUI's `executed` events or its history entry). */
export interface JobOutput {
  /** The node that produced it. */
  node: string;
  filename: string;
  subfolder: string;
  /** `output` or `temp`. */
  type: string;
}

/** Why a job failed: ComfyUI's `execution_error` (node, type, message) or the prompt's node errors. */
export interface JobError {
  message: string;
  node_id?: string | null;
  node_type?: string | null;
  exception_type?: string | null;
  /** ComfyUI's `node_errors` of a refused prompt. */
  node_errors?: Record<string, unknown>;
}

/**
 * One prompt admitted through the gateway. Times are Unix seconds (fractions kept).
 * `id` is the id the key knows the job by. Once ComfyUI has answered, it is ComfyUI's `prompt_id`
 * (`upstream_id` equals it) unless the key was already told another id (a held job sent later to a
 * ComfyUI that ignores client prompt ids): then `upstream_id` is ComfyUI's and `id` stays.
 */
export interface JobRecord {
  id: string;
  key_id: string;
  /** The client's own client_id (ComfyUI sees the gateway's), or null. */
  client_id: string | null;
  /** The backend it was placed on (the backend's name; `default` when there is one). A held job's is where it was last sent, or ''. */
  backend: string;
  /** ComfyUI's prompt_id on that backend; null until ComfyUI has answered. */
  upstream_id: string | null;
  status: JobStatus;
  admitted_at: number;
  forwarded_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  /** From `execution_start` to `execution_success`/`_error`/`_interrupted`; null until it ends. */
  execution_seconds: number | null;
  outputs: JobOutput[];
  error: JobError | null;
  /** Until it runs: the body to send to ComfyUI (with the gateway's client_id in it), kept so that a job a dead backend lost can be sent again; null once it runs or ends. */
  request: Record<string, unknown> | null;
  /** Times it was sent to a backend; absent until it is. Kept beside `request`, so that recording a send does not write the kept prompt again. */
  sends?: number;
  /** Admin keys' `front`: released before other held jobs. */
  front: boolean;
  /** Where the job's events are POSTed, and which; null for none (and for jobs stored before webhooks). */
  webhook: JobWebhook | null;
}

/** The events a job's webhook may be sent. */
export type WebhookEvent = 'job.started' | 'job.succeeded' | 'job.failed' | 'job.cancelled';

/** Every webhook event, in the order a job can have them. */
export const WEBHOOK_EVENTS: readonly WebhookEvent[] = ['job.started', 'job.succeeded', 'job.failed', 'job.cancelled'];

/** The events a webhook gets when it names none: a job's end, whichever it is. */
export const DEFAULT_WEBHOOK_EVENTS: readonly WebhookEvent[] = ['job.succeeded', 'job.failed', 'job.cancelled'];

/** A job's webhook: its URL and the events it is sent. */
export interface JobWebhook {
  url: string;
  events: WebhookEvent[];
}

/** The fields of a job that change after it is created. */
export type JobPatch = Partial<Omit<JobRecord, 'id' | 'key_id' | 'admitted_at'>>;

/** A place in this process's order of admission, as `JobStore.heldPage` hands it back to go on from. */
export interface AdmissionPlace {
  readonly admittedAt: number;
  /** Breaks ties between jobs admitted at the same time. */
  readonly order: number;
}

/**
 * The job registry. Reads are synchronous, from memory (every job within the retention is held
 * there; with PostgreSQL, replicated from the database like ownership); writes resolve once durable.
 */
export interface JobStore {
  open(): Promise<void>;
  /** The job with this id (the id its key knows). */
  get(id: string): JobRecord | undefined;
  /** The job that ComfyUI knows by `upstreamId` on `backend`. */
  byUpstreamId(backend: string, upstreamId: string): JobRecord | undefined;
  /** How many jobs are queued or running on `backend` (placement reads it). */
  sentTo(backend: string): number;
  /** The newest job that produced this output file, however spelt (in another case, `./sub` for `sub`, as ownership ids read it; the file is on that job's backend). */
  producerOf(type: string, subfolder: string, filename: string): JobRecord | undefined;
  /**
   * The prefixes (`subfolder/name`) that known jobs saved output files under, of this shape (see prefixShape:
   * folded case, digits as `#`), each with the keys whose jobs did; costs the prefixes of the shape.
   */
  outputPrefixes(shape: string): Array<{ prefix: string; keyIds: string[] }>;
  /**
   * Jobs newest admitted first: one key's, or every key's when `keyId` is undefined; only the given
   * statuses when `statuses` is set. Costs the page, not the whole registry.
   */
  list(options: { keyId?: string; statuses?: readonly JobStatus[]; offset: number; limit: number }): JobRecord[];
  /** How many jobs `list` would find without offset and limit. */
  count(options: { keyId?: string; statuses?: readonly JobStatus[] }): number;
  /**
   * Every held, queued and running job (only those of `statuses` when given), oldest admitted first (for
   * the scheduler and restart). Costs the jobs of those statuses, not the whole registry.
   */
  active(statuses?: readonly JobStatus[]): JobRecord[];
  /**
   * Up to `limit` held jobs, oldest admitted first, from just after `after` (a place an earlier page
   * ended at; undefined: from the oldest), with the place this page ends at. Costs the page, so that a
   * long held list can be read a slice at a time while jobs come and go.
   */
  heldPage(after: AdmissionPlace | undefined, limit: number): { jobs: JobRecord[]; end: AdmissionPlace | undefined };
  /** Adds a job; resolves false (and changes nothing) when a job has that id already. */
  create(job: JobRecord): Promise<boolean>;
  /**
   * Applies a patch; resolves the job after it, or undefined when there is none with that id. With
   * `ifStatus`, only while the job has that status (checked and written as one step, across replicas
   * too): how a held job is taken for sending or cancelled by exactly one caller.
   */
  update(id: string, patch: JobPatch, options?: { ifStatus?: JobStatus }): Promise<JobRecord | undefined>;
  /**
   * Calls `listener` each time changes other replicas made are taken into memory (a job of theirs
   * ended: room for this one's held jobs); returns how to stop. Only a store shared by replicas has it.
   */
  onChangedElsewhere?(listener: () => void): () => void;
  /** Finished jobs older than the retention (`--job-retention-days`) are forgotten, in batches, in the background. */
  /** Persists anything pending and releases files, connections and timers. */
  close(): Promise<void>;
}

/** The type of a workflow input, which says what a run may give for it. */
export type WorkflowInputType = 'integer' | 'number' | 'string' | 'boolean' | 'enum' | 'image';

/** One input of a registered workflow: the node input it sets, its type and its bounds. */
export interface WorkflowInput {
  /** The id of the node in the graph. */
  node: string;
  /** The name of that node's input. */
  input: string;
  type: WorkflowInputType;
  default?: unknown;
  /** Bounds as the admin wrote them (see parseExactJson), compared as numbers (jsonNumber). */
  min?: JsonNumber;
  max?: JsonNumber;
  /** The allowed values of an `enum` input. */
  values?: Array<string | JsonNumber>;
  description?: string;
}

/** Which inputs of a workflow serve `POST /v1/images/generations` (OpenAI's images API): each names an input of the workflow. */
export interface OpenAiImagesMapping {
  /** A string input: the request's `prompt`. */
  prompt: string;
  /** Integer inputs: the request's `size` (`WIDTHxHEIGHT`); both or neither. */
  width?: string;
  height?: string;
  /** An integer input: the request's `n` (a batch size). */
  n?: string;
}

/** A named workflow an admin registered: an API-format graph and the inputs a run may set. */
export interface WorkflowRecord {
  name: string;
  /** The API-format graph, as POST /prompt takes it. */
  prompt: Record<string, unknown>;
  description: string | null;
  inputs: Record<string, WorkflowInput>;
  /** Present on the one workflow that serves `POST /v1/images/generations`. */
  openai_images?: OpenAiImagesMapping;
  /** Unix seconds. */
  created_at: number;
  updated_at: number;
}

/** The registered workflows. Read from the store on every call, so every replica (and the CLI) sees each change at once. */
export interface WorkflowStore {
  /** Every workflow, by name. */
  list(): Promise<WorkflowRecord[]>;
  get(name: string): Promise<WorkflowRecord | undefined>;
  /**
   * Registers or replaces a workflow; `created_at` of a replaced one is kept. Resolves the stored
   * record and whether it was new.
   */
  put(record: Omit<WorkflowRecord, 'created_at' | 'updated_at'>, now: number): Promise<{ record: WorkflowRecord; created: boolean }>;
  /** Removes a workflow; resolves false when there was none of that name. */
  delete(name: string): Promise<boolean>;
}

/** Where a webhook delivery is: being tried, delivered (a 2xx answer) or given up on. */
export type DeliveryState = 'pending' | 'delivered' | 'failed';

/** One try of a delivery: when (Unix seconds), the answer's status or the error, and how long it took. */
export interface DeliveryAttempt {
  at: number;
  /** The HTTP status of the answer; null when there was none (`error` says why). */
  status: number | null;
  error: string | null;
  duration_ms: number;
}

/** One event of one job, to be POSTed to the job's webhook. Times are Unix seconds. */
export interface WebhookDelivery {
  /** Derived from the job id and the event, so the same event is enqueued once. */
  id: string;
  job_id: string;
  key_id: string;
  event: WebhookEvent;
  url: string;
  /** The JSON text POSTed, the same on every attempt. */
  body: string;
  state: DeliveryState;
  created_at: number;
  /** When the next attempt is due; null once delivered or failed. */
  next_attempt_at: number | null;
  attempts: DeliveryAttempt[];
}

/** A claim on a due delivery: only its holder records the attempt. */
export interface DeliveryClaim {
  delivery: WebhookDelivery;
  token: string;
}

/**
 * How a claim shares its room among keys: each key's due deliveries take turns with the other keys'
 * (oldest first within a key), and the caller holds at most `perKey` attempts of one key at once.
 */
export interface ClaimShares {
  perKey: number;
  /** The attempts of each key the caller holds now (claimed and not yet recorded). */
  held: ReadonlyMap<string, number>;
}

/** One of a key's webhook attempt leases (DeliveryLeases), given back when its attempt ends. */
export interface DeliveryLease {
  release(): void;
}

/**
 * Leases on each key's webhook attempts in flight, shared by the replicas, so that at most a cap of one
 * key's attempts are sent at once by all of them together.
 */
export interface DeliveryLeases {
  /**
   * One of the key's `cap` leases, expiring by itself `ttlMs` from now (so a crashed holder's leases
   * free themselves), or null when `cap` unexpired leases of the key are held, by any replica. Never
   * rejects: while the shared count cannot be used, it resolves a lease that holds nothing shared.
   */
  take(keyId: string, cap: number, ttlMs: number): Promise<DeliveryLease | null>;
  close(): Promise<void>;
}

/**
 * The outbox of webhook deliveries. Writes resolve once durable. With several replicas on one store,
 * `claimDue` hands each due delivery to one replica at a time (a lease), so each attempt is sent once.
 */
export interface WebhookDeliveryStore {
  open(): Promise<void>;
  /** Adds a pending delivery, due at once; resolves false (and changes nothing) when one has that id already. */
  enqueue(delivery: WebhookDelivery): Promise<boolean>;
  /** Which of these ids are stored. */
  existing(ids: readonly string[]): Promise<Set<string>>;
  /**
   * Pending deliveries due at `now`, at most `limit`, each leased for `leaseSeconds` to the caller, in
   * turns by key (round robin), oldest due first within a key. A delivery's turn is how many attempts
   * of its key the caller would then hold (`shares.held` plus its rank in its key); the earliest turns
   * are claimed, the oldest due first among equal turns, and with `shares` none beyond `perKey`.
   */
  claimDue(now: number, limit: number, leaseSeconds: number, shares?: ClaimShares): Promise<DeliveryClaim[]>;
  /**
   * Records an attempt of a claimed delivery and what follows: `next_attempt_at` for another try, or
   * the state it ends in; resolves false when the claim was lost (its lease ran out and another took it).
   */
  recordAttempt(claim: DeliveryClaim, attempt: DeliveryAttempt, next: { state: DeliveryState; next_attempt_at: number | null }): Promise<boolean>;
  /** Gives a claimed delivery back without an attempt: it is due again at once, for any replica. */
  releaseClaim(claim: DeliveryClaim): Promise<void>;
  get(id: string): Promise<WebhookDelivery | undefined>;
  /** Deliveries newest first, filtered by job and state; `limit + 1` are read, so the answer says whether more follow. */
  list(options: { jobId?: string; state?: DeliveryState; offset: number; limit: number }): Promise<{ deliveries: WebhookDelivery[]; hasMore: boolean }>;
  close(): Promise<void>;
}
