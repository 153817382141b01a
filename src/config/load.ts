// Builds the GatewayConfig from command-line flags and COMFY_GATE_* environment variables (flags win).

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { checkTrustedProxy } from '../auth/client-addressing.js';
import { parseUserRoute, type UserRoute } from '../isolation/user-routes.js';
import { parsePolicy, type PromptPolicy } from '../policy/schema.js';
import { checkAllowedHost } from '../auth/host-names.js';
import {
  DEFAULTS,
  LOG_LEVELS,
  REDIS_FAILURE_MODES,
  DEFAULT_BACKEND_NAME,
  type AuthMode,
  type BackendConfig,
  type ChildCommand,
  type GatewayConfig,
  type LogLevel,
  type RedisFailureMode,
} from './schema.js';

/** A setting that cannot be used; the CLI prints the message and exits with code 2. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

interface ServeOption {
  flag: string;
  env: string;
  type: 'boolean' | 'string';
  multiple?: boolean;
  help: string;
}

/** Every `serve` flag, its environment variable and its help line. */
/** The shortest `--webhook-secret` accepted. */
const MIN_WEBHOOK_SECRET_LENGTH = 16;

export const SERVE_OPTIONS: readonly ServeOption[] = [
  { flag: 'enable-api-auth', env: 'COMFY_GATE_ENABLE_API_AUTH', type: 'boolean', help: 'Check keys when presented; requests without a key pass untracked' },
  { flag: 'require-api-auth', env: 'COMFY_GATE_REQUIRE_API_AUTH', type: 'boolean', help: 'Require a valid key for every request (deny by default)' },
  { flag: 'listen', env: 'COMFY_GATE_LISTEN', type: 'string', help: `Address to listen on (default ${DEFAULTS.listen})` },
  { flag: 'port', env: 'COMFY_GATE_PORT', type: 'string', help: `Port to listen on (default ${DEFAULTS.port})` },
  {
    flag: 'upstream',
    env: 'COMFY_GATE_UPSTREAMS',
    type: 'string',
    multiple: true,
    help: `A ComfyUI's URL, optionally URL#weight=2&name=gpu0; repeatable, one backend each (env: comma-separated; default ${DEFAULTS.upstream})`,
  },
  {
    flag: 'spawn-count',
    env: 'COMFY_GATE_SPAWN_COUNT',
    type: 'string',
    help: 'How many copies of the ComfyUI command after -- to start, each a backend; {index} in it becomes 0 to N-1 (default 1)',
  },
  {
    flag: 'user-directory',
    env: 'COMFY_GATE_USER_DIRECTORY',
    type: 'string',
    help: `Folder of api_keys.json and api_usage.json (default ${DEFAULTS.userDirectory})`,
  },
  {
    flag: 'allow-unsafe-store-permissions',
    env: 'COMFY_GATE_ALLOW_UNSAFE_STORE_PERMISSIONS',
    type: 'boolean',
    help: 'Start (with a warning) when the user directory or a store file is writable by group or others, or owned by another user',
  },
  {
    flag: 'public-path',
    env: 'COMFY_GATE_PUBLIC_PATHS',
    type: 'string',
    multiple: true,
    help: 'A path prefix anyone may GET/HEAD in required mode; repeatable (env: comma-separated)',
  },
  {
    flag: 'user-route',
    env: 'COMFY_GATE_USER_ROUTES',
    type: 'string',
    multiple: true,
    help: 'Open a route the gateway does not know to user keys: [METHOD:]PATH_PREFIX, e.g. POST:/my_node/; repeatable (env: comma-separated)',
  },
  {
    flag: 'usage-retention-days',
    env: 'COMFY_GATE_USAGE_RETENTION_DAYS',
    type: 'string',
    help: `Days raw usage records are kept (default ${DEFAULTS.usageRetentionDays}); daily totals are kept for good`,
  },
  {
    flag: 'upstream-queue-depth',
    env: 'COMFY_GATE_UPSTREAM_QUEUE_DEPTH',
    type: 'string',
    help: `Jobs the gateway keeps queued or running in ComfyUI at most; the rest wait in its fair queue (default ${DEFAULTS.upstreamQueueDepth})`,
  },
  {
    flag: 'job-retention-days',
    env: 'COMFY_GATE_JOB_RETENTION_DAYS',
    type: 'string',
    help: `Days a finished job stays in the job registry (default ${DEFAULTS.jobRetentionDays}); unfinished jobs are kept`,
  },
  {
    flag: 'upstream-timeout',
    env: 'COMFY_GATE_UPSTREAM_TIMEOUT',
    type: 'string',
    help: `Seconds to wait for ComfyUI's response headers (default ${DEFAULTS.upstreamTimeoutSeconds})`,
  },
  {
    flag: 'session-ttl',
    env: 'COMFY_GATE_SESSION_TTL',
    type: 'string',
    help: `How long a browser sign-in lasts: seconds, or a number with s, m, h or d (default ${DEFAULTS.sessionTtl})`,
  },
  {
    flag: 'trusted-proxy',
    env: 'COMFY_GATE_TRUSTED_PROXIES',
    type: 'string',
    multiple: true,
    help: 'Address or CIDR of a reverse proxy whose X-Forwarded-For/-Proto/-Host are believed; repeatable (env: comma-separated)',
  },
  {
    flag: 'allowed-host',
    env: 'COMFY_GATE_ALLOWED_HOSTS',
    type: 'string',
    multiple: true,
    help: 'A host name the gateway answers to besides IP addresses and localhost (.example.com: and its subdomains); repeatable (env: comma-separated)',
  },
  {
    flag: 'no-local-admin',
    env: 'COMFY_GATE_NO_LOCAL_ADMIN',
    type: 'boolean',
    help: 'Turn off key management without a key from this machine (for hosts with tunnels such as ssh -L)',
  },
  {
    flag: 'frame-ancestors',
    env: 'COMFY_GATE_FRAME_ANCESTORS',
    type: 'string',
    multiple: true,
    help: "An origin allowed to frame ComfyUI's pages, e.g. https://portal.example.com; repeatable (env: comma-separated); default: none",
  },
  {
    flag: 'log-level',
    env: 'COMFY_GATE_LOG_LEVEL',
    type: 'string',
    help: `Least severe log line written: ${LOG_LEVELS.join(', ')} (default ${DEFAULTS.logLevel})`,
  },
  {
    flag: 'metrics-public',
    env: 'COMFY_GATE_METRICS_PUBLIC',
    type: 'boolean',
    help: 'Serve /metrics without a key (for a scraper on a private network); default: admin keys only',
  },
  { flag: 'metrics-per-key', env: 'COMFY_GATE_METRICS_PER_KEY', type: 'boolean', help: 'Label request and 429 counters with key_id (one series per key)' },
  {
    flag: 'ws-ping-interval',
    env: 'COMFY_GATE_WS_PING_INTERVAL',
    type: 'string',
    help: `Seconds between keep-alive pings on each relayed WebSocket (default ${DEFAULTS.wsPingIntervalSeconds})`,
  },
  {
    flag: 'ws-max-per-key',
    env: 'COMFY_GATE_WS_MAX_PER_KEY',
    type: 'string',
    help: `WebSockets one key (admin keys included) may hold open at once (default ${DEFAULTS.wsMaxPerKey})`,
  },
  {
    flag: 'default-policy',
    env: 'COMFY_GATE_DEFAULT_POLICY',
    type: 'string',
    help: 'A JSON file holding the prompt policy of user keys that have none of their own (default: none)',
  },
  {
    flag: 'webhook-secret',
    env: 'COMFY_GATE_WEBHOOK_SECRET',
    type: 'string',
    help: `The secret webhook deliveries are signed with (HMAC-SHA256, at least ${MIN_WEBHOOK_SECRET_LENGTH} characters); without it webhook_url is refused`,
  },
  {
    flag: 'webhook-allow-private',
    env: 'COMFY_GATE_WEBHOOK_ALLOW_PRIVATE',
    type: 'boolean',
    help: 'Let webhook URLs and workflow image URLs reach loopback, private and link-local addresses (default: refused)',
  },
  {
    flag: 'max-image-fetches',
    env: 'COMFY_GATE_MAX_IMAGE_FETCHES',
    type: 'string',
    help: `Image URLs of workflow runs fetched at once by the whole gateway, a quarter of them (rounded up) for one key; one more waits for a place, and a run that gets none within the fetch timeout gets 503 (default ${DEFAULTS.maxImageFetches})`,
  },
  {
    flag: 'webhook-retry-base',
    env: 'COMFY_GATE_WEBHOOK_RETRY_BASE',
    type: 'string',
    help: `Seconds before a failed webhook delivery's first retry (fractions allowed); delays double up to 360 times it, and a delivery is given up 8640 times it after it was made (default ${DEFAULTS.webhookRetryBaseSeconds}: up to 1 h apart, for 24 h)`,
  },
  {
    flag: 'database-url',
    env: 'COMFY_GATE_DATABASE_URL',
    type: 'string',
    help: 'postgres://... : keep keys, usage, sessions, ownership and audit in PostgreSQL (default: JSON files)',
  },
  {
    flag: 'database-url-file',
    env: 'COMFY_GATE_DATABASE_URL_FILE',
    type: 'string',
    help: 'A file holding the --database-url (kept out of the process list); not with --database-url',
  },
  {
    flag: 'redis-url',
    env: 'COMFY_GATE_REDIS_URL',
    type: 'string',
    help: 'redis://... : keep rate-limit counters in Redis, shared by every replica (default: in memory)',
  },
  {
    flag: 'redis-url-file',
    env: 'COMFY_GATE_REDIS_URL_FILE',
    type: 'string',
    help: 'A file holding the --redis-url (kept out of the process list); not with --redis-url',
  },
  {
    flag: 'redis-key-prefix',
    env: 'COMFY_GATE_REDIS_KEY_PREFIX',
    type: 'string',
    help: `Prefix of the gateway's Redis keys (default ${DEFAULTS.redisKeyPrefix})`,
  },
  {
    flag: 'redis-timeout',
    env: 'COMFY_GATE_REDIS_TIMEOUT',
    type: 'string',
    help: `Milliseconds one Redis call may take before it counts as failed (default ${DEFAULTS.redisTimeoutMs})`,
  },
  {
    flag: 'redis-failure',
    env: 'COMFY_GATE_REDIS_FAILURE',
    type: 'string',
    help: `While Redis is unreachable: ${REDIS_FAILURE_MODES.join(', ')} (default ${DEFAULTS.redisFailure})`,
  },
];

