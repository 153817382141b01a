// Store file operations on a path that is a symbolic link: each refuses (ELOOP) or replaces the link, and the link's target is never touched.

import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { writeFileAtomic } from '../../src/store/file/atomic-write.js';
import { withDirLock } from '../../src/store/file/dir-lock.js';
import { appendDurably, dropPartialTail, lineBatchesOf, readJournal } from '../../src/store/file/journal.js';
import { readTextNoFollow } from '../../src/store/file/no-follow.js';

describe('store files are never opened through a symbolic link', () => {
  let dir: string;
  let target: string;
  let link: string;
  const TARGET_TEXT = '{"op":"put"}\n{"torn';

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-nofollow-'));
    target = join(dir, 'elsewhere');
    link = join(dir, 'api_keys.journal');
    await writeFile(target, TARGET_TEXT);
    await symlink(target, link);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const refusedWithEloop = { code: 'ELOOP' };

  test('an append, a read, a streamed read, a cut and a plain read fail with ELOOP', async () => {
    await assert.rejects(appendDurably(link, '{"op":"delete","id":"x"}\n'), refusedWithEloop);
    await assert.rejects(readJournal(link, 0), refusedWithEloop);
    await assert.rejects(lineBatchesOf(link).next(), refusedWithEloop);
    await assert.rejects(dropPartialTail(link, { entries: [], nextOffset: 0, partialBytes: 5, ino: 0 }), refusedWithEloop);
    await assert.rejects(readTextNoFollow(link), refusedWithEloop);
    assert.equal(await readFile(target, 'utf8'), TARGET_TEXT);
  });

  test('an atomic rewrite replaces the link itself', async () => {
    await writeFileAtomic(link, 'new\n');
    assert.equal((await lstat(link)).isFile(), true);
    assert.equal(await readFile(link, 'utf8'), 'new\n');
    assert.equal(await readFile(target, 'utf8'), TARGET_TEXT);
  });

  test('a lock file planted as a link is not written through', async () => {
    const lock = join(dir, '.api_keys.lock');
    await symlink(target, lock);
    await withDirLock(lock, async () => undefined, 1000).catch(() => undefined);
    assert.equal(await readFile(target, 'utf8'), TARGET_TEXT);
  });
});
