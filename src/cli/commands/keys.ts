// `comfy-gate keys …`: key management from the shell, safe to run beside a gateway on the same directory or database.

import { readFileSync } from 'node:fs';
import { usableKeyError } from '../../auth/authenticate.js';
import { ConfigError, parseWebhookSecret } from '../../config/load.js';
import { createdKeyBody, creationAuditDetails, newKey, rotatedKey } from '../../auth/new-key.js';
import { auditActionOf, checkKeyWebhookUrl, parseCreateKey, parsePatchKey, type KeyUpdateInput } from '../../server/key-input.js';
import { isQuota, toPublicKey } from '../../store/key-record.js';
import { KEY_QUOTA_FIELDS, MAX_KEY_QUOTA, type KeyQuotas, type KeyRecord, type PublicKeyRecord } from '../../store/types.js';
import { firstDayOf } from '../../usage/day.js';
import { usageStats } from '../../usage/report.js';
import { signingSecret } from '../../webhooks/signature.js';
import {
  chooseSubcommand,
  asUsageError,
  DATABASE_URL_HELP,
  parseCommandLine,
  parseGrace,
  parseTime,
  stringFlag,
  USER_DIRECTORY_HELP,
  type CliContext,
  type FlagSpec,
  type FlagValues,
} from '../options.js';
import { columnWidths, fields, printable, printJson, printJsonPages, seconds, shortDuration, table, tableLine, utcTime, type Align } from '../output.js';
import { CommandStores, requireKey } from '../stores.js';
import { CommandError, UsageError } from '../usage-error.js';

/** Days of usage shown by `keys show`, as `GET /api/keys/{id}` shows. */
const SHOW_USAGE_DAYS = 30;

const SAFE_BESIDE_GATEWAY = `Safe while a gateway runs on the same directory: the running gateway applies
the change within 2 seconds (on a database, at once, on every replica).`;

export const KEYS_HELP = `Usage: comfy-gate keys COMMAND [options]

Manages the API keys of a store directory, or of a PostgreSQL database with --database-url.
${SAFE_BESIDE_GATEWAY}

Commands:
  list                        Every key: key_id, name, prefix, role, status, rate limit, last use, expiry
  create [options]            Create a key; its secret is printed once
  show KEY_ID                 One key, with its usage over the last ${SHOW_USAGE_DAYS} days
  update KEY_ID [options]     Change the name, rate limit, role, expiry, job quotas, prompt policy or webhook URL
  disable KEY_ID              Refuse the key (401 KEY_DISABLED) until it is enabled again
  enable KEY_ID               Accept a disabled key again
  rotate KEY_ID [--grace D]   Give the key a new secret; the old one keeps working for the grace period
  delete KEY_ID [--yes]       Delete the key for good (its usage stays in comfy-gate usage)
  webhook-secret KEY_ID       The secret the key's webhook deliveries are signed with

Every command takes --user-directory DIR or --database-url URL, and --json (JSON for scripts
instead of a table).
comfy-gate keys COMMAND --help describes a command.`;

const JSON_HELP = '  --json                Print JSON instead of text';
const EXPIRES_HELP =
  '  --expires-at WHEN     When the key stops working: Unix seconds, ISO 8601 (2025-12-31,\n                        2025-12-31T18:00:00Z; UTC when no zone is given) or never';
const QUOTAS_HELP = `  --max-queued N        Jobs the key may have held, queued or running at once (more: 429 QUEUE_LIMIT)
  --max-running N       Jobs of the key that run at once across backends (more wait, held)
  --daily-execution-seconds N
                        Seconds of ComfyUI execution per UTC day (more: 429 EXECUTION_BUDGET_EXCEEDED)
                        Each quota is 1 to ${MAX_KEY_QUOTA}, or none for no limit`;
const POLICY_HELP = `  --policy POLICY       The key's prompt policy: a JSON object such as '{"max_steps": 40}',
                        @FILE to read it from a file, or none (see docs/api.md "Prompt policy")`;
const WEBHOOK_HELP = `  --webhook-url URL     Where the key's jobs' events are POSTed when a run names no webhook_url,
                        or none; used only by a gateway started with --webhook-secret
                        (see docs/api.md "Webhooks")`;