/** Flag values by flag name (without `--`), as parsed or taken from the environment. */
export type RawValues = Record<string, string | boolean | string[] | undefined>;

/** The upstream of a config with a child until `createGateway` chooses the child's port. */
const CHILD_UPSTREAM_PLACEHOLDER = 'http://127.0.0.1:0';

/**
 * Reads `serve` flags and their environment variables into a config. Everything after `--` is the
 * command of a ComfyUI the gateway runs as its child.
 * @throws ConfigError for an unknown flag or a value out of range, naming the flag and what is allowed.
 * @example loadServeConfig(['--require-api-auth', '--port', '8188'], process.env)
 * @example loadServeConfig(['--require-api-auth', '--', 'python', 'main.py', '--port', '{port}'], process.env)
 */
export function loadServeConfig(args: string[], env: NodeJS.ProcessEnv): GatewayConfig {
  const end = args.indexOf('--');
  const values = parseFlags(end < 0 ? args : args.slice(0, end));
  const child = end < 0 ? null : parseChildCommand(args.slice(end + 1));
  const upstreamGiven =
    values.upstream !== undefined ? '--upstream' : env.COMFY_GATE_UPSTREAMS ? 'COMFY_GATE_UPSTREAMS' : env.COMFY_GATE_UPSTREAM ? 'COMFY_GATE_UPSTREAM' : null;
  if (child && upstreamGiven) {
    throw new ConfigError(
      `${upstreamGiven} and a command after -- both say where ComfyUI is: drop ${upstreamGiven} to run the command ` +
        '(the gateway then proxies to it), or drop the command to use a ComfyUI that runs on its own',
    );
  }
  for (const option of SERVE_OPTIONS) {
    if (values[option.flag] !== undefined) continue;
    const fromEnv = env[option.env];
    if (fromEnv === undefined || fromEnv === '') continue;
    if (option.type === 'boolean') values[option.flag] = parseBoolean(option.env, fromEnv);
    else
      values[option.flag] = option.multiple
        ? fromEnv
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : fromEnv;
  }
  // COMFY_GATE_UPSTREAM (one URL) is read when COMFY_GATE_UPSTREAMS is not set, for configurations written before several backends.
  if (values.upstream === undefined && env.COMFY_GATE_UPSTREAM) values.upstream = [env.COMFY_GATE_UPSTREAM];
  const mode: AuthMode = values['require-api-auth'] ? 'required' : values['enable-api-auth'] ? 'optional' : 'off';
  const spawnCount = parseInteger('--spawn-count', stringValue(values['spawn-count']), 1, 1, 64);
  if (!child && values['spawn-count'] !== undefined) throw new ConfigError('--spawn-count counts children: give the ComfyUI command after --');
  if (child && spawnCount === 1 && [child.command, ...child.args].some((word) => word.includes('{index}'))) {
    throw new ConfigError('{index} numbers several children: give --spawn-count N, or remove {index} from the command after --');
  }
  if (child && spawnCount > 1) checkOwnFolders(child.args);
  const backends = child ? childBackends(child, spawnCount) : upstreamBackends((values.upstream as string[] | undefined) ?? [DEFAULTS.upstream]);
  return {
    mode,
    listen: stringValue(values.listen) ?? DEFAULTS.listen,
    port: parseInteger('--port', stringValue(values.port), DEFAULTS.port, 0, 65535),
    backends,
    userDirectory: resolve(stringValue(values['user-directory']) ?? DEFAULTS.userDirectory),
    allowUnsafeStorePermissions: values['allow-unsafe-store-permissions'] === true,
    publicPaths: ((values['public-path'] as string[] | undefined) ?? []).map(parsePublicPath),
    userRoutes: ((values['user-route'] as string[] | undefined) ?? []).map(parseUserRouteFlag),
    usageRetentionDays: parseInteger('--usage-retention-days', stringValue(values['usage-retention-days']), DEFAULTS.usageRetentionDays, 1, 36500),
    upstreamQueueDepth: parseInteger('--upstream-queue-depth', stringValue(values['upstream-queue-depth']), DEFAULTS.upstreamQueueDepth, 1, 10_000),
    jobRetentionDays: parseInteger('--job-retention-days', stringValue(values['job-retention-days']), DEFAULTS.jobRetentionDays, 1, 36500),
    upstreamTimeoutMs: 1000 * parseInteger('--upstream-timeout', stringValue(values['upstream-timeout']), DEFAULTS.upstreamTimeoutSeconds, 1, 86400),
    wsPingIntervalMs: 1000 * parseInteger('--ws-ping-interval', stringValue(values['ws-ping-interval']), DEFAULTS.wsPingIntervalSeconds, 1, 3600),
    wsMaxPerKey: parseInteger('--ws-max-per-key', stringValue(values['ws-max-per-key']), DEFAULTS.wsMaxPerKey, 1, 100_000),
    defaultPolicy: readDefaultPolicy(stringValue(values['default-policy'])),
    webhookSecret: parseWebhookSecret(stringValue(values['webhook-secret'])),
    webhookAllowPrivate: values['webhook-allow-private'] === true,
    maxImageFetches: parseInteger('--max-image-fetches', stringValue(values['max-image-fetches']), DEFAULTS.maxImageFetches, 1, 10_000),
    webhookRetryBaseSeconds: parseRetryBase(stringValue(values['webhook-retry-base'])),
    sessionTtlSeconds: parseDuration('--session-ttl', stringValue(values['session-ttl']) ?? DEFAULTS.sessionTtl),
    trustedProxies: ((values['trusted-proxy'] as string[] | undefined) ?? []).map(parseTrustedProxy),
    allowedHosts: ((values['allowed-host'] as string[] | undefined) ?? []).map(parseAllowedHost),
    noLocalAdmin: values['no-local-admin'] === true,
    frameAncestors: ((values['frame-ancestors'] as string[] | undefined) ?? []).map(parseFrameAncestor),
    logLevel: parseLogLevel(stringValue(values['log-level']) ?? DEFAULTS.logLevel),
    metricsPublic: values['metrics-public'] === true,
    metricsPerKey: values['metrics-per-key'] === true,
    databaseUrl: serviceUrlOf(values, 'database-url', ['postgres:', 'postgresql:'], 'postgres://user:password@host:5432/database'),
    redisUrl: serviceUrlOf(values, 'redis-url', ['redis:', 'rediss:'], 'redis://host:6379'),
    redisKeyPrefix: parseRedisKeyPrefix(stringValue(values['redis-key-prefix']) ?? DEFAULTS.redisKeyPrefix),
    redisTimeoutMs: parseInteger('--redis-timeout', stringValue(values['redis-timeout']), DEFAULTS.redisTimeoutMs, 1, 60_000),
    redisFailure: parseRedisFailure(stringValue(values['redis-failure']) ?? DEFAULTS.redisFailure),
  };
}

