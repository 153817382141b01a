// The gateway's resolved configuration: every setting with its type and default.

import type { UserRoute } from '../isolation/user-routes.js';
import type { PromptPolicy } from '../policy/schema.js';

/** off: a transparent proxy; optional: keys are checked when presented; required: every request needs a key. */
export type AuthMode = 'off' | 'optional' | 'required';

/** What the rate limiter does while Redis cannot be reached (see docs/operating.md "Scale-out"). */
export const REDIS_FAILURE_MODES = ['closed', 'open', 'local'] as const;
export type RedisFailureMode = (typeof REDIS_FAILURE_MODES)[number];

export interface GatewayConfig {
  mode: AuthMode;
  /** Address to listen on. */
  listen: string;
  port: number;
  /** The ComfyUI servers behind the gateway (`--upstream`, repeatable, or the children of `-- COMMAND`), at least one. */
  backends: BackendConfig[];
  /** Folder of `api_keys.json` and `api_usage.json`. */
  userDirectory: string;
  /** Routes the route table does not know that user keys may use (`--user-route`). */
  userRoutes: UserRoute[];
  /** Path prefixes anyone may GET or HEAD in required mode. */
  publicPaths: string[];
  /** Start on a store folder or file that group, others or another user can write (with a warning) instead of refusing. */
  allowUnsafeStorePermissions: boolean;
  /** Days raw usage records are kept; daily totals are kept for good. */
  usageRetentionDays: number;
  /** Jobs the gateway keeps queued or running in ComfyUI at most; the rest wait in its fair queue. */
  upstreamQueueDepth: number;
  /** Days a finished job stays in the job registry (held, queued and running jobs are kept however old). */
  jobRetentionDays: number;
  /** How long to wait for ComfyUI's response headers, in milliseconds. */
  upstreamTimeoutMs: number;
  /** How often both ends of a relayed WebSocket are pinged, in milliseconds. */
  wsPingIntervalMs: number;
  /** How many relayed WebSockets one key may hold open at once. */
  wsMaxPerKey: number;
  /** The prompt policy of user keys without one of their own (`--default-policy FILE`); null for none. */
  defaultPolicy: PromptPolicy | null;
  /** The secret webhook deliveries are signed with (`--webhook-secret`); null: webhooks are refused. */
  webhookSecret: string | null;
  /** Let webhooks and image URLs reach loopback, private and link-local addresses (`--webhook-allow-private`). */
  webhookAllowPrivate: boolean;
  /** Image URLs of workflow runs the whole gateway fetches at once, a quarter of them (rounded up) for one key; one more waits for a place (`--max-image-fetches`). */
  maxImageFetches: number;
  /** The delay before a failed webhook delivery's first retry, in seconds; the whole schedule scales with it (`--webhook-retry-base`). */
  webhookRetryBaseSeconds: number;
  /** How long a browser session lasts, in seconds. */
  sessionTtlSeconds: number;
  /** Addresses and CIDR blocks of reverse proxies whose X-Forwarded-* headers are believed. */
  trustedProxies: string[];
  /** Host names answered besides IP addresses and localhost; `.example.com` also allows subdomains. Other names get 421. */
  allowedHosts: string[];
  /** Turns off key management without a key from this machine. */
  noLocalAdmin: boolean;
  /** Origins (CSP sources) allowed to frame ComfyUI's pages; empty: none may. */
  frameAncestors: string[];
  logLevel: LogLevel;
  /** Serve /metrics to anyone (for a scraper on a private network) instead of admin keys only. */
  metricsPublic: boolean;
  /** Label request and 429 counters with key_id (one series per key). */
  metricsPerKey: boolean;
  /** PostgreSQL URL holding keys, usage, sessions, ownership and the audit trail; null keeps them in JSON files. */
  databaseUrl: string | null;
  /** Redis URL holding the rate-limit counters, shared by every replica; null counts in this process's memory. */
  redisUrl: string | null;
  /** Prefix of every Redis key the gateway writes, so several deployments (or test runs) can share one Redis. */
  redisKeyPrefix: string;
  /** How long one Redis call may take before it counts as a failure, in milliseconds. */
  redisTimeoutMs: number;
  /** closed: 503 RATE_LIMIT_UNAVAILABLE; open: requests pass uncounted; local: each replica enforces its share in memory. */
  redisFailure: RedisFailureMode;
}

/** One ComfyUI server behind the gateway. */
export interface BackendConfig {
  /** Its name in job records, /readyz, /metrics and the dashboard. */
  name: string;
  /**
   * Its base URL (http or https). With `child`, `loadServeConfig` leaves port 0 here and
   * `createGateway` puts the child's loopback address in its place.
   */
  url: URL;
  /** Its share of the work: placement divides its jobs in flight by this (1 to 1000). */
  weight: number;
  /** A ComfyUI the gateway starts and restarts itself (`comfy-gate [flags] -- COMMAND ARGS...`); null when it runs on its own. */
  child: ChildCommand | null;
}

/** The command line of a ComfyUI the gateway runs as its child. */
export interface ChildCommand {
  /** The program, found on PATH as a shell would. */
  command: string;
  /** Its arguments; `{port}` stands for the loopback port the gateway chooses and proxies to, `{index}` for the child's number (0 to N-1). */
  args: string[];
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULTS = {
  listen: '127.0.0.1',
  port: 8188,
  upstream: 'http://127.0.0.1:8189',
  userDirectory: './user',
  usageRetentionDays: 90,
  jobRetentionDays: 30,
  upstreamTimeoutSeconds: 300,
  upstreamQueueDepth: 2,
  wsPingIntervalSeconds: 30,
  wsMaxPerKey: 32,
  sessionTtl: '7d',
  logLevel: 'info',
  redisKeyPrefix: 'comfy-gate:',
  redisTimeoutMs: 50,
  redisFailure: 'local',
  webhookRetryBaseSeconds: 10,
  maxImageFetches: 16,
} as const;

/** The name of the backend when there is one and it has no name of its own. */
export const DEFAULT_BACKEND_NAME = 'default';

/** Rate limit of a key created without one, in requests per hour. */
export const DEFAULT_RATE_LIMIT = 100;