/** The flag of each quota field. */
const QUOTA_FLAGS: Record<keyof KeyQuotas, string> = {
  max_queued: 'max-queued',
  max_running: 'max-running',
  daily_execution_seconds: 'daily-execution-seconds',
};
const QUOTA_FLAG_SPECS: FlagSpec = Object.fromEntries(Object.values(QUOTA_FLAGS).map((flag) => [flag, { type: 'string' }]));

/** What a keys command gets to run. */
interface Run {
  values: FlagValues;
  keyId: string;
  /** The store directory's or the database's stores, closed when the command ends. */
  stores: CommandStores;
  ctx: CliContext;
  /** `comfy-gate keys <command> --help`, for error messages. */
  help: string;
}

interface Command {
  flags: FlagSpec;
  keyId: boolean;
  help: string;
  run(input: Run): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  list: {
    flags: { json: { type: 'boolean' } },
    keyId: false,
    help: `Usage: comfy-gate keys list [--json]

Lists every key, oldest first: key_id, name, display prefix, role, status
(active, disabled or expired), rate limit, last use and expiry. Never the secrets.

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --json                Print {"keys": [...]}, the objects of GET /api/keys plus "status"`,
    run: listKeys,
  },
  create: {
    flags: {
      name: { type: 'string' },
      'rate-limit': { type: 'string' },
      admin: { type: 'boolean' },
      'expires-at': { type: 'string' },
      ...QUOTA_FLAG_SPECS,
      policy: { type: 'string' },
      'webhook-url': { type: 'string' },
      json: { type: 'boolean' },
    },
    keyId: false,
    help: `Usage: comfy-gate keys create [options]

Creates an API key and prints it once. ${SAFE_BESIDE_GATEWAY}

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --name NAME           The key's name (default "Unnamed Key")
  --rate-limit N        Requests per hour (default 100)
  --admin               Make an admin key (may manage keys and read all usage)
${EXPIRES_HELP} (default never)
${QUOTAS_HELP} (default none)
${POLICY_HELP} (default none)
${WEBHOOK_HELP} (default none)
  --json                Print the same JSON object as POST /api/keys

Example:
  comfy-gate keys create --name "Render farm" --rate-limit 500 --expires-at 2026-01-01 --max-queued 10`,
    run: createKey,
  },
  show: {
    flags: { json: { type: 'boolean' } },
    keyId: true,
    help: `Usage: comfy-gate keys show KEY_ID [--json]

Shows one key and its usage over the last ${SHOW_USAGE_DAYS} UTC days. Reading usage never
writes to the usage files, so it is safe beside a running gateway.

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --json                Print the object of GET /api/keys/{key_id} plus "status"`,
    run: showKey,
  },
  update: {
    flags: {
      name: { type: 'string' },
      'rate-limit': { type: 'string' },
      role: { type: 'string' },
      'expires-at': { type: 'string' },
      ...QUOTA_FLAG_SPECS,
      policy: { type: 'string' },
      'webhook-url': { type: 'string' },
      json: { type: 'boolean' },
    },
    keyId: true,
    help: `Usage: comfy-gate keys update KEY_ID [--name NAME] [--rate-limit N] [--role user|admin] [--expires-at WHEN]
                                    [--max-queued N|none] [--max-running N|none] [--daily-execution-seconds N|none]
                                    [--policy JSON|@FILE|none] [--webhook-url URL|none]

Changes a key; the values are checked as PATCH /api/keys/{key_id} checks them.
${SAFE_BESIDE_GATEWAY}

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --name NAME           A new name (1 to 200 characters)
  --rate-limit N        Requests per hour, 1 to 10000000
  --role ROLE           user or admin
${EXPIRES_HELP}
${QUOTAS_HELP}
${POLICY_HELP}
${WEBHOOK_HELP}
${JSON_HELP}

Example:
  comfy-gate keys update 3f9c... --rate-limit 1000 --expires-at never --max-running 2 --daily-execution-seconds none`,
    run: updateKey,
  },
  disable: {
    flags: { json: { type: 'boolean' } },
    keyId: true,
    help: `Usage: comfy-gate keys disable KEY_ID [--json]

Disables a key: requests with it get 401 KEY_DISABLED, and its browser sessions end for
good, whether or not a gateway runs on the directory (enabling the key again brings
none back).
${SAFE_BESIDE_GATEWAY}

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
${JSON_HELP}`,
    run: (input) => setActive(input, false),
  },
  enable: {
    flags: { json: { type: 'boolean' } },
    keyId: true,
    help: `Usage: comfy-gate keys enable KEY_ID [--json]

Enables a disabled key again. ${SAFE_BESIDE_GATEWAY}

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
${JSON_HELP}`,
    run: (input) => setActive(input, true),
  },
  rotate: {
    flags: { grace: { type: 'string' }, json: { type: 'boolean' } },
    keyId: true,
    help: `Usage: comfy-gate keys rotate KEY_ID [--grace DURATION] [--json]

Gives a key a new secret and prints it once. The key keeps its key_id, name,
limits and usage. ${SAFE_BESIDE_GATEWAY}

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --grace DURATION      How long the old secret keeps working: seconds, or a number
                        with s, m, h or d (5m, 1h, 1d); 0 to 30d (default 0: it stops at once)
  --json                Print the same JSON object as POST /api/keys/{key_id}/rotate`,
    run: rotateKey,
  },
  delete: {
    flags: { yes: { type: 'boolean' }, json: { type: 'boolean' } },
    keyId: true,
    help: `Usage: comfy-gate keys delete KEY_ID [--yes] [--json]

Deletes a key for good: its secret stops working within 2 seconds on a running
gateway. Its usage stays in the usage files and in comfy-gate usage.
Without --yes, asks for confirmation on a terminal, and refuses (exit 2) when
there is no terminal to ask.

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --yes                 Delete without asking
${JSON_HELP}`,
    run: deleteKey,
  },
  'webhook-secret': {
    flags: { 'webhook-secret': { type: 'string' }, json: { type: 'boolean' } },
    keyId: true,
    help: `Usage: comfy-gate keys webhook-secret KEY_ID [--webhook-secret SECRET] [--json]

Prints the secret that the key's webhook deliveries are signed with, for the key's
receiver to verify them (see docs/api.md "Webhooks"). It is derived from the gateway's
--webhook-secret and the key's current API key: give the same --webhook-secret (or
COMFY_GATE_WEBHOOK_SECRET) as the gateway. Rotating the key gives it a new one.
The read is written to the audit trail.

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --webhook-secret SECRET
                        The gateway's --webhook-secret (default: env COMFY_GATE_WEBHOOK_SECRET;
                        prefer the variable: a flag's value shows in the process list)
  --json                Print the same JSON object as GET /api/keys/{key_id}/webhook-secret`,
    run: showWebhookSecret,
  },
};