function parseFlags(args: string[]): RawValues {
  const options = Object.fromEntries(SERVE_OPTIONS.map((option) => [option.flag, { type: option.type, ...(option.multiple ? { multiple: true } : {}) }]));
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as RawValues;
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

function stringValue(value: RawValues[string]): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** `--webhook-retry-base`: a number of seconds from 0.001 to 3600, fractions allowed. */
function parseRetryBase(value: string | undefined): number {
  if (value === undefined) return DEFAULTS.webhookRetryBaseSeconds;
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || seconds < 0.001 || seconds > 3600) {
    throw new ConfigError(`--webhook-retry-base must be a number of seconds from 0.001 to 3600, not ${JSON.stringify(value)}`);
  }
  return seconds;
}

/** `--webhook-secret` or its variable, checked; null when not given. */
export function parseWebhookSecret(value: string | undefined): string | null {
  if (value === undefined) return null;
  if (value.length < MIN_WEBHOOK_SECRET_LENGTH) {
    throw new ConfigError(`--webhook-secret must be at least ${MIN_WEBHOOK_SECRET_LENGTH} characters; make one with: openssl rand -hex 32`);
  }
  return value;
}

/**
 * Reads the `--default-policy` file: a JSON prompt policy (see docs/api.md "Prompt policy").
 * @throws ConfigError naming the file and each problem when it cannot be read, is not JSON or not a valid policy.
 */
