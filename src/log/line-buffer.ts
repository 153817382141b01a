// Lines kept as UTF-8 bytes until they are written: one growing buffer outside the JavaScript heap, so waiting lines neither outlive the young generation nor get joined into one large string.

/** Bytes a buffer starts with, and at least has again after `take`. */
const INITIAL_BYTES = 64 * 1024;

/** Lines waiting for a write, each with its newline, in one buffer that `take` hands over whole. */
export class LineBuffer {
  private bytes = Buffer.allocUnsafe(INITIAL_BYTES);
  private length = 0;

  /** Bytes waiting. */
  get size(): number {
    return this.length;
  }

  /** Adds `line` and a newline. */
  add(line: string): void {
    this.addText(line, 1);
    this.bytes[this.length++] = 10;
  }

  /** Adds `text` as it is (lines that end with their own newlines), with room for `more` bytes after it. */
  addText(text: string, more = 0): void {
    // A UTF-16 code unit is at most 3 bytes of UTF-8 (a surrogate pair, two units, is 4).
    this.reserve(text.length * 3 + more);
    this.length += this.bytes.write(text, this.length);
  }

  /** The lines added so far; the buffer starts empty again, as large as it was. */
  take(): Buffer {
    const taken = this.bytes.subarray(0, this.length);
    this.bytes = Buffer.allocUnsafe(Math.max(INITIAL_BYTES, this.length));
    this.length = 0;
    return taken;
  }

  /** A copy of the lines added so far; the buffer starts empty again and keeps its bytes, for lines that wait only briefly. */
  takeCopy(): Buffer {
    const copy = Buffer.from(this.bytes.subarray(0, this.length));
    this.length = 0;
    return copy;
  }

  /** Puts `lines` (taken before, and not written) back, before the lines added since. */
  putBack(lines: Buffer): void {
    const since = this.bytes.subarray(0, this.length);
    this.bytes = Buffer.allocUnsafe(Math.max(INITIAL_BYTES, 2 * (lines.length + since.length)));
    lines.copy(this.bytes, 0);
    since.copy(this.bytes, lines.length);
    this.length = lines.length + since.length;
  }

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.bytes.length) return;
    const larger = Buffer.allocUnsafe(Math.max(this.length + bytes, 2 * this.bytes.length));
    this.bytes.copy(larger, 0, 0, this.length);
    this.bytes = larger;
  }
}
