// Reading store files a batch of lines at a time: every line comes out whole, across decoded pieces and reads, and an over-long line stops the reading.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { lineBatchesOf } from '../../src/store/file/journal.js';
import { lineBatchesNoFollow, MAX_LINE_BYTES } from '../../src/store/file/no-follow.js';
import { StoreCorruptError } from '../../src/store/types.js';

async function linesRead(path: string): Promise<Array<string[] | null>> {
  const batches: Array<string[] | null> = [];
  for await (const batch of lineBatchesNoFollow(path)) batches.push(batch);
  return batches;
}

describe('lineBatchesNoFollow', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-lines-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('gives every line of the file, in order, whatever the lengths (pieces of 64 KiB, reads of 1 MiB, characters of several bytes)', async () => {
    const line = fc.oneof(
      { weight: 4, arbitrary: fc.string({ maxLength: 40, unit: 'grapheme' }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 300_000 }).map((length) => 'é'.repeat(length)) },
    );
    // Lines without a newline inside; the file may or may not end in one.
    const file = fc.record({
      lines: fc.array(
        line.map((text) => text.replaceAll('\n', ' ')),
        { minLength: 1, maxLength: 60 },
      ),
      endsInNewline: fc.boolean(),
    });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(file, async ({ lines, endsInNewline }) => {
        const path = join(dir, `file-${(run += 1)}`);
        await writeFile(path, lines.join('\n') + (endsInNewline ? '\n' : ''));
        const batches = await linesRead(path);
        assert.ok(batches.every((batch) => batch !== null));
        const read = batches.flat() as string[];
        // A final newline ends the last line; none follows it.
        assert.deepEqual(read, endsInNewline || lines.at(-1) !== '' ? lines : lines.slice(0, -1));
      }),
      { numRuns: 25 },
    );
  });

  test('an empty file has no lines', async () => {
    const path = join(dir, 'empty');
    await writeFile(path, '');
    assert.deepEqual(await linesRead(path), []);
  });

  test('a line longer than a read yields null and stops; lineBatchesOf says which file is at fault', async () => {
    const path = join(dir, 'long');
    await writeFile(path, `first\n${'x'.repeat(MAX_LINE_BYTES + 10)}\nlast\n`);
    const batches = await linesRead(path);
    assert.deepEqual(batches, [['first'], null]);
    const reading = (async () => {
      for await (const batch of lineBatchesOf(path)) assert.ok(batch.length > 0);
    })();
    await assert.rejects(reading, (error: unknown) => error instanceof StoreCorruptError && error.message.includes(path) && /longer than/.test(error.message));
  });
});
