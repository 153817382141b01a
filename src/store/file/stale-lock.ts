// Takes a lock file away from a holder that is gone, without taking another process's lock made in its place.

import { link, lstat, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { holderGone, holderLink, isHolderLinkName } from './lock-holder.js';
import { openNoFollow } from './no-follow.js';

/** How long an empty lock file is given before it is judged: an older version created the file, then wrote its pid. */
const EMPTY_GRACE_MS = 50;

/** Which file a lock file is (device and inode). */
export interface FileId {
  dev: number;
  ino: number;
}

/** A lock file as read once: which file it is and what it says. */
export interface LockFile extends FileId {
  text: string;
}

export function sameFile(a: FileId, b: FileId): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** The plain file at `path` as read now; null when there is none, it is a symbolic link, or it cannot be read. */
export async function readLock(path: string): Promise<LockFile | null> {
  const handle = await openNoFollow(path, 'read').catch(() => null);
  if (handle === null) return null;
  try {
    const stats = await handle.stat();
    return stats.isFile() ? { dev: stats.dev, ino: stats.ino, text: await handle.readFile('utf8') } : null;
  } catch {
    return null;
  } finally {
    await handle.close();
  }
}

/**
 * The lock file at `path` if its holder is gone, else null: its holder names no live process (see `holderGone`),
 * or no longer keeps it under its second name (it let go while the file was aside, see `takeOver`). An empty
 * file (an older version's being written, or left by a crash before its pid was) is judged after a grace
 * period; this version never makes one empty, as it creates the lock file whole.
 */
async function staleLock(path: string): Promise<LockFile | null> {
  const found = await readLock(path);
  if (found === null) return null;
  if (found.text === '') {
    await sleep(EMPTY_GRACE_MS);
    const again = await readLock(path);
    return again !== null && again.text === '' && sameFile(again, found) ? again : null;
  }
  const second = holderLink(found.text);
  if (second !== undefined) {
    const kept = await lstat(`${path}.${second}`).catch(() => null);
    if (kept === null || !sameFile(kept, found)) return found;
  }
  return (await holderGone(found.text)) === true ? found : null;
}

/**
 * Removes the stale lock file `judged` from `path`, but not another process's in its place: two processes may
 * judge one file stale, and the first to remove it may hold the lock by the time the second acts. So the file
 * at `path` is moved to `aside` (a rename: the whole file, atomically) and looked at there; the file judged
 * is removed with its holder's second name, any other put back. While a live lock is aside, its holder may let
 * go and find nothing to remove; the file put back then lacks its second name and is judged stale.
 * The window left: a third process that takes the lock while a live one is aside (between one rename and one
 * link). Putting back then fails with EEXIST and the file aside is dropped: that process and the holder of the
 * file aside both hold the lock. It takes three processes at a lock whose holder died, the second replacing it
 * just as the first moves it, and the third taking it in the moment before the first puts it back (or the first
 * killed in that moment, which loses the lock aside).
 */
export async function takeOver(path: string, judged: LockFile, aside: string): Promise<void> {
  try {
    await rename(path, aside);
  } catch {
    return;
  }
  try {
    const moved = await readLock(aside);
    if (moved !== null && moved.text === judged.text && sameFile(moved, judged)) {
      const second = holderLink(judged.text);
      if (second !== undefined) await unlink(`${path}.${second}`).catch(() => undefined);
    } else {
      await link(aside, path).catch(() => undefined);
    }
  } finally {
    await unlink(aside).catch(() => undefined);
  }
}

/** Takes the lock file at `path` away if its holder is gone (see `staleLock`), using the name `aside` on the way. */
export async function takeOverIfStale(path: string, aside: string): Promise<void> {
  const stale = await staleLock(path);
  if (stale === null) return;
  // Still the file judged: judging read /proc, and another taker may have replaced the file meanwhile.
  const now = await lstat(path).catch(() => null);
  if (now !== null && sameFile(now, stale)) await takeOver(path, stale, aside);
}

/**
 * Removes the second names (`<lock>.<16 hex>`, see `holderText`) that holders gone left beside the lock at `path`: a
 * process killed while it waited for the lock, or before it let go. Called by the lock's holder, whose own file
 * (`held`, the lock file itself) is kept; a file whose holder lives (a process waiting its turn), not yet
 * written (empty), or younger than LEFTOVER_AGE_MS is kept too.
 */
export async function removeLeftoverNames(path: string, held: FileId): Promise<void> {
  const prefix = `${basename(path)}.`;
  const names = await readdir(dirname(path)).catch(() => []);
  for (const name of names) {
    if (!name.startsWith(prefix) || !isHolderLinkName(name.slice(prefix.length))) continue;
    const leftover = join(dirname(path), name);
    const found = await readLock(leftover);
    if (found === null || found.text === '' || sameFile(found, held) || (await holderGone(found.text)) !== true) continue;
    // Still the file judged: its holder may have let go (removing it) and another taken that name meanwhile.
    const now = await lstat(leftover).catch(() => null);
    if (now !== null && sameFile(now, found) && Date.now() - now.mtimeMs > LEFTOVER_AGE_MS) await unlink(leftover).catch(() => undefined);
  }
}

/**
 * How old a second name must be to be removed as a leftover: older than any wait for the lock (5 s at most), so that
 * a waiting process whose pid says nothing here (one in another pid namespace, see `holderGone`) keeps its own.
 */
const LEFTOVER_AGE_MS = 60_000;
