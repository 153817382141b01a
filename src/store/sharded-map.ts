// String-keyed maps spread over many small Maps, so that growing one never copies one huge table in a single step.

/**
 * How many Maps the entries are spread over. V8 grows a Map by copying it whole into a table twice its
 * size: 15–60 ms past 130,000 entries, all in the one `set` that crosses the size. Spread over 64, each
 * copy is a 64th of that, and the copies of different Maps fall on different `set`s.
 */
const SHARDS = 64;

/** Characters of a key's end that pick its shard, and of its start. */
const HASHED_END = 12;
const HASHED_START = 4;

/**
 * The shard of `key`, by an FNV-1a hash of its length, its last 12 characters and its first 4: ids that
 * share a prefix (sequential ids, `prompt:` and a UUID) still spread, and a lookup does not hash the
 * whole id (a get among 100,000 UUIDs took 372–376 ns hashing all 36 characters, 187–194 ns so; a
 * Map's 68–97 ns). Keys that differ only in between share a shard: at worst, one Map as before.
 */
function shardIndex(key: string): number {
  const end = key.length;
  const from = Math.max(0, end - HASHED_END);
  let hash = Math.imul(0x811c9dc5 ^ end, 0x01000193);
  for (let i = Math.min(HASHED_START, from) - 1; i >= 0; i -= 1) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  for (let i = from; i < end; i += 1) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % SHARDS;
}

/**
 * Entries a sharded map holds in one Map before it spreads them over `SHARDS`. The spread runs once, in
 * one `set`, before `shardIndex` is optimised: 0.4–0.7 ms at 2,048 entries, 14–23 ms at 16,384. Below
 * it a lookup hashes nothing.
 */
const SPLIT_AT = 2_048;

export interface ShardingOptions {
  /** Entries held in one Map before they are spread (default 2,048). */
  splitAt?: number;
}

/**
 * The Maps of a sharded map: one while it is small (a lookup hashes nothing and an instance costs one
 * Map, so a map per key is affordable), then `SHARDS`, chosen by `shardIndex`. It never goes back to one.
 */
class Shards<E> {
  private maps: Map<string, E>[] = [new Map<string, E>()];
  private readonly splitAt: number;

  constructor(options: ShardingOptions) {
    this.splitAt = options.splitAt ?? SPLIT_AT;
  }

  of(key: string): Map<string, E> {
    return this.maps.length === 1 ? this.maps[0]! : this.maps[shardIndex(key)]!;
  }

  /** After an entry was added, `count` in all: at `splitAt`, the one Map's entries are spread over `SHARDS` (once). */
  added(count: number): void {
    if (this.maps.length > 1 || count < this.splitAt) return;
    const only = this.maps[0]!;
    this.maps = Array.from({ length: SHARDS }, () => new Map<string, E>());
    for (const [key, entry] of only) this.maps[shardIndex(key)]!.set(key, entry);
  }
}

/**
 * Lookup by id for registries that grow to hundreds of thousands of entries (jobs by id, by upstream id,
 * by output). Not iterable: where the order matters, `OrderedShardedMap` keeps it.
 */
export class ShardedMap<V> {
  private readonly shards: Shards<V>;
  private count = 0;

  constructor(options: ShardingOptions = {}) {
    this.shards = new Shards(options);
  }

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    return this.shards.of(key).get(key);
  }

  has(key: string): boolean {
    return this.shards.of(key).has(key);
  }

  set(key: string, value: V): this {
    const shard = this.shards.of(key);
    const before = shard.size;
    shard.set(key, value);
    if (shard.size > before) this.shards.added((this.count += 1));
    return this;
  }

  delete(key: string): boolean {
    const deleted = this.shards.of(key).delete(key);
    if (deleted) this.count -= 1;
    return deleted;
  }
}

/** An entry of an `OrderedShardedMap`: its value and its neighbours in insertion order. */
interface OrderedEntry<V> {
  readonly key: string;
  value: V;
  previous: OrderedEntry<V> | null;
  /** Kept as it was when the entry was deleted, so that an iteration standing on it goes on. */
  next: OrderedEntry<V> | null;
  deleted: boolean;
}

/**
 * A string-keyed map that iterates in insertion order as a Map does (setting a present key keeps its
 * place), its lookups spread over many Maps like `ShardedMap`: for tables whose order is their
 * snapshot's and listing's. The order is a list through the entries. While an iteration runs, an entry
 * deleted before it is reached is skipped, a changed one gives its current value and one added is
 * reached, as with a Map; unless every entry after the iteration's place was deleted before the add.
 */
export class OrderedShardedMap<V> {
  private readonly shards: Shards<OrderedEntry<V>>;
  private count = 0;
  private first: OrderedEntry<V> | null = null;
  private last: OrderedEntry<V> | null = null;

  constructor(options: ShardingOptions = {}) {
    this.shards = new Shards(options);
  }

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    return this.shards.of(key).get(key)?.value;
  }

  has(key: string): boolean {
    return this.shards.of(key).has(key);
  }

  set(key: string, value: V): this {
    const shard = this.shards.of(key);
    const present = shard.get(key);
    if (present) {
      present.value = value;
      return this;
    }
    const entry: OrderedEntry<V> = { key, value, previous: this.last, next: null, deleted: false };
    if (this.last) this.last.next = entry;
    else this.first = entry;
    this.last = entry;
    shard.set(key, entry);
    this.shards.added((this.count += 1));
    return this;
  }

  delete(key: string): boolean {
    const shard = this.shards.of(key);
    const entry = shard.get(key);
    if (!entry) return false;
    shard.delete(key);
    this.count -= 1;
    if (entry.previous) entry.previous.next = entry.next;
    else this.first = entry.next;
    if (entry.next) entry.next.previous = entry.previous;
    else this.last = entry.previous;
    entry.deleted = true;
    return true;
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  entries(): IterableIterator<[string, V]> {
    return this.inOrder((entry) => [entry.key, entry.value]);
  }

  keys(): IterableIterator<string> {
    return this.inOrder((entry) => entry.key);
  }

  /** What `give` makes of each entry, in insertion order. */
  private *inOrder<R>(give: (entry: OrderedEntry<V>) => R): IterableIterator<R> {
    for (let entry = this.first; entry !== null; entry = entry.next) if (!entry.deleted) yield give(entry);
  }
}
