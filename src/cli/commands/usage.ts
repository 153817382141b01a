// `comfy-gate usage`: usage per key and per UTC day, as a table, JSON or a CSV billing export.

import type { DailyTotals, UsageStore } from '../../store/types.js';
import { dailySeries, sumSeries, type DailyPoint } from '../../usage/daily-series.js';
import { firstDayOf, utcDay } from '../../usage/day.js';
import { usageStats } from '../../usage/report.js';
import { DATABASE_URL_HELP, parseCommandLine, stringFlag, USER_DIRECTORY_HELP, wholeNumber, type CliContext } from '../options.js';
import { csvLine, printable, printJson, seconds, table, type Align } from '../output.js';
import { CommandStores } from '../stores.js';
import { CommandError, UsageError } from '../usage-error.js';

const DEFAULT_DAYS = 30;
const MAX_DAYS = 365;
const FORMATS = ['table', 'json', 'csv'] as const;

/** The header of the CSV export; one row follows per key per UTC day. */
export const CSV_HEADER = 'key_id,key_name,date,requests,successes,failures,total_duration_s,prompts,prompts_run,execution_seconds,outputs';

export const USAGE_HELP = `Usage: comfy-gate usage [--key KEY_ID] [--days N] [--format table|json|csv]

Usage of every key (or one) over the last N UTC days, today included: requests,
successes, failures, duration, requests refused with 429, prompts admitted, jobs
run (on the day they finished), their execution seconds and outputs. Keys deleted
since still appear while they have usage. Reading never writes to the usage files, so
it is safe beside a running gateway (which writes its usage within a second).

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --key KEY_ID          Only this key
  --days N              How many days, 1 to ${MAX_DAYS} (default ${DEFAULT_DAYS})
  --format FORMAT       table (default), json, or csv: a billing export with one row
                        per key per UTC day, quiet days included:
                        ${CSV_HEADER}
                        (key_name is empty for a key deleted since; a cell that
                        starts with = + - @ is written as "'..." against CSV injection)
  --json                The same as --format json

Examples:
  comfy-gate usage --days 7
  comfy-gate usage --format csv --days 31 > usage.csv`;

/** The table columns of job metering, filled by `jobCells`. */
const JOB_HEADERS = ['PROMPTS', 'RUN', 'EXECUTION (S)', 'OUTPUTS'];

/** The job metering cells of a table row, from the value of each field. */
function jobCells(value: (field: keyof DailyTotals) => number): string[] {
  return [String(value('prompts')), String(value('prompts_run')), seconds(value('execution_seconds')), String(value('outputs'))];
}

interface KeyUsage {
  keyId: string;
  /** null for a key deleted since its use. */
  name: string | null;
  daily: DailyPoint[];
}

/** Runs `comfy-gate usage`; returns the exit code. */
export async function usage(args: string[], ctx: CliContext): Promise<number> {
  const help = 'comfy-gate usage --help';
  const parsed = parseCommandLine(
    args,
    'usage',
    { key: { type: 'string' }, days: { type: 'string' }, format: { type: 'string' }, json: { type: 'boolean' } },
    { database: true },
  );
  if (!parsed) {
    console.log(USAGE_HELP);
    return 0;
  }
  const { values } = parsed;
  const daysValue = stringFlag(values, 'days');
  const days = daysValue === undefined ? DEFAULT_DAYS : wholeNumber('days', daysValue, 1, MAX_DAYS, help);
  const formatValue = stringFlag(values, 'format');
  if (formatValue !== undefined && !(FORMATS as readonly string[]).includes(formatValue)) {
    throw new UsageError(`--format must be table, json or csv, not ${JSON.stringify(formatValue)}`, help);
  }
  if (values.json && formatValue !== undefined && formatValue !== 'json')
    throw new UsageError(`--json and --format ${formatValue} contradict each other`, help);
  const format = values.json ? 'json' : (formatValue ?? 'table');
  const onlyKey = stringFlag(values, 'key');

  const stores = CommandStores.of(values, ctx.env, help);
  try {
    await stores.prepare();
    const keys = await stores.keys();
    // The name of each key in the report, in the order of `keys list`: only the one asked for, when one is.
    const names = new Map<string, string>();
    if (onlyKey === undefined) await keys.eachPage((records) => records.forEach((record) => names.set(record.key_id, record.name)));
    else {
      const record = await keys.get(onlyKey);
      if (record) names.set(record.key_id, record.name);
    }
    printUsage(await stores.usage(), names, { onlyKey, days, format, now: ctx.now() });
  } finally {
    await stores.close();
  }
  return 0;
}