function readDefaultPolicy(file: string | undefined): PromptPolicy | null {
  if (file === undefined) return null;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`--default-policy: ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`--default-policy: ${file} is not JSON (${(error as Error).message})`);
  }
  const policy = parsePolicy(value, 'default policy');
  if (typeof policy === 'string') throw new ConfigError(`--default-policy: ${file} is not a valid prompt policy: ${policy}`);
  return policy;
}

/** Reads `1`, `true`, `yes`, `on` (or their opposites) from an environment variable. @throws ConfigError for anything else. */
export function parseBoolean(name: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new ConfigError(`${name} must be true or false, not ${JSON.stringify(value)}`);
}

/** Parses a whole number in [min, max]; `undefined` gives the default. */
export function parseInteger(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Names a backend may have: they appear in job records, metric labels and URLs. */
const BACKEND_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/**
 * The backends of `--upstream` values, each `URL` or `URL#weight=W&name=N`. Without a name, one
 * backend is `default` and several are named by their host and port.
 * @throws ConfigError for a value that is not such a URL, a bad weight or name, or a name given twice.
 */
function upstreamBackends(values: readonly string[]): BackendConfig[] {
  const backends = values.map((value) => parseUpstream(value, values.length));
  const seen = new Set<string>();
  for (const backend of backends) {
    if (seen.has(backend.name)) throw new ConfigError(`two --upstream values are both named ${backend.name}: give each a #name=... of its own`);
    seen.add(backend.name);
  }
  return backends;
}

function parseUpstream(value: string, count: number): BackendConfig {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`--upstream must be a URL such as http://127.0.0.1:8189, not ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`--upstream must be an http:// or https:// URL, not ${JSON.stringify(value)}`);
  }
  if (url.pathname !== '/' || url.search) {
    throw new ConfigError(`--upstream must be ComfyUI's base URL without a path, not ${JSON.stringify(value)}`);
  }
  const settings = new URLSearchParams(url.hash.slice(1));
  url.hash = '';
  for (const setting of settings.keys()) {
    if (setting !== 'weight' && setting !== 'name') throw new ConfigError(`--upstream ${url.origin}: unknown setting #${setting}; use #weight=2&name=gpu0`);
  }
  const weight = parseInteger(`--upstream ${url.origin} #weight`, settings.get('weight') ?? undefined, 1, 1, 1000);
  const name = settings.get('name') ?? (count === 1 ? DEFAULT_BACKEND_NAME : url.host);
  if (!BACKEND_NAME.test(name)) {
    throw new ConfigError(`--upstream ${url.origin}: #name must be 1 to 64 letters, digits, dots, colons, dashes or underscores, not ${JSON.stringify(name)}`);
  }
  return { name, url, weight, child: null };
}

