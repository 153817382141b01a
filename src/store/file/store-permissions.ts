// Creates the store folder private to its owner, and refuses a folder or store file that another local user could change.

import { chmod, lstat, mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** The names of the files the JSON-file stores keep in the folder: snapshots, journals, locks and their temporary files. */
const STORE_FILE = /^\.?(api_keys|api_usage|ownership|sessions|jobs|webhook-deliveries|audit|workflows)\./;

/** The flag (and its environment variable) that turns the refusal of unsafe permissions into a warning. */
export const ALLOW_UNSAFE_FLAG = '--allow-unsafe-store-permissions';

/** The store folder, or a file in it, could be changed by someone else; the gateway does not start on it. */
export class UnsafeStoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafeStoreError';
  }
}

export interface StoreFolderCheck {
  /** Start anyway when the folder or a file is writable by others or owned by another user (not when a file is a link). */
  allowUnsafe?: boolean;
  /** Told each problem that `allowUnsafe` lets pass. */
  warn(message: string): void;
}

/**
 * Creates `directory` (mode 0700, whatever the umask) when it does not exist.
 * @throws the file-system error.
 */
export async function createStoreDirectory(directory: string): Promise<void> {
  const created = await mkdir(directory, { recursive: true, mode: 0o700 });
  if (created !== undefined) await chmod(directory, 0o700);
}

/**
 * Checks the folder and every store file in it: none may be writable by group or others, nor owned by
 * another user than this process's, and no store file may be a symbolic link or anything but a file.
 * @throws UnsafeStoreError naming each path, what is wrong and the command that fixes it.
 */
export async function checkStoreDirectory(directory: string, check: StoreFolderCheck): Promise<void> {
  const folder = await stat(directory);
  if (!folder.isDirectory()) throw new UnsafeStoreError(`${directory} is not a directory; give the store's folder with --user-directory.`);
  const links: string[] = [];
  const unsafe: string[] = [];
  const folderProblem = permissionProblem(directory, folder, 700);
  if (folderProblem) unsafe.push(folderProblem);
  for (const name of (await readdir(directory)).filter((entry) => STORE_FILE.test(entry))) {
    const path = join(directory, name);
    const file = await lstat(path).catch(() => null); // gone meanwhile: a lock or temporary file of another process
    if (!file) continue;
    if (file.isSymbolicLink()) links.push(`${path} is a symbolic link, which the store never follows: replace it with the file itself.`);
    else if (!file.isFile()) links.push(`${path} is not a regular file: move it aside.`);
    else {
      const problem = permissionProblem(path, file, 600);
      if (problem) unsafe.push(problem);
    }
  }
  if (links.length > 0) throw new UnsafeStoreError(`the store folder ${directory} cannot be used: ${links.join(' ')}`);
  if (unsafe.length === 0) return;
  const problems = unsafe.join(' ');
  if (!check.allowUnsafe) {
    throw new UnsafeStoreError(
      `the store folder ${directory} is not safe: ${problems} Anyone who can change these files can add keys of their own. ` +
        `To start anyway, pass ${ALLOW_UNSAFE_FLAG} (not recommended).`,
    );
  }
  check.warn(`the store folder ${directory} is not safe (started anyway, as ${ALLOW_UNSAFE_FLAG} allows): ${problems}`);
}

/** What is wrong with the owner or mode of `path`, with the fix; null when nothing is. */
function permissionProblem(path: string, entry: { mode: number; uid: number }, safeMode: number): string | null {
  // Windows reports neither owners nor POSIX modes (every folder reads as 0777).
  if (process.platform === 'win32') return null;
  const uid = process.getuid?.();
  if (uid !== undefined && entry.uid !== uid) {
    return `${path} is owned by uid ${entry.uid}, not by this process's uid ${uid}: run chown ${uid} ${path}, or run comfy-gate as its owner.`;
  }
  const writers = [entry.mode & 0o020 ? 'group' : '', entry.mode & 0o002 ? 'others' : ''].filter(Boolean);
  if (writers.length === 0) return null;
  return `${path} is writable by ${writers.join(' and ')} (mode ${(entry.mode & 0o777).toString(8).padStart(4, '0')}): run chmod ${safeMode} ${path}.`;
}
