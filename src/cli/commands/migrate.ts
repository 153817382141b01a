// `comfy-gate migrate`: copies a JSON-file store into PostgreSQL, idempotently, and prints what it copied.

import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { redactUrl } from '../../config/load.js';
import { allowUnsafeStoreOf, databaseUrlOf, type CliContext } from '../options.js';
import { printJson, table } from '../output.js';
import { checkStoreFolder } from '../stores.js';
import { CommandError, UsageError } from '../usage-error.js';

export const MIGRATE_HELP = `Usage: comfy-gate migrate --from-user-directory DIR --database-url URL [--json]

Copies the JSON-file store in DIR (a gateway's user directory) into PostgreSQL:
keys, usage records and daily totals, ownership records, browser sessions, the
audit trail, the job registry and the named workflows. The database schema is created or
brought up to date first.
DIR is only read.

It can be run again at any time: what PostgreSQL already has is not copied
twice and never overwritten (a key deleted there stays deleted). Stop the
gateway serving DIR before the last run, so that everything it wrote is copied.

Options:
  --from-user-directory DIR   The JSON store to copy (api_keys.json, api_usage.json, ...)
  --database-url URL          postgres://user:password@host:5432/database
                              (env COMFY_GATE_DATABASE_URL)
  --database-url-file PATH    A file holding that URL, kept out of the process list
                              (env COMFY_GATE_DATABASE_URL_FILE)
  --allow-unsafe-store-permissions
                              Warn instead of refusing a DIR that others can write
  --json                      Print {"source", "database", "copied": {kind: {found, copied}}}

Exit codes: 0 copied (or nothing new), 1 failure (nothing half-copied is lost:
run it again), 2 bad arguments or a DIR that others can change.`;

const LABELS: Record<string, string> = {
  keys: 'keys',
  usage_records: 'usage records',
  daily_totals: 'daily totals (key-days)',
  ownership: 'ownership records',
  sessions: 'sessions (unexpired)',
  audit_entries: 'audit entries',
  jobs: 'jobs',
  workflows: 'workflows',
  webhook_deliveries: 'webhook deliveries',
};

/** Runs `comfy-gate migrate`; returns the exit code. */
export async function migrate(args: string[], ctx: CliContext): Promise<number> {
  const help = 'comfy-gate migrate --help';
  if (args.includes('--help') || args.includes('-h')) {
    console.log(MIGRATE_HELP);
    return 0;
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({
      args,
      options: {
        'from-user-directory': { type: 'string' },
        'database-url': { type: 'string' },
        'database-url-file': { type: 'string' },
        'allow-unsafe-store-permissions': { type: 'boolean' },
        json: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    });
    values = parsed.values;
  } catch (error) {
    throw new UsageError(`migrate: ${(error as Error).message}`, help);
  }
  const from = values['from-user-directory'];
  if (typeof from !== 'string' || from === '') throw new UsageError('migrate needs --from-user-directory DIR: the JSON store to copy', help);
  const url = databaseUrlOf(values, ctx.env, help);
  if (url === null) throw new UsageError('migrate needs --database-url postgres://... (or COMFY_GATE_DATABASE_URL, or --database-url-file)', help);
  const directory = resolve(from);
  const found = await stat(directory).catch(() => null);
  if (!found?.isDirectory()) throw new UsageError(`--from-user-directory ${directory} is not a directory`, help);
  await checkStoreFolder(directory, allowUnsafeStoreOf(values, ctx.env));

  // The PostgreSQL client is loaded only by this command and by a gateway given a database URL.
  const { PostgresDatabase } = await import('../../store/postgres/database.js');
  const { importFileStore } = await import('../../store/postgres/import-file-store.js');
  let database;
  try {
    database = await PostgresDatabase.open({ url });
  } catch (error) {
    throw new CommandError(`cannot use the database at ${redactUrl(url)}: ${(error as Error).message}`);
  }
  let report;
  try {
    report = await importFileStore(directory, database, ctx.now());
  } catch (error) {
    if (error instanceof Error && error.name === 'StoreCorruptError') throw error;
    throw new CommandError(`copying into ${redactUrl(url)} failed: ${(error as Error).message}. What was copied stays; run the command again.`);
  } finally {
    await database.close();
  }
  if (values.json) {
    printJson({ source: directory, database: redactUrl(url), copied: report });
    return 0;
  }
  const rows = Object.entries(report).map(([kind, count]) => [LABELS[kind] ?? kind, String(count.copied), String(count.found)]);
  const total = Object.values(report).reduce((n, count) => n + count.copied, 0);
  console.log(`Copied ${directory} into ${redactUrl(url)}${total === 0 ? ': nothing new.' : ':'}`);
  console.log(table(['WHAT', 'COPIED', 'IN THE JSON STORE'], rows, ['left', 'right', 'right']));
  return 0;
}
