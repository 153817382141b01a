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
  const cells = [headers, ...rows].map((row) => row.map((cell) => printable(cell)));
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((cell, column) => (align[column] === 'right' ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
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