/**
 * Prints the usage of every key (or only `onlyKey`) over `days` days in `format`.
 * @throws CommandError when `onlyKey` has neither a key nor usage.
 */
function printUsage(
  store: UsageStore,
  names: Map<string, string>,
  { onlyKey, days, format, now }: { onlyKey: string | undefined; days: number; format: string; now: number },
): void {
  // Keys in the order of `keys list`, then deleted keys that still have usage.
  let keyIds = [...new Set([...names.keys(), ...store.keyIds().sort()])];
  if (onlyKey !== undefined) {
    if (!keyIds.includes(onlyKey)) throw new CommandError(`no key has key_id ${onlyKey}`);
    keyIds = [onlyKey];
  }
  const rows: KeyUsage[] = keyIds.map((keyId) => ({ keyId, name: names.get(keyId) ?? null, daily: dailySeries(store, keyId, days, now) }));

  if (format === 'csv') {
    const lines = [CSV_HEADER];
    for (const row of rows) {
      for (const point of row.daily)
        lines.push(
          csvLine([
            row.keyId,
            row.name ?? '',
            point.date,
            point.requests,
            point.successes,
            point.failures,
            seconds(point.duration),
            point.prompts,
            point.prompts_run,
            seconds(point.execution_seconds),
            point.outputs,
          ]),
        );
    }
    console.log(lines.join('\n'));
    return;
  }
  if (format === 'json') {
    printJson({
      days,
      from: firstDayOf(days, now),
      to: utcDay(now),
      keys: rows.map((row) => ({ key_id: row.keyId, key_name: row.name, usage_stats: usageStats(store, row.keyId, days, now), daily: row.daily })),
      daily_total: sumSeries(
        rows.map((row) => row.daily),
        days,
        now,
      ),
    });
    return;
  }

  console.log(`Usage from ${firstDayOf(days, now)} to ${utcDay(now)} (UTC, ${days} day${days === 1 ? '' : 's'}):\n`);
  const headers = ['KEY_ID', 'NAME', 'REQUESTS', 'SUCCESSES', 'FAILURES', 'REFUSED (429)', 'DURATION (S)', ...JOB_HEADERS];
  const align: Align[] = ['left', 'left', ...headers.slice(2).map((): Align => 'right')];
  const line = (keyId: string, name: string, points: DailyPoint[]): string[] => {
    const sum = (field: keyof DailyTotals): number => points.reduce((total, p) => total + p[field], 0);
    return [
      keyId,
      name,
      String(sum('requests')),
      String(sum('successes')),
      String(sum('failures')),
      String(sum('rate_limited')),
      seconds(sum('duration')),
      ...jobCells(sum),
    ];
  };
  const table1 = rows.map((row) => line(row.keyId, row.name === null ? '(deleted)' : printable(row.name, 40), row.daily));
  if (rows.length > 1)
    table1.push(
      line(
        'TOTAL',
        '',
        rows.flatMap((row) => row.daily),
      ),
    );
  console.log(rows.length === 0 ? 'No keys and no usage.' : table(headers, table1, align));
  if (onlyKey !== undefined) {
    const active = rows[0]!.daily.filter((p) => p.requests > 0 || p.rate_limited > 0 || p.prompts > 0 || p.prompts_run > 0);
    const dayHeaders = ['DATE', 'REQUESTS', 'SUCCESSES', 'FAILURES', 'REFUSED (429)', 'DURATION (S)', ...JOB_HEADERS];
    console.log(
      active.length === 0
        ? '\nNo requests in this period.'
        : '\nBy day (quiet days left out):\n' +
            table(
              dayHeaders,
              active.map((p) => [
                p.date,
                String(p.requests),
                String(p.successes),
                String(p.failures),
                String(p.rate_limited),
                seconds(p.duration),
                ...jobCells((field) => p[field]),
              ]),
              ['left', ...dayHeaders.slice(1).map((): Align => 'right')],
            ),
    );
  }
}
