// What the CLI prints: aligned tables for people, JSON and CSV for scripts, times in UTC.

import { stringifyExactJson } from '../json/exact-json.js';

/** Column alignment of a table: numbers read best right-aligned. */
export type Align = 'left' | 'right';

/**
 * An aligned plain-text table: a header line, then one line per row, columns two spaces apart.
 * Cells are cleaned of control characters, so a stored name cannot drive the terminal.
 * @example table(['KEY_ID', 'NAME'], [['abc', 'Render farm']])
 */
export function table(headers: string[], rows: string[][], align: Align[] = []): string {
  const widths = columnWidths(headers, rows);
  return [headers, ...rows].map((row) => tableLine(row, widths, align)).join('\n');
}

/**
 * The width of each column of `table(headers, rows)`; give the widths found so far as `widths` to
 * measure rows that come a page at a time.
 */
export function columnWidths(headers: string[], rows: string[][], widths = headers.map((header) => printable(header).length)): number[] {
  return widths.map((width, column) => Math.max(width, ...rows.map((row) => printable(row[column] ?? '').length)));
}

/** One line of a table whose columns have these widths (`columnWidths`), cells cleaned as `table` cleans them. */
export function tableLine(row: string[], widths: number[], align: Align[] = []): string {
  return row
    .map((cell, column) => (align[column] === 'right' ? printable(cell).padStart(widths[column]!) : printable(cell).padEnd(widths[column]!)))
    .join('  ')
    .trimEnd();
}

/** Lines of `label: value`, labels aligned, for one record. */
export function fields(entries: Array<[string, string]>): string {
  const width = Math.max(...entries.map(([label]) => label.length)) + 1;
  return entries.map(([label, value]) => `${`${label}:`.padEnd(width)} ${printable(value)}`).join('\n');
}

/** Prints a value as indented JSON, the `--json` output of every command, each ExactNumber as its own text. */
export function printJson(value: unknown): void {
  console.log(stringifyExactJson(value, 2));
}

/**
 * Prints `{...before, "<field>": [...items], ...after}` exactly as `printJson` would, the items handed
 * over a page at a time by `eachPage`, so that only one of them is held here at once; `after` is asked
 * for once every page is printed.
 */
export async function printJsonPages<T>(
  field: string,
  eachPage: (onPage: (items: T[]) => void) => Promise<void>,
  around: { before?: Record<string, unknown>; after?: () => Record<string, unknown> } = {},
): Promise<void> {
  const head = `{\n${membersText(around.before, ',\n')}  ${JSON.stringify(field)}: [`;
  // The last item's text, printed once the next one shows whether a comma follows it.
  const last: { text: string | null } = { text: null };
  await eachPage((items) => {
    for (const item of items) {
      console.log(last.text === null ? head : `${last.text},`);
      last.text = stringifyExactJson(item, 2).replace(/^/gm, '    ');
    }
  });
  const tail = `]${membersText(around.after?.(), '', ',\n')}\n}`;
  console.log(last.text === null ? `${head}${tail}` : `${last.text}\n  ${tail}`);
}

/** The members of `fields` as `printJson` prints them inside its object, between `prefix` and `suffix`; '' when there are none. */
function membersText(fields: Record<string, unknown> | undefined, suffix: string, prefix = ''): string {
  if (!fields || Object.keys(fields).length === 0) return '';
  // Inside the braces of `{\n  "a": 1\n}`.
  return `${prefix}${stringifyExactJson(fields, 2).slice(2, -2)}${suffix}`;
}

/** A cell a spreadsheet would read as a formula: OWASP's list of first characters (CSV injection). */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * One CSV line (RFC 4180): a field holding a comma, quote or line break is quoted, quotes doubled. A
 * text field that a spreadsheet would run as a formula gets a leading `'` and is quoted, as OWASP
 * recommends; numbers are written as they are.
 */
export function csvLine(values: Array<string | number>): string {
  return values
    .map((value) => {
      if (typeof value === 'number') return String(value);
      const text = FORMULA_START.test(value) ? `'${value}` : value;
      return text !== value || /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
    })
    .join(',');
}

/** A Unix time as ISO 8601 in UTC to the second (`2025-01-31T09:30:00Z`), or `none` when null. */
export function utcTime(unixSeconds: number | null, none = 'never'): string {
  if (unixSeconds === null) return none;
  return new Date(Math.floor(unixSeconds) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Seconds as the largest whole unit that fits: `90` → `90s`, `3600` → `1h`, `86400` → `1d`. */
export function shortDuration(seconds: number): string {
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/** A number of seconds to at most three decimals, without trailing zeros: `1.5`, `0`, `12.345`. */
export function seconds(value: number): string {
  return String(Math.round(value * 1000) / 1000);
}

/** Text without control characters (each shown as `?`), and cut to `max` characters with an ellipsis. */
export function printable(text: string, max = Infinity): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}
