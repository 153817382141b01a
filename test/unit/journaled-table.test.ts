// Unit tests of JournaledTable's rewrites of its snapshot: how large the journal grows first (journalShare), and that every change survives them.

import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { JournaledTable } from '../../src/store/file/journaled-table.js';

type Row = { id: string; round: number; filler: string };

const ROWS = 2000;
/** About 600 bytes per row, so that the snapshot (about 1.2 MB) is well past the smallest journal that is ever compacted (256 KiB). */
const FILLER = 'x'.repeat(560);

describe('JournaledTable rewrites', () => {
  let dir: string;
  const tables: JournaledTable<Row>[] = [];

  function tableIn(journalShare?: number): JournaledTable<Row> {
    const table = new JournaledTable<Row>({
      snapshotPath: join(dir, 'rows.json'),
      journalPath: join(dir, 'rows.journal'),
      lockPath: join(dir, '.rows.lock'),
      writers: 'this-process',
      parse: (value) => value as Row,
      ...(journalShare === undefined ? {} : { journalShare }),
    });
    tables.push(table);
    return table;
  }

  /** Writes every row once more (in batches of 100 changes); resolves the largest journal seen against the snapshot of its time, and the rewrites seen. */
  async function rewriteEveryRow(table: JournaledTable<Row>, round: number): Promise<{ largestShare: number; rewrites: number }> {
    let largestShare = 0;
    const inodes = new Set<number>();
    for (let start = 0; start < ROWS; start += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => {
          const id = `row-${start + i}`;
          return table.change(() => ({ ops: [{ op: 'put', id, value: { id, round, filler: FILLER } }], result: undefined }));
        }),
      );
      const [snapshot, journal] = await Promise.all([stat(join(dir, 'rows.json')).catch(() => null), stat(join(dir, 'rows.journal'))]);
      // The first snapshot is written beside the first round's changes.
      if (!snapshot) continue;
      inodes.add(snapshot.ino);
      largestShare = Math.max(largestShare, journal.size / snapshot.size);
    }
    return { largestShare, rewrites: inodes.size - 1 };
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
      // The changes made while a rewrite runs go on to the journal, so it may pass the share by what a rewrite takes (about
      // 0.2 here); by default it must still never come near the snapshot's size, which a share of 1 must reach.
      assert.ok(largest < expected + 0.7, `the journal was rewritten soon after it passed ${expected} of the snapshot (largest ${largest.toFixed(2)})`);
      assert.ok(rewrites >= 1, 'the snapshot was rewritten');
      await table.close();
      tables.splice(tables.indexOf(table), 1);

      const reopened = tableIn(share);
      await reopened.open();
      assert.equal(reopened.size, ROWS);
      for (let i = 0; i < ROWS; i += 1) assert.equal(reopened.get(`row-${i}`)?.round, 2, `row-${i} has its last change`);
    });
  }
});
