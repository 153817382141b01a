// A lock file that lets several processes (the gateway and the CLI) take turns writing one store folder.

import { randomBytes } from 'node:crypto';
import { link, lstat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { holderText } from './lock-holder.js';
import { openNoFollow } from './no-follow.js';
import { removeLeftoverNames, sameFile, takeOverIfStale, type FileId } from './stale-lock.js';

const RETRY_MS = 5;

/**
 * Takes the lock at `path` by giving the file `own` (the holder's text already in it) a second name, `path`:
 * EEXIST while another holds it. Takes over a stale one on the way.
 * @throws an Error with code `ELOCKED` after `deadline`, or the file-system error.
 */
async function takeTurn(path: string, own: string, deadline: number): Promise<void> {
  for (;;) {
    try {
      await link(own, path);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    await takeOverIfStale(path, `${own}.aside`);
    if (Date.now() > deadline) {
      throw Object.assign(new Error(`${path} is held by another process`), { code: 'ELOCKED' });
    }
    await sleep(RETRY_MS);
  }
}

/** Writes the holder's text to a new file `own`; resolves which file it is. */
async function writeOwn(own: string, text: string): Promise<FileId> {
  const handle = await openNoFollow(own, 'create');
  try {
    try {
      await handle.writeFile(text);
      const { dev, ino } = await handle.stat();
      return { dev, ino };
    } finally {
      await handle.close();
    }
  } catch (error) {
    await unlink(own).catch(() => undefined);
    throw error;
  }
}

/** Lets go of the lock: removes `path` if it is still this holder's file, then the holder's own name for it. */
async function letGo(path: string, own: string, mine: FileId): Promise<void> {
  const found = await lstat(path).catch(() => null);
  if (found !== null && sameFile(found, mine)) await unlink(path).catch(() => undefined);
  await unlink(own).catch(() => undefined);
}

/**
 * Runs `task` while holding the lock file at `path`, waiting up to `timeoutMs` for it.
 * @throws an Error with code `ELOCKED` if the lock stays taken, or whatever `task` throws.
 * @example await withDirLock('user/.comfy-gate.lock', () => appendEntry(...));
 */
export function withDirLock<T>(path: string, task: () => Promise<T>, timeoutMs = 5000): Promise<T> {
  // Tasks of this process queue here, so only one of them at a time contends for the file.
  const previous = queues.get(path) ?? Promise.resolve();
  const run = previous.then(() => lockAndRun(path, task, timeoutMs));
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  queues.set(path, tail);
  void tail.then(() => {
    if (queues.get(path) === tail) queues.delete(path);
  });
  return run;
}

const queues = new Map<string, Promise<void>>();

async function lockAndRun<T>(path: string, task: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  // The holder's second name for the lock file: `<path>.<16 hex digits>`, written in the file (see `holderText`).
  const name = randomBytes(8).toString('hex');
  const own = `${path}.${name}`;
  const mine = await writeOwn(own, await holderText(name));
  try {
    await takeTurn(path, own, deadline);
  } catch (error) {
    await unlink(own).catch(() => undefined);
    throw error;
  }
  try {
    if (!swept.has(path)) {
      swept.add(path);
      // Best effort: a name left behind costs a few bytes, never a turn.
      await removeLeftoverNames(path, mine).catch(() => undefined);
    }
    return await task();
  } finally {
    await letGo(path, own, mine);
  }
}

/** The locks whose leftover names (see `removeLeftoverNames`) this process removed: once each, at its first turn. */
const swept = new Set<string>();
