// The CLI's paged output: JSON printed a page at a time reads as printJson prints the whole, and tables measured a page at a time align as one.

import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { parseExactJson } from '../../src/json/exact-json.js';
import { columnWidths, printJson, printJsonPages, table, tableLine } from '../../src/cli/output.js';

/** What `print` writes with console.log, as one text. */
async function printed(print: () => void | Promise<void>): Promise<string> {
  const lines: string[] = [];
  const log = mock.method(console, 'log', (line: string) => lines.push(line));
  try {
    await print();
  } finally {
    log.mock.restore();
  }
  return lines.join('\n');
}

test('printJsonPages prints the text printJson prints for the whole list, whatever the pages', async () => {
  const items = [{ a: 1, nested: { b: [1, 2], c: {} } }, { a: parseExactJson('12345678901234567890.5') }, { a: 'x\ny' }];
  for (const pages of [[], [[]], [items], [items.slice(0, 1), [], items.slice(1)], items.map((item) => [item])]) {
    const whole = pages.flat();
    assert.equal(
      await printed(() => printJsonPages('keys', async (onPage) => pages.forEach(onPage))),
      await printed(() => printJson({ keys: whole })),
      `${pages.length} pages of ${whole.length} items`,
    );
  }
});

test('printJsonPages with fields before and after the list prints the text printJson prints for the whole object', async () => {
  const items = [{ a: 1 }, { a: [2, { b: 'x\ny' }] }];
  const before = { days: 2, from: '2025-01-01', nested: { to: [] } };
  for (const pages of [[], [items], [items.slice(0, 1), [], items.slice(1)]]) {
    const whole = pages.flat();
    for (const after of [{ daily_total: [{ requests: 3 }] }, {}]) {
      assert.equal(
        await printed(() => printJsonPages('keys', async (onPage) => pages.forEach(onPage), { before, after: () => after })),
        await printed(() => printJson({ ...before, keys: whole, ...after })),
        `${whole.length} items, ${Object.keys(after).length} fields after`,
      );
    }
  }
});

test('tableLine with widths measured a page at a time prints the lines of table', () => {
  const headers = ['ID', 'NAME', 'N'];
  const rows = [
    ['a', 'short', '1'],
    ['bb', 'a longer\u0007name', '100'],
    ['c', '', '10'],
  ];
  const widths = columnWidths(headers, rows.slice(1), columnWidths(headers, rows.slice(0, 1)));
  assert.deepEqual(widths, [2, 13, 3]);
  assert.equal([headers, ...rows].map((row) => tableLine(row, widths, ['left', 'left', 'right'])).join('\n'), table(headers, rows, ['left', 'left', 'right']));
});