/** Runs a `keys` subcommand; returns the process exit code. */
export async function keys(args: string[], ctx: CliContext): Promise<number> {
  const chosen = chooseSubcommand('keys', args, COMMANDS, KEYS_HELP);
  if (!chosen) return 0;
  const { name: subcommand, command, rest } = chosen;
  const parsed = parseCommandLine(rest, `keys ${subcommand}`, command.flags, { keyId: command.keyId, database: true });
  if (!parsed) {
    console.log(command.help);
    return 0;
  }
  const help = `comfy-gate keys ${subcommand} --help`;
  const stores = CommandStores.of(parsed.values, ctx.env, help);
  try {
    return await command.run({ ...parsed, stores, ctx, help });
  } finally {
    await stores.close();
  }
}

/** active, disabled or expired, as the gateway would judge the key now. */
export function keyStatus(record: KeyRecord, now: number): 'active' | 'disabled' | 'expired' {
  const refusal = usableKeyError(record, now);
  if (!refusal) return 'active';
  return refusal.code === 'KEY_DISABLED' ? 'disabled' : 'expired';
}

/** The key as the HTTP API shows it, plus its status. */
function publicKey(record: KeyRecord, now: number): PublicKeyRecord & { status: string } {
  return { ...toPublicKey(record), status: keyStatus(record, now) };
}

/**
 * Lists the keys a page at a time, never all of them in memory: JSON as each page comes; a table after
 * a first pass that measures its columns.
 */
