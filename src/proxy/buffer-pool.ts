// A free list of equal-sized buffers outside the JavaScript heap, taken and given back so that big reads and messages allocate nothing each time.

/**
 * Buffers of `bufferBytes`, made when none is free. A buffer given back is handed out again, so it
 * must be given back only once nothing reads or writes its bytes any more (a socket's write of it has
 * called back, say); one never given back is simply collected. Only a buffer this pool made is taken
 * back, and once: a second give-back of the same buffer is ignored.
 */
export class BufferPool {
  private readonly free: ArrayBufferLike[] = [];
  private readonly made = new WeakSet<ArrayBufferLike>();
  private readonly isFree = new WeakSet<ArrayBufferLike>();

  constructor(
    readonly bufferBytes: number,
    /** How many free buffers are kept at most. */
    private readonly kept: number,
  ) {}

  /** A buffer of `bytes` (at most `bufferBytes`, all of it by default): the start of a free one, or of a new one. */
  take(bytes = this.bufferBytes): Buffer {
    const memory = this.free.pop();
    if (memory) {
      this.isFree.delete(memory);
      return Buffer.from(memory, 0, bytes);
    }
    const buffer = Buffer.allocUnsafeSlow(this.bufferBytes);
    this.made.add(buffer.buffer);
    return bytes === this.bufferBytes ? buffer : buffer.subarray(0, bytes);
  }

  /** Gives back a buffer `take` returned (or any view of one), to be handed out again; other buffers are ignored. */
  giveBack(buffer: Buffer): void {
    const memory = buffer.buffer;
    if (!this.made.has(memory) || this.isFree.has(memory) || this.free.length >= this.kept) return;
    this.isFree.add(memory);
    this.free.push(memory);
  }
}
