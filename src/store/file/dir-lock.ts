// A lock file that lets several processes (the gateway and the CLI) take turns writing one store folder.

import { unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { openNoFollow, readTextNoFollow } from './no-follow.js';

const RETRY_MS = 5;

/** Whether a process with this pid is alive on this machine. */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the lock file if the process that holds it has died (e.g. killed mid-write). A file naming this
 * process is stale too: this process's tasks on a lock queue (see `withDirLock`; no worker thread takes one), so
 * none of them holds it while another waits; it was left by an earlier process given the same pid (a restarted container's).
 */
async function removeIfStale(path: string): Promise<void> {
  const holder = Number.parseInt(await readTextNoFollow(path).catch(() => ''), 10);
  if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) return;
  if (Number.isNaN(holder)) {
    // Empty: the holder may be between creating the file and writing its pid; give it a moment.
    await sleep(50);
    const again = await readTextNoFollow(path).catch(() => null);
    if (again === null || again.length > 0) return;
  }
  await unlink(path).catch(() => undefined);
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
  for (;;) {
    try {
      const handle = await openNoFollow(path, 'create');
      try {
        await handle.writeFile(String(process.pid));
      } finally {
        await handle.close();
      }
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      await removeIfStale(path);
      if (Date.now() > deadline) {
        throw Object.assign(new Error(`${path} is held by another process`), { code: 'ELOCKED' });
      }
      await sleep(RETRY_MS);
    }
  }
  try {
    return await task();
  } finally {
    await unlink(path).catch(() => undefined);
  }
}