async function listKeys({ values, stores, ctx }: Run): Promise<number> {
  await stores.prepare();
  const now = ctx.now();
  const keys = await stores.keys();
  if (values.json) {
    await printJsonPages<PublicKeyRecord & { status: string }>('keys', (onPage) =>
      keys.eachPage((records) => onPage(records.map((record) => publicKey(record, now)))),
    );
    return 0;
  }
  const headers = ['KEY_ID', 'NAME', 'PREFIX', 'ROLE', 'STATUS', 'RATE LIMIT', 'LAST USED', 'EXPIRES'];
  const align: Align[] = ['left', 'left', 'left', 'left', 'left', 'right'];
  const cells = (r: KeyRecord): string[] => [
    r.key_id,
    printable(r.name, 40),
    r.key_prefix ?? '-',
    r.role,
    keyStatus(r, now),
    `${r.rate_limit}/h`,
    utcTime(r.last_used),
    utcTime(r.expires_at),
  ];
  let widths = columnWidths(headers, []);
  let count = 0;
  await keys.eachPage((records) => {
    widths = columnWidths(headers, records.map(cells), widths);
    count += records.length;
  });
  if (count === 0) {
    console.log(`No keys in ${stores.where}. Create one with: comfy-gate keys create --admin`);
    return 0;
  }
  console.log(tableLine(headers, widths, align));
  // A key created between the two passes is listed too, its cells as wide as they are.
  await keys.eachPage((records) => {
    for (const record of records) console.log(tableLine(cells(record), widths, align));
  });
  return 0;
}

/** `--expires-at`: a time, or `never` (null). */
function expiresAtOf(values: FlagValues, help: string): number | null | undefined {
  const value = stringFlag(values, 'expires-at');
  if (value === undefined) return undefined;
  return value.toLowerCase() === 'never' ? null : parseTime('expires-at', value, help);
}

/** `--rate-limit` as a number; its range is checked with the rest of the body. */
function rateLimitOf(values: FlagValues, help: string): number | undefined {
  const value = stringFlag(values, 'rate-limit');
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value)) throw new UsageError(`--rate-limit must be a whole number (requests per hour), not ${JSON.stringify(value)}`, help);
  return Number(value);
}

/**
 * The quota flags given, as fields of a key body: a whole number, or `none` (null) for no limit.
 * @throws UsageError naming the flag and what it accepts.
 */
function quotasOf(values: FlagValues, help: string): Partial<KeyQuotas> {
  const quotas: Partial<KeyQuotas> = {};
  for (const field of KEY_QUOTA_FIELDS) {
    const flag = QUOTA_FLAGS[field];
    const value = stringFlag(values, flag);
    if (value === undefined) continue;
    if (value.toLowerCase() === 'none') quotas[field] = null;
    else if (/^\d{1,15}$/.test(value) && isQuota(Number(value))) quotas[field] = Number(value);
    else throw new UsageError(`--${flag} must be a whole number from 1 to ${MAX_KEY_QUOTA}, or none for no limit, not ${JSON.stringify(value)}`, help);
  }
  return quotas;
}

/**
 * `--policy`: JSON text, `@FILE` (the file's JSON) or `none` (null); checked with the rest of the body.
 * @throws UsageError when the file cannot be read or the text is not JSON.
 */
