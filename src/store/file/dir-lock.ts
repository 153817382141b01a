// A lock file that lets several processes (the gateway and the CLI) take turns writing one store folder.

import { readFile, readlink, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { openNoFollow, readTextNoFollow } from './no-follow.js';

const RETRY_MS = 5;

/**
 * Where a pid is read and when its process started, on Linux: the machine's boot (`/proc/sys/kernel/random/boot_id`),
 * the pid namespace (a container has its own), and the start in clock ticks since boot.
 */
interface ProcessStart {
  boot: string;
  namespace: string;
  ticks: string;
}

/** This process's start as a lock file holds it after its pid (`boot/namespace/ticks`); null where /proc does not tell. Read once. */
let ownStart: Promise<ProcessStart | null> | null = null;
function startOfThisProcess(): Promise<ProcessStart | null> {
  ownStart ??= (async () => {
    try {
      const [boot, namespace, ticks] = await Promise.all([readFile('/proc/sys/kernel/random/boot_id', 'utf8'), readlink('/proc/self/ns/pid'), ticksOf('self')]);
      return ticks === null ? null : { boot: boot.trim(), namespace, ticks };
    } catch {
      return null;
    }
  })();
  return ownStart;
}

/** When process `pid` of this pid namespace started, in clock ticks since boot; null when /proc does not tell. */
async function ticksOf(pid: number | 'self'): Promise<string | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Field 22 of the line; its fields are counted from the command name, which is in parentheses and may hold spaces.
    const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return ticks !== undefined && /^\d+$/.test(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/** What this process writes in a lock file it takes: its pid, then where and when it started, when known. */
async function lockText(): Promise<string> {
  const start = await startOfThisProcess();
  return start === null ? String(process.pid) : `${process.pid} ${start.boot}/${start.namespace}/${start.ticks}`;
}

/**
 * Whether the live process `pid` of this namespace is not the one that wrote the lock file, by the start written
 * beside the pid: written before the machine last booted, or in this namespace by a process that started at
 * another time. A pid written in another namespace (another container's, or the host's) tells nothing here.
 */
async function pidTakenSince(pid: number, written: string | undefined): Promise<boolean> {
  const own = await startOfThisProcess();
  if (written === undefined || own === null) return false;
  const [boot, namespace, ticks] = written.trim().split('/');
  if (boot !== own.boot) return true;
  if (namespace !== own.namespace) return false;
  const actual = await ticksOf(pid);
  return actual !== null && actual !== ticks;
}

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
 * Removes the lock file if the process that holds it has died (e.g. killed mid-write, or by a power cut). The
 * pid it names may since be another process's (see `pidTakenSince`), or this process's: a restarted container's
 * gateway gets the pid it had, and this process's tasks on a lock queue (see `withDirLock`; no worker thread
 * takes one), so none of them holds it while another waits.
 */
async function removeIfStale(path: string): Promise<void> {
  const [pidText = '', start] = (await readTextNoFollow(path).catch(() => '')).split(' ');
  const holder = Number.parseInt(pidText, 10);
  if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder) && !(await pidTakenSince(holder, start))) return;
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
  const holder = await lockText();
  for (;;) {
    try {
      const handle = await openNoFollow(path, 'create');
      try {
        await handle.writeFile(holder);
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
