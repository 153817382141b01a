// Opens store files without following a symbolic link, so a link planted in the store folder is never read or written through.

import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createInterface } from 'node:readline';

const NO_FOLLOW = constants.O_NOFOLLOW ?? 0;
const DSYNC = constants.O_DSYNC as number | undefined;

/** Whether the platform has O_DSYNC (not Windows), so that a write to a file opened for `append-durable` is on disk when it returns. */
export const APPENDS_ARE_DURABLE = DSYNC !== undefined;

const FLAGS = {
  read: constants.O_RDONLY,
  write: constants.O_WRONLY,
  append: constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT,
  /** Appends that are on disk when the write returns (O_DSYNC, where APPENDS_ARE_DURABLE): a write and an fdatasync in one call. */
  'append-durable': constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | (DSYNC ?? 0),
  /** A new file only: fails with EEXIST when the name is taken, even by a link. */
  create: constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
} as const;

/**
 * Opens `path` for `how`; a file it creates gets mode 0600 (never more, whatever the umask).
 * @throws the file-system error; ELOOP when `path` is a symbolic link.
 * @example const handle = await openNoFollow('user/api_keys.journal', 'append');
 */
export function openNoFollow(path: string, how: keyof typeof FLAGS): Promise<FileHandle> {
  return open(path, FLAGS[how] | NO_FOLLOW, 0o600);
}

/** The whole file as UTF-8 text. @throws the file-system error; ELOOP for a symbolic link. */
export async function readTextNoFollow(path: string): Promise<string> {
  const handle = await openNoFollow(path, 'read');
  try {
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/** The file's lines (without their line ends), read a chunk at a time. @throws the file-system error; ELOOP for a symbolic link. */
export async function* linesNoFollow(path: string): AsyncGenerator<string> {
  const handle = await openNoFollow(path, 'read');
  try {
    yield* createInterface({ input: handle.createReadStream({ encoding: 'utf8', autoClose: false }), crlfDelay: Infinity });
  } finally {
    await handle.close();
  }
}

/** Cuts the file to `length` bytes. @throws the file-system error; ELOOP for a symbolic link. */
export async function truncateNoFollow(path: string, length: number): Promise<void> {
  const handle = await openNoFollow(path, 'write');
  try {
    await handle.truncate(length);
  } finally {
    await handle.close();
  }
}
