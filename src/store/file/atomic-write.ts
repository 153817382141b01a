// Replaces a file atomically and durably: write a temporary file, fsync it, rename it over, fsync the folder.

import { link, open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openNoFollow } from './no-follow.js';

/** The text to write, whole or as chunks (text or bytes) produced one at a time (so a large file never sits whole in memory). */
export type FileContent = string | AsyncIterable<string | Buffer> | Iterable<string | Buffer>;

/**
 * Writes `content` to `path` so that a reader (or a crash) sees either the old file or the new one,
 * never a mix. With `exclusive`, fails with `EEXIST` instead of replacing an existing file.
 * @throws the file-system error (ENOSPC, EACCES, EEXIST …); the old file is then untouched.
 * @example await writeFileAtomic('user/api_keys.json', JSON.stringify(keys));
 */
export async function writeFileAtomic(path: string, content: FileContent, options: { exclusive?: boolean } = {}): Promise<void> {
  const temp = await writeTemporary(path, content);
  try {
    if (options.exclusive) {
      await link(temp, path);
      await unlink(temp);
      await syncDirectory(dirname(path));
    } else {
      await replaceWith(temp, path);
    }
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

/**
 * The first step of `writeFileAtomic`, for a caller that must choose the moment of the replacement:
 * writes `content` durably to a temporary file beside `path` and resolves its name; `replaceWith`
 * puts it in place. A crash leaves only a temporary file, removed by `removeLeftoverTemporaries`.
 * @throws the file-system error; the temporary file is then removed.
 */
export async function writeTemporary(path: string, content: FileContent): Promise<string> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await openNoFollow(temp, 'create');
  try {
    if (typeof content === 'string') {
      await handle.writeFile(content);
    } else {
      // writeFile, unlike write, never stops short: on a full disk it writes all or throws ENOSPC.
      for await (const chunk of content) await handle.writeFile(chunk);
    }
    await handle.sync();
    await handle.close();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  return temp;
}

/** Replaces `path` with a file `writeTemporary` wrote for it, durably. */
export async function replaceWith(temp: string, path: string): Promise<void> {
  await rename(temp, path);
  await syncDirectory(dirname(path));
}

/**
 * Deletes the temporary files that `writeFileAtomic` left for `path` when a crash stopped it before
 * the rename. Call only while no other writer of `path` can be mid-write (at start, under its lock).
 */
export async function removeLeftoverTemporaries(path: string): Promise<void> {
  const prefix = `.${basename(path)}.`;
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  await Promise.all(
    names.filter((name) => name.startsWith(prefix) && name.endsWith('.tmp')).map((name) => unlink(join(dirname(path), name)).catch(() => undefined)),
  );
}

/** Makes a rename, creation or deletion inside `dir` durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