/** The ComfyUI flags that give a child folders of its own: children that share one number their files over each other's. */
const CHILD_FOLDER_FLAGS = ['--output-directory', '--input-directory', '--temp-directory'];

/**
 * Refuses several children unless the command gives each its own output, input and temp folder (`{index}` in
 * each flag's value). Children sharing a folder pick the same next name for two keys' outputs at once, store
 * an upload that the gateway sends to each under two names, and wipe each other's temp files as they start.
 * @throws ConfigError naming the flags to add
 */
function checkOwnFolders(args: readonly string[]): void {
  const valueOf = (flag: string): string | undefined => {
    const at = args.indexOf(flag);
    return at >= 0 ? args[at + 1] : args.find((arg) => arg.startsWith(`${flag}=`))?.slice(flag.length + 1);
  };
  const missing = CHILD_FOLDER_FLAGS.filter((flag) => !valueOf(flag)?.includes('{index}'));
  if (missing.length === 0) return;
  throw new ConfigError(
    `--spawn-count starts children that must each have folders of their own: add ${missing.map((flag) => `${flag} DIR/{index}`).join(', ')} ` +
      "to the command after -- (children sharing a folder number their files over each other's, another key's included)",
  );
}

/** One backend per child: `default` for one, `comfyui-0` to `comfyui-{N-1}` for several, each with `{index}` in its command replaced. */
function childBackends(child: ChildCommand, count: number): BackendConfig[] {
  return Array.from({ length: count }, (_, index) => ({
    name: count === 1 ? DEFAULT_BACKEND_NAME : `comfyui-${index}`,
    url: new URL(CHILD_UPSTREAM_PLACEHOLDER),
    weight: 1,
    child: { command: child.command.replaceAll('{index}', String(index)), args: child.args.map((arg) => arg.replaceAll('{index}', String(index))) },
  }));
}

