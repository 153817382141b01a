// Append-only JSON-lines journals: durable appends, and reading whole lines from an offset.

import { StoreCorruptError } from '../types.js';
import { syncDirectory } from './atomic-write.js';
import { APPENDS_ARE_DURABLE, lineBatchesNoFollow, MAX_LINE_BYTES, openNoFollow, truncateNoFollow } from './no-follow.js';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/** What a read of a journal found past an offset. */
export interface JournalChunk {
  /** Parsed complete lines, in order. */
  entries: unknown[];
  /** Offset just past the last complete line: where the next read starts. */
  nextOffset: number;
  /** Bytes after the last newline: a write in progress, or one torn by a crash. */
  partialBytes: number;
  /** The file's inode, to notice the journal being replaced. */
  ino: number;
}

/**
 * Reads the complete lines of `path` from byte `fromOffset`; resolves null if the file does not exist.
 * @throws StoreCorruptError if a complete line is not JSON.
 */
export async function readJournal(path: string, fromOffset: number): Promise<JournalChunk | null> {
  let handle;
  try {
    handle = await openNoFollow(path, 'read');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const { size, ino } = await handle.stat();
    const length = Math.max(0, size - fromOffset);
    const buffer = Buffer.alloc(length);
    let read = 0;
    while (read < length) {
      const { bytesRead } = await handle.read(buffer, read, length - read, fromOffset + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    const lastNewline = buffer.lastIndexOf(10, read - 1);
    const complete = lastNewline < 0 ? 0 : lastNewline + 1;
    const entries: unknown[] = [];
    let lineNumber = 0;
    for (const line of buffer.toString('utf8', 0, complete).split('\n')) {
      lineNumber += 1;
      if (line.length === 0) continue;
      try {
        entries.push(JSON.parse(line));
      } catch {
        throw new StoreCorruptError(path, `line ${lineNumber} after byte ${fromOffset} is not JSON`);
      }
    }
    return { entries, nextOffset: fromOffset + complete, partialBytes: read - complete, ino };
  } finally {
    await handle.close();
  }
}

/** Cuts a torn last line (left by a crash mid-append) so the next append starts on a fresh line. */
export async function dropPartialTail(path: string, chunk: JournalChunk): Promise<void> {
  if (chunk.partialBytes > 0) await truncateNoFollow(path, chunk.nextOffset);
}

/**
 * Appends `text` (whole lines, each ending in a newline) and waits until it is on disk. With
 * `completeUpTo` (where the file's last complete line ends), bytes past it, which only a failed append
 * can have left, are cut first, so that the text starts on a line of its own.
 * @throws the file-system error; a failed append may leave a partial line, which readers skip.
 */
export async function appendDurably(path: string, text: string, completeUpTo?: number): Promise<void> {
  const journal = new OpenJournal(path);
  try {
    await journal.append(text, completeUpTo);
  } finally {
    await journal.close();
  }
}

/**
 * Durable appends to one journal kept open between them, for a journal only this process writes:
 * each append is one O_DSYNC write (a write and an fdatasync where the platform has no O_DSYNC), where `appendDurably` (one append, then close) also opens,
 * checks the size and closes (three more calls through the thread pool). The size is kept in memory
 * from the first open.
 * Closed after a failed append (the next one opens again and cuts what it left) and whenever the file
 * at `path` may have been replaced.
 */
export class OpenJournal {
  private handle: FileHandle | null = null;
  private size = 0;
  private ino = 0;

  constructor(private readonly path: string) {}

  /**
   * Appends `text` as `appendDurably` does (whole lines; bytes past `completeUpTo` cut first) and
   * resolves the file's size and inode after it.
   * @throws the file-system error; the journal is then closed.
   */
  async append(text: string, completeUpTo?: number): Promise<{ size: number; ino: number }> {
    try {
      if (!this.handle) {
        this.handle = await openNoFollow(this.path, 'append-durable');
        ({ size: this.size, ino: this.ino } = await this.handle.stat());
      }
      if (completeUpTo !== undefined && this.size > completeUpTo) {
        await this.handle.truncate(completeUpTo);
        this.size = completeUpTo;
      }
      const bytes = Buffer.from(text);
      // writeFile, unlike write, never stops short: on a full disk it writes all or throws ENOSPC. Opened
      // with O_DSYNC, each of its writes returns once on disk (with the size that reaches it, and a truncate
      // before it): one call through the thread pool instead of a write and an fdatasync.
      await this.handle.writeFile(bytes);
      if (!APPENDS_ARE_DURABLE) await this.handle.datasync();
      if (this.size === 0) await syncDirectory(dirname(this.path));
      this.size += bytes.length;
      return { size: this.size, ino: this.ino };
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /** Closes the file; the next append opens it again (and finds its size on disk). */
  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => undefined);
  }
}

/**
 * The file's lines, a batch at a time (see lineBatchesNoFollow); empty lines kept, so that line numbers
 * count as in the file. For a journal or usage file, whose lines are far shorter than a read. Reading
 * starts at byte `from`, the start of a line.
 * @throws StoreCorruptError for a line longer than `MAX_LINE_BYTES`.
 */
export async function* lineBatchesOf(path: string, from = 0): AsyncGenerator<string[]> {
  for await (const lines of lineBatchesNoFollow(path, from)) {
    if (lines === null) throw new StoreCorruptError(path, `a line is longer than ${MAX_LINE_BYTES} bytes`);
    yield lines;
  }
}

/** A journal line's entry. @throws StoreCorruptError when the line (number `lineNumber`) is not JSON. */
export function parseJournalLine(path: string, line: string, lineNumber: number): unknown {
  try {
    return JSON.parse(line);
  } catch {
    throw new StoreCorruptError(path, `line ${lineNumber} is not JSON`);
  }
}
