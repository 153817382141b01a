// `comfy-gate usage`: usage per key and per UTC day, as a table, JSON or a CSV billing export.

import type { DailyTotals, KeyRows, UsageRows, UsageStore } from '../../store/types.js';
import { dailySeries, sumSeries, type DailyPoint } from '../../usage/daily-series.js';
import { firstDayOf, utcDay } from '../../usage/day.js';
import { usageStats, type UsageStats } from '../../usage/report.js';
import { DATABASE_URL_HELP, parseCommandLine, stringFlag, USER_DIRECTORY_HELP, wholeNumber, type CliContext } from '../options.js';
import { columnWidths, csvLine, printable, printJsonPages, seconds, table, tableLine, type Align } from '../output.js';
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
  stats: UsageStats;
}

/** What a report covers. */
interface Period {
  /** Only this key, when given. */
  onlyKey: string | undefined;
  days: number;
  now: number;
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
  const period: Period = { onlyKey: stringFlag(values, 'key'), days, now: ctx.now() };

  const stores = CommandStores.of(values, ctx.env, help);
  try {
    await stores.prepare();
    const [keys, usageRows] = [await stores.keys(), await stores.usage()];
    const eachPage = (onPage: (rows: KeyUsage[]) => void): Promise<void> => eachReportPage(keys, usageRows, period, onPage);
    if (format === 'csv') await printCsv(eachPage);
    else if (format === 'json') await printUsageJson(eachPage, period);
    else await printTable(eachPage, period);
  } finally {
    await stores.close();
  }
  return 0;
}

/**
 * Calls `onPage` with the rows of the report a page at a time: the keys in the order of `keys list`
 * (only `onlyKey` when given), then the keys deleted since that still have usage. Each page's usage is
 * read for its keys alone.
 * @throws CommandError when `onlyKey` has neither a key nor usage.
 */
async function eachReportPage(keys: KeyRows, usageRows: UsageRows, { onlyKey, days, now }: Period, onPage: (rows: KeyUsage[]) => void): Promise<void> {
  const fromDay = firstDayOf(days, now);
  const rowOf = (store: UsageStore, keyId: string, name: string | null): KeyUsage => ({
    keyId,
    name,
    daily: dailySeries(store, keyId, days, now),
    stats: usageStats(store, keyId, days, now),
  });
  if (onlyKey !== undefined) {
    const record = await keys.get(onlyKey);
    // A key deleted since is reported while it has usage of any day: all its days are read to tell.
    const store = await usageRows.ofKeys([onlyKey], record ? fromDay : undefined);
    if (!record && !store.keyIds().includes(onlyKey)) throw new CommandError(`no key has key_id ${onlyKey}`);
    onPage([rowOf(store, onlyKey, record?.name ?? null)]);
    return;
  }
  await keys.eachPage(async (records) => {
    const store = await usageRows.ofKeys(
      records.map((record) => record.key_id),
      fromDay,
    );
    onPage(records.map((record) => rowOf(store, record.key_id, record.name)));
  });
  await usageRows.eachPageOfKeysGone(async (keyIds) => {
    const store = await usageRows.ofKeys(keyIds, fromDay);
    onPage(keyIds.map((keyId) => rowOf(store, keyId, null)));
  });
}

/** The rows of the report, a page at a time (`eachReportPage`). */
type EachPage = (onPage: (rows: KeyUsage[]) => void) => Promise<void>;

/** The billing export: one line per key per UTC day, printed a page of keys at a time. */
async function printCsv(eachPage: EachPage): Promise<void> {
  console.log(CSV_HEADER);
  await eachPage((rows) => {
    const lines: string[] = [];
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
    if (lines.length > 0) console.log(lines.join('\n'));
  });
}

/** `{days, from, to, keys, daily_total}`, the keys printed a page at a time. */
async function printUsageJson(eachPage: EachPage, { days, now }: Period): Promise<void> {
  let total = sumSeries([], days, now);
  await printJsonPages(
    'keys',
    (onItems) =>
      eachPage((rows) => {
        total = sumSeries([total, ...rows.map((row) => row.daily)], days, now);
        onItems(rows.map((row) => ({ key_id: row.keyId, key_name: row.name, usage_stats: row.stats, daily: row.daily })));
      }),
    { before: { days, from: firstDayOf(days, now), to: utcDay(now) }, after: () => ({ daily_total: total }) },
  );
}

/**
 * The table of every key's sums (and a TOTAL line), then with `onlyKey` its days: the rows are read
 * twice, a first pass measuring the columns, as `keys list` does.
 */
async function printTable(eachPage: EachPage, { onlyKey, days, now }: Period): Promise<void> {
  console.log(`Usage from ${firstDayOf(days, now)} to ${utcDay(now)} (UTC, ${days} day${days === 1 ? '' : 's'}):\n`);
  const headers = ['KEY_ID', 'NAME', 'REQUESTS', 'SUCCESSES', 'FAILURES', 'REFUSED (429)', 'DURATION (S)', ...JOB_HEADERS];
  const align: Align[] = ['left', 'left', ...headers.slice(2).map((): Align => 'right')];
  const cellsOf = (row: KeyUsage): string[] => sumCells(row.keyId, row.name === null ? '(deleted)' : printable(row.name, 40), row.daily);
  let widths = columnWidths(headers, []);
  let count = 0;
  let total = sumSeries([], days, now);
  await eachPage((rows) => {
    widths = columnWidths(headers, rows.map(cellsOf), widths);
    count += rows.length;
    total = sumSeries([total, ...rows.map((row) => row.daily)], days, now);
  });
  if (count === 0) {
    console.log('No keys and no usage.');
    return;
  }
  if (count > 1) widths = columnWidths(headers, [sumCells('TOTAL', '', total)], widths);
  console.log(tableLine(headers, widths, align));
  // Rows that came between the two passes are printed too, their cells as wide as they are.
  let printedRows = 0;
  let firstRow: KeyUsage | undefined;
  total = sumSeries([], days, now);
  await eachPage((rows) => {
    for (const row of rows) console.log(tableLine(cellsOf(row), widths, align));
    firstRow ??= rows[0];
    printedRows += rows.length;
    total = sumSeries([total, ...rows.map((row) => row.daily)], days, now);
  });
  if (printedRows > 1) console.log(tableLine(sumCells('TOTAL', '', total), widths, align));
  // With --key, the one row is that key's.
  if (onlyKey !== undefined && firstRow) printDays(firstRow.daily);
}

/** A table line of sums over `points`. */
function sumCells(keyId: string, name: string, points: DailyPoint[]): string[] {
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
}

/** One key's days with any use, as a table. */
function printDays(points: DailyPoint[]): void {
  const active = points.filter((p) => p.requests > 0 || p.rate_limited > 0 || p.prompts > 0 || p.prompts_run > 0);
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