/**
 * The words after `--`: a program and its arguments, which must take the gateway's `{port}`.
 * @throws ConfigError when there is no program or no `{port}`.
 */
function parseChildCommand(words: string[]): ChildCommand {
  const [command, ...args] = words;
  if (command === undefined || command === '') {
    throw new ConfigError('-- must be followed by the command that starts ComfyUI, such as -- python main.py --port {port}');
  }
  if (!args.some((arg) => arg.includes('{port}'))) {
    throw new ConfigError(
      'the command after -- must listen on the port the gateway chooses: put {port} among its arguments, such as python main.py --port {port}',
    );
  }
  return { command, args };
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Parses `3600`, `90s`, `30m`, `12h` or `7d` into seconds (1 second to 365 days). */
function parseDuration(name: string, value: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(value);
  const seconds = match ? Number(match[1]) * DURATION_UNITS[match[2] || 's']! : NaN;
  if (!(seconds >= 1 && seconds <= 365 * 86400)) {
    throw new ConfigError(`${name} must be a duration such as 3600, 30m, 12h or 7d (at most 365d), not ${JSON.stringify(value)}`);
  }
  return seconds;
}

function parseLogLevel(value: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(value))
    throw new ConfigError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(value)}`);
  return value as LogLevel;
}

function parseTrustedProxy(value: string): string {
  const problem = checkTrustedProxy(value);
  if (problem) throw new ConfigError(`--trusted-proxy: ${problem}`);
  return value;
}

function parseUserRouteFlag(value: string): UserRoute {
  const route = parseUserRoute(value);
  if (typeof route === 'string') throw new ConfigError(`--user-route ${JSON.stringify(value)}: ${route}`);
  return route;
}

function parseAllowedHost(value: string): string {
  const problem = checkAllowedHost(value);
  if (problem) throw new ConfigError(`--allowed-host: ${problem}`);
  return value.toLowerCase();
}

/** An origin (`https://portal.example.com`, `http://127.0.0.1:3000`, `https://*.example.com`) or `'self'`, as a CSP source. */
function parseFrameAncestor(value: string): string {
  if (value === "'self'" || /^https?:\/\/(\*\.)?([a-z0-9-]+\.)*[a-z0-9-]+(:\d{1,5})?$/i.test(value) || /^https?:\/\/\[[0-9a-f:.]+\](:\d{1,5})?$/i.test(value))
    return value.toLowerCase();
  throw new ConfigError(`--frame-ancestors must be an origin such as https://portal.example.com (or 'self'), not ${JSON.stringify(value)}`);
}

