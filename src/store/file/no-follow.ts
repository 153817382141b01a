// Opens store files without following a symbolic link, so a link planted in the store folder is never read or written through.

import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

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

/** The longest line `lineBatchesNoFollow` reads: each read fills a buffer of this size. */
export const MAX_LINE_BYTES = 1 << 20;
const DECODE_BYTES = 1 << 16;

/**
 * The file's lines (without their newlines), a batch at a time: each read of up to `MAX_LINE_BYTES` is
 * decoded a small piece at a time (UTF-8 never has a newline byte inside a character), and each piece's
 * whole lines come as one array, so a large file is never in memory whole and each piece dies young
 * rather than piling up for the old generation's collector. Yields null, and stops, at a line longer
 * than `MAX_LINE_BYTES`. Reading starts at byte `from`, which must be the start of a line.
 * @throws the file-system error; ELOOP for a symbolic link.
 */
export async function* lineBatchesNoFollow(path: string, from = 0): AsyncGenerator<string[] | null> {
  const handle = await openNoFollow(path, 'read');
  try {
    const buffer = Buffer.allocUnsafe(MAX_LINE_BYTES);
    /** Bytes of an unfinished line, moved to the start of the buffer. */
    let kept = 0;
    let position = from;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, kept, MAX_LINE_BYTES - kept, position);
      position += bytesRead;
      const length = kept + bytesRead;
      if (bytesRead === 0) {
        if (length > 0) yield [buffer.toString('utf8', 0, length)];
        return;
      }
      const end = buffer.lastIndexOf(10, length - 1) + 1;
      if (end === 0 && length === MAX_LINE_BYTES) {
        yield null;
        return;
      }
      for (let from = 0; from < end;) {
        const next = from + DECODE_BYTES >= end ? end : buffer.indexOf(10, from + DECODE_BYTES) + 1;
        yield buffer.toString('utf8', from, next - 1).split('\n');
        from = next;
      }
      buffer.copy(buffer, 0, end, length);
      kept = length - end;
    }
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
