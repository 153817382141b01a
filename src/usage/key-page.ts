// Pages of key ids in key_id order, for paged reports: the next ids after a cursor, found in one pass that lets other work run.

import { setImmediate as nextTurn } from 'node:timers/promises';

export interface KeyPage {
  /** The page's ids, in order. */
  keyIds: string[];
  /** The last id of the page when more ids follow it (to be given as the next page's `after`), else null. */
  nextCursor: string | null;
}

/** Ids read between two turns of the event loop. */
const IDS_PER_TURN = 5000;

/**
 * The first `limit` distinct ids after `after` (from the first when null), in UTF-16 code-unit order,
 * among sources that may repeat an id. Every id is read once and only `limit + 1` are kept, so the
 * memory is that of one page however many keys there are; every few thousand ids the event loop runs.
 */
export async function nextKeyPage(sources: Iterable<string>[], after: string | null, limit: number): Promise<KeyPage> {
  const smallest = new SmallestIds(limit + 1);
  let read = 0;
  for (const source of sources) {
    for (const id of source) {
      if (after === null || id > after) smallest.offer(id);
      read += 1;
      if (read % IDS_PER_TURN === 0) await nextTurn();
    }
  }
  const ids = smallest.sorted();
  if (ids.length <= limit) return { keyIds: ids, nextCursor: null };
  const keyIds = ids.slice(0, limit);
  return { keyIds, nextCursor: keyIds[keyIds.length - 1]! };
}

/** The `capacity` smallest distinct strings offered: a max-heap, its largest at the root, and the set of what it holds. */
class SmallestIds {
  private readonly heap: string[] = [];
  private readonly held = new Set<string>();
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  offer(id: string): void {
    if (this.held.has(id)) return;
    if (this.heap.length < this.capacity) {
      this.heap.push(id);
      this.held.add(id);
      this.siftUp(this.heap.length - 1);
    } else if (id < this.heap[0]!) {
      this.held.delete(this.heap[0]!);
      this.heap[0] = id;
      this.held.add(id);
      this.siftDown(0);
    }
  }

  sorted(): string[] {
    return [...this.heap].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (heap[parent]! >= heap[index]!) return;
      [heap[parent], heap[index]] = [heap[index]!, heap[parent]!];
      index = parent;
    }
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    for (;;) {
      const left = 2 * index + 1;
      const right = left + 1;
      let largest = index;
      if (left < heap.length && heap[left]! > heap[largest]!) largest = left;
      if (right < heap.length && heap[right]! > heap[largest]!) largest = right;
      if (largest === index) return;
      [heap[largest], heap[index]] = [heap[index]!, heap[largest]!];
      index = largest;
    }
  }
}