function policyOf(values: FlagValues, help: string): { policy?: unknown } {
  const value = stringFlag(values, 'policy');
  if (value === undefined) return {};
  if (value.trim().toLowerCase() === 'none') return { policy: null };
  let text = value;
  if (value.startsWith('@')) {
    try {
      text = readFileSync(value.slice(1), 'utf8');
    } catch (error) {
      throw new UsageError(`--policy ${value}: the file cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, help);
    }
  }
  try {
    return { policy: JSON.parse(text) as unknown };
  } catch (error) {
    throw new UsageError(
      `--policy must be a JSON object, @FILE or none; ${value.startsWith('@') ? value.slice(1) : 'the value'} is not JSON (${(error as Error).message})`,
      help,
    );
  }
}

/** `--webhook-url`: a URL (checked with the rest of the body) or `none` (null). */
function webhookUrlOf(values: FlagValues): { webhook_url?: string | null } {
  const value = stringFlag(values, 'webhook-url');
  if (value === undefined) return {};
  return { webhook_url: value.trim().toLowerCase() === 'none' ? null : value };
}

/**
 * Checks a `--webhook-url` as the management API does, but for its address: the gateway, not this
 * command, knows whether `--webhook-allow-private` is set, and refuses private addresses when it sends.
 */
async function checkWebhookUrl(input: { webhook_url?: string | null }, help: string): Promise<void> {
  await checkKeyWebhookUrl(input, true).catch((error: unknown) => {
    throw asUsageError(error, help);
  });
}

/** A key's quotas in one line of text, or '' when it has none. */
function describeQuotas(record: KeyQuotas): string {
  return KEY_QUOTA_FIELDS.filter((field) => record[field] !== null)
    .map((field) => `${field} ${describeValue(field, record[field])}`)
    .join(', ');
}

async function createKey({ values, stores, ctx, help }: Run): Promise<number> {
  const body: Record<string, unknown> = { role: values.admin ? 'admin' : 'user' };
  const name = stringFlag(values, 'name');
  const rateLimit = rateLimitOf(values, help);
  const expiresAt = expiresAtOf(values, help);
  if (name !== undefined) body.name = name;
  if (rateLimit !== undefined) body.rate_limit = rateLimit;
  if (expiresAt !== undefined) body.expires_at = expiresAt;
  Object.assign(body, quotasOf(values, help), policyOf(values, help), webhookUrlOf(values));
  let input;
  try {
    input = parseCreateKey(body);
  } catch (error) {
    throw asUsageError(error, help);
  }
  await checkWebhookUrl(input, help);
  await stores.prepare({ create: true });
  const { record, apiKey } = newKey(input, ctx.now());
  await (await stores.keys()).create(record);
  await stores.auditChange({
    ts: record.created_at,
    action: 'key.create',
    key_id: record.key_id,
    details: creationAuditDetails(record),
  });
  if (values.json) {
    printJson(createdKeyBody(record, apiKey));
    return 0;
  }
  const expiry = record.expires_at === null ? '' : `, expires ${utcTime(record.expires_at)}`;
  const quotas = describeQuotas(record);
  console.log(
    `Created ${record.role} key "${printable(record.name)}" (key_id ${record.key_id}, ${record.rate_limit} requests/hour${expiry}${quotas ? `, ${quotas}` : ''}) in ${stores.where}`,
  );
  console.log(`API key (shown only this once, save it now): ${apiKey}`);
  return 0;
}

async function showKey({ values, keyId, stores, ctx }: Run): Promise<number> {
  await stores.prepare();
  const record = await requireKey(await stores.keys(), keyId);
  const now = ctx.now();
  const usage = await (await stores.usage()).ofKeys([keyId], firstDayOf(SHOW_USAGE_DAYS, now));
  const stats = usageStats(usage, keyId, SHOW_USAGE_DAYS, now);
  if (values.json) {
    printJson({ ...publicKey(record, now), usage_stats: stats });
    return 0;
  }
  const rows: Array<[string, string]> = [
    ['key_id', record.key_id],
    ['name', record.name],
    ['prefix', record.key_prefix ?? '-'],
    ['role', record.role],
    ['status', keyStatus(record, now)],
    ['rate limit', `${record.rate_limit} requests/hour`],
    ['created', utcTime(record.created_at)],
    ['last used', utcTime(record.last_used)],
    ['expires', utcTime(record.expires_at)],
    ['max queued', quotaText(record.max_queued, 'jobs held, queued or running')],
    ['max running', quotaText(record.max_running, 'jobs running')],
    ['daily execution', quotaText(record.daily_execution_seconds, 'seconds per UTC day')],
    ['policy', describeValue('policy', record.policy)],
    ['webhook url', describeValue('webhook_url', record.webhook_url)],
  ];
  if (record.previous_key_valid_until !== null && record.previous_key_valid_until > now)
    rows.push(['old secret valid until', utcTime(record.previous_key_valid_until)]);
  if (Object.keys(record.metadata).length > 0) rows.push(['metadata', JSON.stringify(record.metadata)]);
  console.log(fields(rows));
  console.log(`\nUsage, last ${SHOW_USAGE_DAYS} days (UTC):`);
  console.log(
    fields([
      ['requests', String(stats.total_requests)],
      ['successful', String(stats.successful_requests)],
      ['failed', String(stats.failed_requests)],
      ['refused (429)', String(stats.rate_limited_requests)],
      ['total duration', `${seconds(stats.total_duration)} s`],
      ['average duration', `${seconds(stats.average_duration)} s`],
      ['last 24 hours', String(stats.requests_last_24h)],
    ]),
  );
  const days = Object.entries(stats.requests_per_day);
  if (days.length > 0)
    console.log(
      '\n' +
        table(
          ['DATE', 'REQUESTS'],
          days.map(([day, n]) => [day, String(n)]),
          ['left', 'right'],
        ),
    );
  return 0;
}

/** A quota with its unit, or `no limit`. */
function quotaText(value: number | null, unit: string): string {
  return value === null ? 'no limit' : `${value} ${unit}`;
}

/** How a changed field reads in text output, control characters and all (the caller cleans the line). */
function describeValue(field: string, value: unknown): string {
  if (field === 'expires_at') return utcTime(value as number | null);
  if (value === null && (KEY_QUOTA_FIELDS as readonly string[]).includes(field)) return 'none';
  if (field === 'daily_execution_seconds') return `${String(value)} s/day`;
  if (field === 'policy') return value === null ? 'none' : JSON.stringify(value);
  if (field === 'webhook_url') return value === null ? 'none' : String(value);
  if (field === 'name') return JSON.stringify(value);
  if (field === 'rate_limit') return `${String(value)}/h`;
  return String(value);
}

/**
 * Ends the browser sessions of a key that was just disabled, expired or deleted. The change is made:
 * when they cannot be ended, a warning is printed and the command still succeeds (they are refused
 * while the key is unusable, and ended before it is enabled again).
 */
async function endSessionsAfter(stores: CommandStores, keyId: string, change: string): Promise<void> {
  try {
    await stores.endKeySessions(keyId);
  } catch (error) {
    console.error(`comfy-gate: warning: the key was ${change}, but its browser sessions could not be ended: ${(error as Error).message}`);
  }
}

/**
 * Applies a validated patch, writes the audit line and prints the outcome. A key unusable (disabled,
 * expired) before or after the patch loses its browser sessions, whether or not a gateway runs: before
 * the patch when it may make the key usable again, so that none comes back with it.
 */
async function applyPatch({ values, keyId, stores, ctx }: Run, patch: KeyUpdateInput): Promise<number> {
  await stores.prepare();
  const store = await stores.keys();
  const now = ctx.now();
  const before = await requireKey(store, keyId);
  if (usableKeyError(before, now)) await stores.endKeySessions(keyId);
  const after = await store.update(keyId, patch);
  if (!after) throw new CommandError(`no key has key_id ${keyId}`);
  if (usableKeyError(after, now)) await endSessionsAfter(stores, keyId, keyStatus(after, now));
  const action = auditActionOf(patch);
  await stores.auditChange({ ts: now, action, key_id: keyId, details: { ...patch } });
  if (values.json) {
    printJson({ message: 'API key updated.', key: publicKey(after, now) });
    return 0;
  }
  const verb = action === 'key.disable' ? 'Disabled' : action === 'key.enable' ? 'Enabled' : 'Updated';
  console.log(`${verb} key "${printable(after.name)}" (key_id ${keyId}); status now ${keyStatus(after, now)}.`);
  if (action === 'key.update') {
    for (const field of Object.keys(patch) as Array<keyof KeyUpdateInput>) {
      const [was, is] = [before[field], after[field]];
      const same = was === is || JSON.stringify(was) === JSON.stringify(is);
      console.log(printable(`  ${field}: ${same ? `${describeValue(field, is)} (unchanged)` : `${describeValue(field, was)} -> ${describeValue(field, is)}`}`));
    }
  }
  return 0;
}

async function updateKey(input: Run): Promise<number> {
  const { values, help } = input;
  const body: Record<string, unknown> = {};
  const name = stringFlag(values, 'name');
  const rateLimit = rateLimitOf(values, help);
  const role = stringFlag(values, 'role');
  const expiresAt = expiresAtOf(values, help);
  if (name !== undefined) body.name = name;
  if (rateLimit !== undefined) body.rate_limit = rateLimit;
  if (role !== undefined) body.role = role;
  if (expiresAt !== undefined) body.expires_at = expiresAt;
  Object.assign(body, quotasOf(values, help), policyOf(values, help), webhookUrlOf(values));
  if (Object.keys(body).length === 0)
    throw new UsageError(
      'keys update needs at least one of --name, --rate-limit, --role, --expires-at, --max-queued, --max-running, --daily-execution-seconds, --policy, --webhook-url',
      help,
    );
  let patch: KeyUpdateInput;
  try {
    patch = parsePatchKey(body);
  } catch (error) {
    throw asUsageError(error, help);
  }
  await checkWebhookUrl(patch, help);
  return applyPatch(input, patch);
}

async function setActive(input: Run, active: boolean): Promise<number> {
  const { values, keyId, stores, ctx } = input;
  await stores.prepare();
  const current = await requireKey(await stores.keys(), keyId);
  if (current.is_active === active) {
    const message = `Key "${printable(current.name)}" (key_id ${keyId}) is already ${active ? 'enabled' : 'disabled'}; nothing changed.`;
    if (values.json) printJson({ message, key: publicKey(current, ctx.now()) });
    else console.log(message);
    return 0;
  }
  return applyPatch(input, { is_active: active });
}

async function showWebhookSecret({ values, keyId, stores, ctx, help }: Run): Promise<number> {
  const given = stringFlag(values, 'webhook-secret') ?? (ctx.env.COMFY_GATE_WEBHOOK_SECRET || undefined);
  let gatewaySecret: string | null;
  try {
    gatewaySecret = parseWebhookSecret(given);
  } catch (error) {
    throw error instanceof ConfigError ? new UsageError(error.message, help) : error;
  }
  if (gatewaySecret === null) throw new UsageError("give the gateway's --webhook-secret (or set COMFY_GATE_WEBHOOK_SECRET)", help);
  await stores.prepare();
  const record = await requireKey(await stores.keys(), keyId);
  await stores.auditChange({ ts: ctx.now(), action: 'key.webhook_secret', key_id: keyId });
  const secret = signingSecret(gatewaySecret, keyId, record.key_hash);
  if (values.json) printJson({ key_id: keyId, webhook_secret: secret });
  else console.log(secret);
  return 0;
}

async function rotateKey({ values, keyId, stores, ctx, help }: Run): Promise<number> {
  const graceValue = stringFlag(values, 'grace');
  const grace = graceValue === undefined ? 0 : parseGrace(graceValue, help);
  await stores.prepare();
  const now = ctx.now();
  const store = await stores.keys();
  const { patch, apiKey } = rotatedKey(await requireKey(store, keyId), grace, now);
  const updated = await store.update(keyId, patch);
  if (!updated) throw new CommandError(`no key has key_id ${keyId}`);
  await stores.auditChange({ ts: now, action: 'key.rotate', key_id: keyId, details: { grace_seconds: grace } });
  const oldSecret =
    grace > 0
      ? `The old secret works for ${shortDuration(grace)} more, until ${utcTime(updated.previous_key_valid_until)}.`
      : 'The old secret no longer works.';
  if (values.json) {
    printJson({
      ...createdKeyBody(updated, apiKey),
      previous_key_valid_until: updated.previous_key_valid_until,
      message: `Key rotated. ${oldSecret} Save the new api_key now: it won't be shown again.`,
    });
    return 0;
  }
  console.log(`Rotated key "${printable(updated.name)}" (key_id ${keyId}). ${oldSecret}`);
  console.log(`New API key (shown only this once, save it now): ${apiKey}`);
  return 0;
}

async function deleteKey({ values, keyId, stores, ctx, help }: Run): Promise<number> {
  await stores.prepare();
  const store = await stores.keys();
  const record = await requireKey(store, keyId);
  if (!values.yes) {
    if (!ctx.confirm) throw new UsageError(`keys delete needs --yes to delete key ${keyId} when there is no terminal to confirm on`, help);
    const confirmed = await ctx.confirm(`Delete key "${printable(record.name)}" (key_id ${keyId}, ${record.role})? This cannot be undone. [y/N] `);
    if (!confirmed) throw new CommandError(`key ${keyId} was not deleted`);
  }
  if (!(await store.delete(keyId))) throw new CommandError(`no key has key_id ${keyId}`);
  await endSessionsAfter(stores, keyId, 'deleted');
  await stores.auditChange({ ts: ctx.now(), action: 'key.delete', key_id: keyId, details: { name: record.name } });
  if (values.json) printJson({ message: 'API key deleted.', key_id: keyId });
  else console.log(`Deleted key "${printable(record.name)}" (key_id ${keyId}).`);
  return 0;
}
