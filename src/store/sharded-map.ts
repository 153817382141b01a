// A string-keyed map spread over many small Maps, so that growing it never copies one huge table in a single step.

/**
 * How many Maps the entries are spread over. V8 grows a Map by copying it whole into a table twice its
 * size: 15–60 ms past 130,000 entries, all in the one `set` that crosses the size. Spread over 64, each
 * copy is a 64th of that, and the copies of different Maps fall on different `set`s.
 */
const SHARDS = 64;

/**
 * Lookup by id for registries that grow to hundreds of thousands of entries (jobs by id, by upstream id,
 * by output). Not iterable: where the order matters, a plain Map (insertion order) is the right tool.
 */
export class ShardedMap<V> {
  private readonly shards: Map<string, V>[] = Array.from({ length: SHARDS }, () => new Map<string, V>());
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    return this.shardOf(key).get(key);
  }

  has(key: string): boolean {
    return this.shardOf(key).has(key);
  }

  set(key: string, value: V): this {
    const shard = this.shardOf(key);
    const before = shard.size;
    shard.set(key, value);
    this.count += shard.size - before;
    return this;
  }

  delete(key: string): boolean {
    const deleted = this.shardOf(key).delete(key);
    if (deleted) this.count -= 1;
    return deleted;
  }

  /** The shard of `key`, by its FNV-1a hash: keys that share a prefix (sequential ids) still spread. */
  private shardOf(key: string): Map<string, V> {
    let hash = 0x811c9dc5;
    for (let i = 0; i < key.length; i += 1) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
    return this.shards[(hash >>> 0) % SHARDS]!;
  }
}
