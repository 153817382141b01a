// `comfy-gate audit`: the audit trail (audit.jsonl, or the database's audit_log) of key changes and sign-ins, newest entries last.

import { DATABASE_URL_HELP, parseCommandLine, parseTime, stringFlag, USER_DIRECTORY_HELP, wholeNumber, type CliContext } from '../options.js';
import { printable, printJson, table, utcTime } from '../output.js';
import { CommandStores } from '../stores.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1_000_000;

export const AUDIT_HELP = `Usage: comfy-gate audit [--since WHEN] [--limit N] [--json]

Prints the audit trail of the store directory (audit.jsonl), or of the database with
--database-url: who created, changed,
disabled, enabled, rotated or deleted which key, and browser sign-ins and
sign-outs. The actor is a key_id, "local" (the gateway's machine without a key),
"bootstrap" (the first key) or "cli" (this command line). Entries are printed
oldest first: the most recent N at or after --since.

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --since WHEN          Only entries at or after this time: Unix seconds or ISO 8601
                        (2025-03-01, 2025-03-01T12:00:00Z; UTC when no zone is given)
  --limit N             At most the N most recent entries, 1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})
  --json                Print {"entries": [...]}, the objects of GET /api/audit`;

/** Runs `comfy-gate audit`; returns the exit code. */
export async function audit(args: string[], ctx: CliContext): Promise<number> {
  const help = 'comfy-gate audit --help';
  const parsed = parseCommandLine(args, 'audit', { since: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } }, { database: true });
  if (!parsed) {
    console.log(AUDIT_HELP);
    return 0;
  }
  const { values } = parsed;
  const sinceValue = stringFlag(values, 'since');
  const since = sinceValue === undefined ? 0 : parseTime('since', sinceValue, help);
  const limitValue = stringFlag(values, 'limit');
  const limit = limitValue === undefined ? DEFAULT_LIMIT : wholeNumber('limit', limitValue, 1, MAX_LIMIT, help);
  const stores = CommandStores.of(values, ctx.env, help);
  let entries;
  try {
    await stores.prepare();
    entries = (await (await stores.audit()).list({ since, limit: Infinity })).slice(-limit);
  } finally {
    await stores.close();
  }
  if (values.json) {
    printJson({ entries });
    return 0;
  }
  if (entries.length === 0) {
    console.log(sinceValue === undefined ? 'The audit trail is empty.' : `No audit entries since ${utcTime(since)}.`);
    return 0;
  }
  const rows = entries.map((entry) => [
    utcTime(entry.ts),
    entry.actor,
    entry.action,
    entry.key_id ?? '-',
    entry.ip ?? '-',
    entry.details ? printable(JSON.stringify(entry.details), 80) : '',
  ]);
  console.log(table(['TIME (UTC)', 'ACTOR', 'ACTION', 'KEY_ID', 'IP', 'DETAILS'], rows));
  return 0;
}
