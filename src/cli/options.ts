// Reading a command's arguments: flags, the KEY_ID, times, durations and numbers; every mistake is a UsageError.

import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, parseBoolean, serviceUrlOf } from '../config/load.js';
import { DEFAULTS } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { MAX_ROTATION_GRACE_SECONDS, parseRotateKey } from '../server/key-input.js';
import { UsageError } from './usage-error.js';

/** What a command gets besides its arguments. */
export interface CliContext {
  env: NodeJS.ProcessEnv;
  /** Current time in Unix seconds. */
  now(): number;
  /** Asks the person at the terminal a yes/no question; absent when there is no terminal to ask. */
  confirm?: (question: string) => Promise<boolean>;
}

export type FlagValues = Record<string, string | boolean | undefined>;

/** A flag of a command: a value (`--name NAME`) or a switch (`--json`). */
export type FlagSpec = Record<string, { type: 'string' | 'boolean' }>;

/** `--user-directory DIR` and `--allow-unsafe-store-permissions`, taken by every command. */
export const USER_DIRECTORY_FLAG: FlagSpec = { 'user-directory': { type: 'string' }, 'allow-unsafe-store-permissions': { type: 'boolean' } };

/** `--database-url URL` and `--database-url-file PATH`: the commands that take them work on PostgreSQL instead of the folder. */
export const DATABASE_URL_FLAG: FlagSpec = { 'database-url': { type: 'string' }, 'database-url-file': { type: 'string' } };

export const USER_DIRECTORY_HELP = `  --user-directory DIR  The store's folder (default ${DEFAULTS.userDirectory}, env COMFY_GATE_USER_DIRECTORY)
  --allow-unsafe-store-permissions  Warn instead of refusing a store folder that others can write`;

export const DATABASE_URL_HELP = `  --database-url URL    The gateway's PostgreSQL database (postgres://user:password@host:5432/database,
                        env COMFY_GATE_DATABASE_URL): work on it instead of the store's folder
  --database-url-file PATH
                        A file holding that URL, kept out of the process list (env COMFY_GATE_DATABASE_URL_FILE)`;

/** A key_id of the generated shape (22 base64url characters) that starts with `-`: new ones never do, imported ones may. */
const DASHED_KEY_ID = /^-[A-Za-z0-9_-]{21}$/;

/**
 * Keeps a key_id that starts with `-` from being read as a flag: after a flag that takes a value it
 * becomes `--flag=KEY_ID`; elsewhere it is moved after `--`, where only arguments stand.
 */
function withDashedKeyIdsAsValues(args: string[], spec: FlagSpec): string[] {
  const end = args.indexOf('--');
  const before = end < 0 ? args : args.slice(0, end);
  const kept: string[] = [];
  const positional: string[] = end < 0 ? [] : args.slice(end + 1);
  for (const arg of before) {
    if (!DASHED_KEY_ID.test(arg)) {
      kept.push(arg);
      continue;
    }
    const previous = kept.at(-1);
    if (previous?.startsWith('--') && !previous.includes('=') && spec[previous.slice(2)]?.type === 'string') kept[kept.length - 1] = `${previous}=${arg}`;
    else positional.unshift(arg);
  }
  return positional.length > 0 ? [...kept, '--', ...positional] : kept;
}

/**
 * Picks the subcommand of a command group (`keys`, `workflows`) from `args`: prints `groupHelp` and
 * resolves null for `--help`; otherwise the command and the arguments after it.
 * @throws UsageError when no command, or an unknown one, is given
 */
export function chooseSubcommand<C>(
  group: string,
  args: string[],
  commands: Record<string, C>,
  groupHelp: string,
): { name: string; command: C; rest: string[] } | null {
  const [name, ...rest] = args;
  if (name === '--help' || name === '-h' || name === 'help') {
    console.log(groupHelp);
    return null;
  }
  const names = Object.keys(commands).join(', ');
  if (name === undefined || name.startsWith('-')) throw new UsageError(`${group} needs a command first: one of ${names}`, `comfy-gate ${group} --help`);
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) throw new UsageError(`unknown ${group} command ${JSON.stringify(name)}; the commands are ${names}`, `comfy-gate ${group} --help`);
  return { name, command, rest };
}

/**
 * Parses a command's arguments. Resolves null when `--help` or `-h` is among them (the caller prints
 * its help). With `keyId`, exactly one positional argument is required: the KEY_ID; with `argument`,
 * exactly one too, named as `argument` says in the error when it is missing (it is then in `keyId`).
 * @throws UsageError for an unknown flag, a missing value, a missing KEY_ID or an extra argument.
 */
