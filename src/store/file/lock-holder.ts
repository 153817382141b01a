// The text of a lock file (who holds it) and whether that holder is gone: its pid, where and when it started, and its own link.

import { readFile, readlink } from 'node:fs/promises';

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

/** The name a holder keeps its lock file under besides the lock's own (`<lock>.<link>`) until it lets go. */
const LINK_NAME = /^[0-9a-f]{16}$/;

/**
 * What this process writes in a lock file it takes: its pid, where and when it started (`-` when unknown),
 * and `link`, the suffix of the second name it keeps the file under while it holds it. Older versions read
 * the first two fields only.
 */
export async function holderText(link: string): Promise<string> {
  const start = await startOfThisProcess();
  return `${process.pid} ${start === null ? '-' : `${start.boot}/${start.namespace}/${start.ticks}`} ${link}`;
}

/** Whether `suffix` is one a holder keeps its lock file under (`<lock>.<suffix>`, see `holderText`). */
export function isHolderLinkName(suffix: string): boolean {
  return LINK_NAME.test(suffix);
}

/** The second name the holder of a lock file with `text` keeps it under (see `holderText`); undefined for an older version's. */
export function holderLink(text: string): string | undefined {
  const link = text.split(' ')[2]?.trim();
  return link !== undefined && isHolderLinkName(link) ? link : undefined;
}

/**
 * Whether the live process `pid` of this namespace is not the one that wrote the lock file, by the start written
 * beside the pid: written before the machine last booted, or in this namespace by a process that started at
 * another time. A pid written in another namespace (another container's, or the host's) tells nothing here.
 */
async function pidTakenSince(pid: number, written: string | undefined): Promise<boolean> {
  const own = await startOfThisProcess();
  if (written === undefined || written === '-' || own === null) return false;
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
 * Whether the holder named by a lock file's text (not empty) is gone; undefined when the text names no pid.
 * The pid may since be another process's (see `pidTakenSince`), or this process's: a restarted container's
 * gateway gets the pid it had, and this process's tasks on a lock queue (see `withDirLock`; no worker thread
 * takes one), so none of them holds it while another waits.
 */
export async function holderGone(text: string): Promise<boolean | undefined> {
  const [pidText = '', start] = text.split(' ');
  const pid = Number.parseInt(pidText, 10);
  if (Number.isNaN(pid)) return undefined;
  return !(pid > 0 && pid !== process.pid && processAlive(pid) && !(await pidTakenSince(pid, start)));
}