function parsePublicPath(value: string): string {
  if (!value.startsWith('/') || value.includes('%') || value.includes('\\') || value.split('/').some((s) => s === '.' || s === '..') || value.includes('//')) {
    throw new ConfigError(`--public-path must be a plain path prefix such as /extensions/, not ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Checks a service URL's scheme; the URL is kept as given (credentials included) and never printed whole.
 * @throws ConfigError naming the flag and an example when it is not a URL of one of `protocols`.
 */
export function parseServiceUrl(name: string, value: string | undefined, protocols: string[], example: string): string | null {
  if (value === undefined) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${name} must be a URL such as ${example}, not a value that does not parse`);
  }
  if (!protocols.includes(url.protocol)) throw new ConfigError(`${name} must start with ${protocols.map((p) => `${p}//`).join(' or ')}, not ${url.protocol}//`);
  return value;
}

/**
 * A service URL given by `--NAME` or read from the file `--NAME-file` names (trimmed), then checked by `parseServiceUrl`.
 * @throws ConfigError when both are given, or the file cannot be read or is empty; never with the URL in the message.
 */
export function serviceUrlOf(values: RawValues, flag: string, protocols: string[], example: string): string | null {
  const given = stringValue(values[flag]);
  const file = stringValue(values[`${flag}-file`]);
  if (file === undefined) return parseServiceUrl(`--${flag}`, given, protocols, example);
  if (given !== undefined) throw new ConfigError(`--${flag} and --${flag}-file are both given (as flags or environment variables); keep one`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new ConfigError(`--${flag}-file: ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (text === '') throw new ConfigError(`--${flag}-file: ${file} is empty; it must hold the URL`);
  return parseServiceUrl(`the URL in --${flag}-file ${file}`, text, protocols, example);
}

/**
 * A service URL without its passwords, for the start-up line, log lines and the CLI's messages: the one after
 * the user name, and a query parameter's that names one (PostgreSQL and Redis also read `?password=`, `?sslpassword=`).
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    for (const name of new Set(parsed.searchParams.keys())) if (/password/i.test(name)) parsed.searchParams.set(name, '***');
    return parsed.toString();
  } catch {
    return '(a URL that does not parse)';
  }
}

function parseRedisKeyPrefix(value: string): string {
  if (!/^[A-Za-z0-9:_.-]{1,64}$/.test(value))
    throw new ConfigError(`--redis-key-prefix must be 1 to 64 letters, digits or : _ . -, not ${JSON.stringify(value)}`);
  return value;
}

function parseRedisFailure(value: string): RedisFailureMode {
  if (!(REDIS_FAILURE_MODES as readonly string[]).includes(value))
    throw new ConfigError(`--redis-failure must be one of ${REDIS_FAILURE_MODES.join(', ')}, not ${JSON.stringify(value)}`);
  return value as RedisFailureMode;
}