export function parseCommandLine(
  args: string[],
  command: string,
  flags: FlagSpec,
  options: { keyId?: boolean; argument?: string; database?: boolean } = {},
): { values: FlagValues; keyId: string } | null {
  if (args.includes('--help') || args.includes('-h')) return null;
  const help = `comfy-gate ${command} --help`;
  const spec = { ...USER_DIRECTORY_FLAG, ...(options.database ? DATABASE_URL_FLAG : {}), ...flags };
  let parsed;
  try {
    parsed = parseArgs({ args: withDashedKeyIdsAsValues(args, spec), options: spec, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message}`, help);
  }
  const positionals = parsed.positionals;
  const one = options.keyId === true || options.argument !== undefined;
  if (one && positionals.length === 0) throw new UsageError(`${command} needs a ${options.argument ?? 'KEY_ID (see comfy-gate keys list)'}`, help);
  const extra = positionals.slice(one ? 1 : 0);
  if (extra.length > 0) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(extra[0])}`, help);
  const values = parsed.values;
  for (const [flag, value] of Object.entries(values)) {
    if (value === '') throw new UsageError(`${command}: --${flag} needs a value`, help);
  }
  return { values, keyId: positionals[0] ?? '' };
}

/** The user directory: `--user-directory`, else COMFY_GATE_USER_DIRECTORY, else ./user; absolute. */
export function userDirectoryOf(values: FlagValues, env: NodeJS.ProcessEnv): string {
  const given = values['user-directory'];
  return resolve(typeof given === 'string' ? given : env.COMFY_GATE_USER_DIRECTORY || DEFAULTS.userDirectory);
}

/**
 * The PostgreSQL URL: `--database-url`, `--database-url-file` or their environment variables, as the gateway
 * reads them; null when none is given.
 * @throws UsageError for a URL that is not postgres:// or a file that cannot be read.
 */
export function databaseUrlOf(values: FlagValues, env: NodeJS.ProcessEnv, help: string): string | null {
  const urls = {
    'database-url': values['database-url'] ?? (env.COMFY_GATE_DATABASE_URL || undefined),
    'database-url-file': values['database-url-file'] ?? (env.COMFY_GATE_DATABASE_URL_FILE || undefined),
  };
  if (!urls['database-url'] && !urls['database-url-file']) return null;
  try {
    return serviceUrlOf(urls, 'database-url', ['postgres:', 'postgresql:'], 'postgres://user:password@host:5432/database');
  } catch (error) {
    throw error instanceof ConfigError ? new UsageError(error.message, help) : error;
  }
}

/** Whether `--allow-unsafe-store-permissions` (or COMFY_GATE_ALLOW_UNSAFE_STORE_PERMISSIONS) lets an unsafe store folder be used. */
export function allowUnsafeStoreOf(values: FlagValues, env: NodeJS.ProcessEnv): boolean {
  if (values['allow-unsafe-store-permissions'] === true) return true;
  const fromEnv = env.COMFY_GATE_ALLOW_UNSAFE_STORE_PERMISSIONS;
  return fromEnv !== undefined && fromEnv !== '' && parseBoolean('COMFY_GATE_ALLOW_UNSAFE_STORE_PERMISSIONS', fromEnv);
}

/** The value of a string flag, or undefined when it was not given. */
export function stringFlag(values: FlagValues, flag: string): string | undefined {
  const value = values[flag];
  return typeof value === 'string' ? value : undefined;
}

/**
 * A whole number within bounds.
 * @throws UsageError naming the flag and the accepted range.
 */
export function wholeNumber(flag: string, value: string, min: number, max: number, help: string): number {
  if (!/^\d{1,15}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`, help);
  }
  return Number(value);
}

const ISO_8601 = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * A point in time as Unix seconds: Unix seconds themselves, or ISO 8601 (`2025-03-01`,
 * `2025-03-01T12:00:00Z`, `2025-03-01T12:00+02:00`). A date or time without a zone is UTC.
 * @throws UsageError for anything else.
 */
export function parseTime(flag: string, value: string, help: string): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const match = ISO_8601.exec(value);
  let ms = NaN;
  if (match && isCalendarDate(match[1]!)) {
    const zone = (match[3] ?? 'Z').toUpperCase().replace(/^([+-]\d{2})(\d{2})$/, '$1:$2');
    ms = Date.parse(`${match[1]}T${match[2] ?? '00:00'}${zone}`);
  }
  if (!Number.isFinite(ms)) {
    throw new UsageError(`--${flag} must be Unix seconds or an ISO 8601 time such as 2025-03-01 or 2025-03-01T12:00:00Z, not ${JSON.stringify(value)}`, help);
  }
  return ms / 1000;
}

/** True for a `YYYY-MM-DD` that exists (no 2025-02-30). */
function isCalendarDate(date: string): boolean {
  const [year, month, day] = date.split('-').map(Number) as [number, number, number];
  const at = new Date(Date.UTC(year, month - 1, day));
  return at.getUTCFullYear() === year && at.getUTCMonth() === month - 1 && at.getUTCDate() === day;
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/**
 * A rotation grace period: seconds, or a number with s, m, h or d; 0 to 30 days, as the HTTP API allows.
 * @throws UsageError
 */
export function parseGrace(value: string, help: string): number {
  const match = /^(\d{1,10})([smhd]?)$/.exec(value);
  const seconds = match ? Number(match[1]) * DURATION_UNITS[match[2] || 's']! : NaN;
  try {
    return parseRotateKey({ grace_seconds: seconds }).grace_seconds;
  } catch {
    throw new UsageError(
      `--grace must be a duration from 0 to ${MAX_ROTATION_GRACE_SECONDS / 86_400}d, such as 300, 5m, 1h or 1d, not ${JSON.stringify(value)}`,
      help,
    );
  }
}

/** The flag of a body field: `--rate-limit` for `rate_limit`; a field inside one (`policy.max_steps`) keeps its own name after the flag's. */
function flagOf(field: string): string {
  const dot = field.indexOf('.');
  if (dot < 0) return `--${field.replaceAll('_', '-')}`;
  return `--${field.slice(0, dot).replaceAll('_', '-')}: ${field.slice(dot + 1)}`;
}

/**
 * Turns a validation error of the HTTP API's body checks into a UsageError that names the flags.
 * Other errors are returned unchanged.
 */
export function asUsageError(error: unknown, help: string): unknown {
  if (!(error instanceof GatewayError) || error.code !== 'INVALID_REQUEST') return error;
  const problems = (error.details?.details ?? []) as Array<{ field: string; problem: string }>;
  const named = problems.filter((p) => p.field !== 'body').map((p) => `${flagOf(p.field)} ${p.problem}`);
  return new UsageError(named.length > 0 ? named.join('; ') : error.message, help);
}
