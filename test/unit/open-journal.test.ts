// Unit tests of OpenJournal: appends to a journal kept open, the size it keeps in memory, cutting a torn tail, and opening again after close.

import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { appendFile, mkdtemp, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { OpenJournal } from '../../src/store/file/journal.js';

describe('OpenJournal', () => {
  let dir: string;
  let path: string;
  let journal: OpenJournal;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-open-journal-'));
    path = join(dir, 'rows.journal');
    journal = new OpenJournal(path);
  });

  afterEach(async () => {
    await journal.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('appends land in order, and the size and inode it answers are those on disk', async () => {
    const first = await journal.append('{"a":1}\n');
    const second = await journal.append('{"b":"é"}\n');
    const onDisk = await stat(path);
    assert.equal(await readFile(path, 'utf8'), '{"a":1}\n{"b":"é"}\n');
    assert.equal(first.size, 8);
    assert.deepEqual(second, { size: onDisk.size, ino: onDisk.ino });
  });

  test('the journal is held open with O_DSYNC, so an append is on disk when it resolves (no separate fdatasync)', async () => {
    await journal.append('{"a":1}\n');
    const flags = await openFlagsOf(path);
    assert.equal(flags.length, 1, 'one descriptor of the journal is open');
    assert.equal(flags[0]! & constants.O_DSYNC, constants.O_DSYNC);
    assert.equal(flags[0]! & constants.O_APPEND, constants.O_APPEND);
  });

  test('bytes past completeUpTo (a torn append) are cut before the next line', async () => {
    await journal.append('{"a":1}\n');
    await journal.close();
    await appendFile(path, '{"torn');
    const written = await journal.append('{"b":2}\n', 8);
    assert.equal(await readFile(path, 'utf8'), '{"a":1}\n{"b":2}\n');
    assert.equal(written.size, 16);
  });

  test('after close, the next append opens the file now at the path', async () => {
    await journal.append('{"old":1}\n');
    await journal.close();
    const replacement = join(dir, 'replacement');
    await writeFile(replacement, '{"new":1}\n');
    await rename(replacement, path);
    const written = await journal.append('{"new":2}\n');
    assert.equal(await readFile(path, 'utf8'), '{"new":1}\n{"new":2}\n');
    assert.equal(written.ino, (await stat(path)).ino);
  });

  test('an append that cannot open the file (a symbolic link) throws, and the next one opens it again', async () => {
    const target = join(dir, 'elsewhere');
    await writeFile(target, '');
    await symlink(target, path);
    await assert.rejects(journal.append('{"a":1}\n'), { code: 'ELOOP' });
    await rm(path);
    await journal.append('{"a":1}\n');
    assert.equal(await readFile(path, 'utf8'), '{"a":1}\n');
    assert.equal(await readFile(target, 'utf8'), '');
  });
});

/** The open flags of each of this process's descriptors of `path`, as Linux shows them in /proc/self/fdinfo. */
async function openFlagsOf(path: string): Promise<number[]> {
  const flags: number[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target !== path) continue;
    const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8');
    flags.push(Number.parseInt(/^flags:\s+([0-7]+)$/m.exec(info)![1]!, 8));
  }
  return flags;
}
