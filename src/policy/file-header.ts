// Reading a file's header from its start, a few steps at a time: how much of the start to have next, and what the header gives.

/**
 * What the start of a file tells of what it holds: the reading (a size, a shape); `{ need }` when the header
 * goes on past the bytes given (the file's first `need` bytes are wanted); null for a format not read or a
 * header that is not valid.
 */
export type HeaderRead<T> = T | { need: number } | null;

/** Reads a header from the start of a file (see HeaderRead). */
export type HeaderReader<T> = (head: Buffer) => HeaderRead<T>;

/** Most of a file's start read for its header (a JPEG's frame header may follow large metadata segments). */
export const MAX_HEADER_BYTES = 1024 * 1024;

/**
 * How many bytes of a file's start to have before reading it again with `read`, given its first `head.length`:
 * what the header asks for and at least double what is had (so a file's start is read in few steps), up to
 * MAX_HEADER_BYTES; 0 when `head` gives the reading, or shows that it cannot be read within MAX_HEADER_BYTES.
 */
export function bytesWantedBy<T extends object>(read: HeaderReader<T>, head: Buffer): number {
  const found = read(head);
  if (found === null || !('need' in found) || found.need > MAX_HEADER_BYTES) return 0;
  return Math.min(MAX_HEADER_BYTES, Math.max(found.need, head.length * 2));
}

/** What `read` finds at the start of a file; undefined when it finds nothing (another format, or a header that goes on past `head`). */
export function headerReadBy<T extends object>(read: HeaderReader<T>, head: Buffer): T | undefined {
  const found = read(head);
  return found !== null && !('need' in found) ? found : undefined;
}
