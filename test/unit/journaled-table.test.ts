// Unit tests of JournaledTable: its rewrites of the snapshot (how large the journal grows first: journalShare, minJournalBytes), that every change survives
// them, and patches (some fields of a record) replayed over any snapshot.

import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { JournaledTable } from '../../src/store/file/journaled-table.js';
import { StoreCorruptError } from '../../src/store/types.js';
import { RewriteCounter } from '../helpers/rewrite-counter.js';

type Row = { id: string; round: number; filler: string; note?: string };

const ROWS = 2000;
/** About 600 bytes per row, so that the snapshot (about 1.2 MB) is well past the smallest journal that is ever compacted (256 KiB). */
const FILLER = 'x'.repeat(560);

describe('JournaledTable rewrites', () => {
  let dir: string;
  const tables: JournaledTable<Row>[] = [];

  function tableIn(journalShare?: number, minJournalBytes?: number): JournaledTable<Row> {
    const table = new JournaledTable<Row>({
      snapshotPath: join(dir, 'rows.json'),
      journalPath: join(dir, 'rows.journal'),
      lockPath: join(dir, '.rows.lock'),
      writers: 'this-process',
      parse: (value) => value as Row,
      ...(journalShare === undefined ? {} : { journalShare }),
      ...(minJournalBytes === undefined ? {} : { minJournalBytes }),
    });
    tables.push(table);
    return table;
  }

  /** The bytes of the journal and of the next journal (the changes appended while the snapshot is rewritten). */
  async function journalBytes(): Promise<number> {
    const sizes = await Promise.all(
      ['rows.journal', 'rows.journal.next'].map((name) =>
        stat(join(dir, name)).then(
          (file) => file.size,
          () => 0,
        ),
      ),
    );
    return sizes[0]! + sizes[1]!;
  }

  /** Writes rows `start` to `start + 99` whole, as of `round`, in one batch of changes. */
  async function putRows(table: JournaledTable<Row>, start: number, round: number): Promise<void> {
    await Promise.all(
      Array.from({ length: 100 }, (_, i) => {
        const id = `row-${start + i}`;
        return table.change(() => ({ ops: [{ op: 'put', id, value: { id, round, filler: FILLER } }], result: undefined }));
      }),
    );
  }

  /**
   * Writes every row once more (in batches of 100 changes); resolves the largest journal seen against the snapshot of its time, and the
   * rewrites seen. Each batch waits for the rewrite it started, so the journal's size when one starts does not hang on how long the last
   * one took (the patch test below makes changes beside rewrites).
   */
  async function rewriteEveryRow(table: JournaledTable<Row>, round: number): Promise<{ largestShare: number; rewrites: number }> {
    let largestShare = 0;
    const rewrites = new RewriteCounter();
    for (let start = 0; start < ROWS; start += 100) {
      await putRows(table, start, round);
      const snapshot = await stat(join(dir, 'rows.json')).catch(() => null);
      if (snapshot) largestShare = Math.max(largestShare, (await journalBytes()) / snapshot.size);
      await table.idle();
      rewrites.saw((await stat(join(dir, 'rows.json'))).ino);
    }
    return { largestShare, rewrites: rewrites.count };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-table-'));
  });
  afterEach(async () => {
    await Promise.all(tables.splice(0).map((table) => table.close()));
    await rm(dir, { recursive: true, force: true });
  });

  for (const { share, label } of [
    { share: undefined, label: 'by default a quarter of the snapshot' },
    { share: 1, label: 'with journalShare 1 as large as the snapshot' },
  ]) {
    test(`the journal grows to ${label} before a rewrite, and every change survives a reopen`, async () => {
      const expected = share ?? 0.25;
      const table = tableIn(share);
      await table.open();
      await rewriteEveryRow(table, 0);
      // Two more rounds: each writes as many bytes to the journal as the whole snapshot holds.
      const first = await rewriteEveryRow(table, 1);
      const second = await rewriteEveryRow(table, 2);
      const largest = Math.max(first.largestShare, second.largestShare);
      const rewrites = first.rewrites + second.rewrites;
      assert.ok(largest >= expected - 0.05, `the journal grew to ${expected} of the snapshot before a rewrite (largest ${largest.toFixed(2)})`);
      // A rewrite starts after the batch that takes the journal past the share: by at most one batch (about 0.05 of the snapshot).
      assert.ok(largest < expected + 0.1, `the journal was rewritten once it passed ${expected} of the snapshot (largest ${largest.toFixed(2)})`);
      assert.ok(rewrites >= 1, 'the snapshot was rewritten');
      await table.close();
      tables.splice(tables.indexOf(table), 1);

      const reopened = tableIn(share);
      await reopened.open();
      assert.equal(reopened.size, ROWS);
      for (let i = 0; i < ROWS; i += 1) assert.equal(reopened.get(`row-${i}`)?.round, 2, `row-${i} has its last change`);
    });
  }

  test('with minJournalBytes the journal grows to that size before a rewrite, however small the snapshot', async () => {
    const least = 3 * 1024 * 1024;
    const table = tableIn(1, least);
    await table.open();
    let largestJournal = 0;
    let largestSnapshot = 0;
    const rewrites = new RewriteCounter();
    // Each round writes about 1.2 MB to the journal, as large as the snapshot of every row: share 1 alone would rewrite it every round.
    for (let round = 0; round < 6; round += 1) {
      for (let start = 0; start < ROWS; start += 100) {
        await putRows(table, start, round);
        largestJournal = Math.max(largestJournal, await journalBytes());
        // As in rewriteEveryRow: each batch waits for the rewrite it started.
        await table.idle();
        const snapshot = await stat(join(dir, 'rows.json'));
        rewrites.saw(snapshot.ino);
        largestSnapshot = Math.max(largestSnapshot, snapshot.size);
      }
    }
    assert.ok(largestJournal > 2 * largestSnapshot, `the journal grew past the snapshot's size (${largestJournal} bytes, snapshot ${largestSnapshot})`);
    // A rewrite starts after the batch that takes the journal past the limit: by at most one batch (about 64 KB).
    assert.ok(largestJournal < least + 128 * 1024, `the journal was rewritten once it passed ${least} bytes (largest ${largestJournal})`);
    assert.ok(rewrites.count >= 1, 'the snapshot was rewritten once the journal passed minJournalBytes');
    await table.close();
    tables.splice(tables.indexOf(table), 1);

    const reopened = tableIn(1, least);
    await reopened.open();
    assert.equal(reopened.size, ROWS);
    for (let i = 0; i < ROWS; i += 1) assert.equal(reopened.get(`row-${i}`)?.round, 5, `row-${i} has its last change`);
  });

  test('patches set only their fields, survive rewrites of the snapshot beside them, and a reopen', async () => {
    const table = tableIn(1);
    await table.open();
    await rewriteEveryRow(table, 0);
    // Each round patches every row with a note as long as the row, so the journal passes the snapshot's size and is rewritten meanwhile.
    const rewrites = new RewriteCounter();
    let nextJournalSeen = false;
    for (let round = 1; round <= 3; round += 1) {
      for (let start = 0; start < ROWS; start += 100) {
        await Promise.all(
          Array.from({ length: 100 }, (_, i) => {
            const id = `row-${start + i}`;
            return table.change(() => ({ ops: [{ op: 'patch', id, fields: { round, note: `${round}${FILLER}` } }], result: undefined }));
          }),
        );
        rewrites.saw((await stat(join(dir, 'rows.json'))).ino);
        nextJournalSeen ||= await stat(join(dir, 'rows.journal.next')).then(
          () => true,
          () => false,
        );
      }
    }
    assert.ok(rewrites.count >= 1, 'the snapshot was rewritten while patches were appended');
    assert.ok(nextJournalSeen, 'while the snapshot was rewritten, the changes went to the next journal');
    const check = (rows: JournaledTable<Row>, when: string): void => {
      assert.equal(rows.size, ROWS, when);
      for (let i = 0; i < ROWS; i += 1) {
        assert.deepEqual(rows.get(`row-${i}`), { id: `row-${i}`, round: 3, filler: FILLER, note: `3${FILLER}` }, `row-${i} ${when}`);
      }
    };
    check(table, 'in memory');
    await table.close();
    tables.splice(tables.indexOf(table), 1);
    const reopened = tableIn(1);
    await reopened.open();
    check(reopened, 'after a reopen');
  });

  test('a journal replayed over a snapshot that already holds its patches, or no longer holds their record, gives the same records', async () => {
    // As a rewrite beside the appends leaves them: the snapshot was written from memory, which already had these changes (and
    // no longer had `gone`), and its journal holds the changes appended since the rewrite began.
    await writeFile(join(dir, 'rows.json'), JSON.stringify({ kept: { id: 'kept', round: 2, filler: 'b', note: 'n2' } }));
    const lines = [
      { op: 'patch', id: 'kept', fields: { round: 1, note: 'n1' } },
      { op: 'patch', id: 'gone', fields: { round: 1 } },
      { op: 'delete', id: 'gone' },
      { op: 'patch', id: 'kept', fields: { round: 2, filler: 'b', note: 'n2' } },
    ];
    await writeFile(join(dir, 'rows.journal'), lines.map((line) => JSON.stringify(line) + '\n').join(''));
    const table = tableIn(1);
    await table.open();
    assert.deepEqual([...table.entries()], [['kept', { id: 'kept', round: 2, filler: 'b', note: 'n2' }]]);
  });

  test('a patch whose fields are not an object is refused as corrupt, naming the record', async () => {
    await writeFile(join(dir, 'rows.journal'), JSON.stringify({ op: 'patch', id: 'row-1', fields: 'round=2' }) + '\n');
    await assert.rejects(tableIn().open(), (error: unknown) => error instanceof StoreCorruptError && /"row-1".*fields must be an object/.test(error.message));
  });

  test('a record is durable once no change of it waits for its append', async () => {
    const table = tableIn();
    await table.open();
    const row = (id: string): Row => ({ id, round: 0, filler: '' });
    await table.change(() => ({ ops: [{ op: 'put', id: 'a', value: row('a') }], result: undefined }));
    assert.ok(table.isDurable('a'));
    const first = table.change(() => ({ ops: [{ op: 'put', id: 'b', value: row('b') }], result: undefined }));
    const second = table.change(() => ({ ops: [{ op: 'patch', id: 'b', fields: { round: 1 } }], result: undefined }));
    assert.equal(table.isDurable('b'), false, 'changed in memory, not yet appended');
    assert.ok(table.isDurable('a'), 'other records are not affected');
    await first;
    await second;
    assert.ok(table.isDurable('b'));
    assert.equal(table.get('b')?.round, 1);
  });

  for (const { when, snapshot } of [
    { when: 'a crash while the snapshot was rewritten', snapshot: { a: { id: 'a', round: 0, filler: 's' } } },
    {
      when: 'a crash between putting the new snapshot and the next journal in place',
      snapshot: { a: { id: 'a', round: 2, filler: 's' }, b: { id: 'b', round: 0, filler: 'j' } },
    },
  ]) {
    test(`after ${when}, the journal and then the next journal are replayed, and changes go on to the next journal`, async () => {
      const lines = (ops: object[]): string => ops.map((op) => JSON.stringify(op) + '\n').join('');
      await writeFile(join(dir, 'rows.json'), JSON.stringify(snapshot));
      const journal = lines([
        { op: 'put', id: 'b', value: { id: 'b', round: 0, filler: 'j' } },
        { op: 'patch', id: 'a', fields: { round: 1 } },
      ]);
      await writeFile(join(dir, 'rows.journal'), journal);
      await writeFile(
        join(dir, 'rows.journal.next'),
        lines([
          { op: 'patch', id: 'a', fields: { round: 2 } },
          { op: 'delete', id: 'b' },
          { op: 'put', id: 'c', value: { id: 'c', round: 0, filler: 'n' } },
        ]),
      );
      const expected = [
        ['a', { id: 'a', round: 2, filler: 's' }],
        ['c', { id: 'c', round: 0, filler: 'n' }],
      ];
      const table = tableIn(1);
      await table.open();
      assert.deepEqual([...table.entries()].sort(), expected);
      await table.change(() => ({ ops: [{ op: 'put', id: 'd', value: { id: 'd', round: 0, filler: 'after' } }], result: undefined }));
      assert.equal(await readFile(join(dir, 'rows.journal'), 'utf8'), journal, 'the journal is left as it was');
      assert.match(await readFile(join(dir, 'rows.journal.next'), 'utf8'), /"id":"d"/);
      await table.close();
      tables.splice(tables.indexOf(table), 1);
      const reopened = tableIn(1);
      await reopened.open();
      assert.deepEqual([...reopened.entries()].sort(), [...expected, ['d', { id: 'd', round: 0, filler: 'after' }]]);
    });
  }

  test('the bytes a failed append left after the last complete line are cut before the next append', async () => {
    const table = tableIn();
    await table.open();
    const put = (id: string): Promise<void> => table.change(() => ({ ops: [{ op: 'put', id, value: { id, round: 0, filler: '' } }], result: undefined }));
    await put('before');
    const journal = (await stat(join(dir, 'rows.journal')).catch(() => null)) ? 'rows.journal' : 'rows.journal.next';
    // What an append cut short by a full disk leaves: part of a line, no newline.
    await appendFile(join(dir, journal), '{"op":"put","id":"torn","val');
    await put('after');
    await table.close();
    tables.splice(tables.indexOf(table), 1);
    const reopened = tableIn();
    await reopened.open();
    assert.deepEqual([...reopened.ids()].sort(), ['after', 'before']);
  });

  test('with ownRecord, own puts and patches are applied through it without parse, and what the files hold is parsed when read', async () => {
    const parsed: unknown[] = [];
    const open = (): JournaledTable<Row> => {
      const table = new JournaledTable<Row>({
        snapshotPath: join(dir, 'rows.json'),
        journalPath: join(dir, 'rows.journal'),
        lockPath: join(dir, '.rows.lock'),
        writers: 'this-process',
        ownRecord: (record, fields) => ({ ...record, ...fields }),
        parse: (value) => {
          parsed.push(value);
          return { ...(value as Row), note: 'parsed' };
        },
      });
      tables.push(table);
      return table;
    };
    const table = open();
    await table.open();
    const value: Row = { id: 'a', round: 0, filler: 'f' };
    await table.change(() => ({ ops: [{ op: 'put', id: 'a', value }], result: undefined }));
    value.filler = 'changed by its maker';
    await table.change(() => ({ ops: [{ op: 'patch', id: 'a', fields: { round: 1 } }], result: undefined }));
    await table.change(() => ({ ops: [{ op: 'patch', id: 'missing', fields: { round: 1 } }], result: undefined }));
    assert.deepEqual(parsed, [], 'no own change is parsed');
    assert.deepEqual(table.get('a'), { id: 'a', round: 1, filler: 'f' }, 'the record is a copy of the value put, patched');
    assert.equal(table.get('missing'), undefined, 'a patch of no record is skipped');
    await table.close();
    tables.splice(tables.indexOf(table), 1);
    const reopened = open();
    await reopened.open();
    assert.deepEqual(reopened.get('a'), { id: 'a', round: 1, filler: 'f', note: 'parsed' });
    assert.equal(parsed.length, 2, 'the put and the patch read from the journal are parsed');
  });
});
