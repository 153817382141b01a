// A list kept in blocks of bounded size, so that growing, inserting or removing never copies the whole list.

/** Items per block; a block that grows past twice this is split in two. */
const DEFAULT_BLOCK_SIZE = 2048;

/**
 * An ordered list of items in a list of small arrays. A plain array copies every item into a larger
 * store each time it outgrows its capacity, and V8 does that at some 30 ns an item (with its write
 * barrier): over 8 ms at 250,000 items, within the one push. Here a push adds at most a block, an
 * insertion or a removal moves the items of one block, and finding an index walks the blocks from the
 * nearer end (a list of a million items has a few hundred).
 */
export class BlockList<T> {
  private readonly blocks: T[][] = [];
  private size = 0;

  constructor(private readonly blockSize = DEFAULT_BLOCK_SIZE) {}

  get length(): number {
    return this.size;
  }

  /** The item at `index` (0: the first), or undefined past either end. */
  at(index: number): T | undefined {
    if (index < 0 || index >= this.size) return undefined;
    const [block, offset] = this.locate(index);
    return this.blocks[block]![offset];
  }

  push(item: T): void {
    const last = this.blocks[this.blocks.length - 1];
    if (last && last.length < this.blockSize) last.push(item);
    else this.blocks.push([item]);
    this.size += 1;
  }

  /** Puts `item` at `index` (0 to `length`), moving the items after it within their block. */
  insertAt(index: number, item: T): void {
    if (index >= this.size) return this.push(item);
    const [block, offset] = this.locate(index);
    const items = this.blocks[block]!;
    items.splice(offset, 0, item);
    if (items.length > 2 * this.blockSize) this.blocks.splice(block + 1, 0, items.splice(this.blockSize));
    this.size += 1;
  }

  /** The first index whose item `isBefore` is false for, where the items for which it is true all come first. */
  firstIndexNot(isBefore: (item: T) => boolean): number {
    let index = 0;
    for (const items of this.blocks) {
      if (!isBefore(items[items.length - 1]!)) {
        let low = 0;
        let high = items.length;
        while (low < high) {
          const middle = (low + high) >>> 1;
          if (isBefore(items[middle]!)) low = middle + 1;
          else high = middle;
        }
        return index + low;
      }
      index += items.length;
    }
    return index;
  }

  /** Removes the first `count` items from `index` on that `isGone` picks, in one pass over the blocks they are in. */
  removeFrom(index: number, isGone: (item: T) => boolean, count: number): void {
    if (count <= 0 || index >= this.size) return;
    let [block, offset] = this.locate(index);
    let left = count;
    while (left > 0 && block < this.blocks.length) {
      const items = this.blocks[block]!;
      let write = offset;
      for (let read = offset; read < items.length; read += 1) {
        const item = items[read]!;
        if (left > 0 && isGone(item)) left -= 1;
        else items[write++] = item;
      }
      this.size -= items.length - write;
      items.length = write;
      const next = this.blocks[block + 1];
      if (items.length === 0) {
        this.blocks.splice(block, 1);
        offset = 0;
      } else if (next && items.length + next.length <= this.blockSize) {
        // Blocks that have lost most of their items are joined, so that the list stays a few blocks long;
        // the scan goes on with the joined items.
        items.push(...next);
        this.blocks.splice(block + 1, 1);
        offset = write;
      } else {
        block += 1;
        offset = 0;
      }
    }
  }

  /** Every item through `map`, in order, as one array. */
  map<R>(map: (item: T) => R): R[] {
    // Made at its full length at once: grown a push at a time, it would be copied at every growth.
    const mapped = new Array<R>(this.size);
    let index = 0;
    for (const items of this.blocks) for (const item of items) mapped[index++] = map(item);
    return mapped;
  }

  /** Up to `count` items from `index` on, in order. */
  slice(index: number, count: number): T[] {
    const sliced: T[] = [];
    if (index < 0 || index >= this.size) return sliced;
    let [block, offset] = this.locate(index);
    for (; block < this.blocks.length && sliced.length < count; block += 1, offset = 0) {
      const items = this.blocks[block]!;
      for (let i = offset; i < items.length && sliced.length < count; i += 1) sliced.push(items[i]!);
    }
    return sliced;
  }

  /** The block and the offset in it of `index` (within the list), walking from the nearer end. */
  private locate(index: number): [number, number] {
    if (index < this.size / 2) {
      let block = 0;
      while (index >= this.blocks[block]!.length) index -= this.blocks[block++]!.length;
      return [block, index];
    }
    let block = this.blocks.length - 1;
    let fromEnd = this.size - 1 - index;
    while (fromEnd >= this.blocks[block]!.length) fromEnd -= this.blocks[block--]!.length;
    return [block, this.blocks[block]!.length - 1 - fromEnd];
  }
}
