// A journaled table's records in memory: maps spread over shards, or an indexed snapshot read on demand with the changes since on top.

import { jsonStringContent } from '../../json/json-text.js';
import { OrderedShardedMap, ShardedMap } from '../sharded-map.js';

/** Values besides the id a record can be found by (a key's hashes). */
export type SecondaryKeys<T> = (record: T) => readonly string[];

/** The records of a table, by id and by secondary value. Iteration is in snapshot order, then the order records were added. */
export interface TableRecords<T> {
  readonly size: number;
  get(id: string): T | undefined;
  has(id: string): boolean;
  set(id: string, value: T): void;
  /** Removes the record; false when there was none. */
  delete(id: string): boolean;
  entries(): IterableIterator<[string, T]>;
  /** The ids alone, in the order of `entries`, without reading the records. */
  ids(): IterableIterator<string>;
  /** The record one of whose secondary values is `value`. */
  findBySecondary(value: string): T | undefined;
  /** Each record as its snapshot member text, `"id": value`, the value as `valueText` writes it. */
  members(valueText: (value: T) => string): IterableIterator<string>;
}

/**
 * Records held as objects, with a map from each secondary value to its record's id. Both are spread over
 * many Maps (`src/store/sharded-map.ts`): a table of jobs grows to hundreds of thousands, and one Map
 * that size would be copied whole within the change that grows it past a power of two.
 */
export class MapRecords<T> implements TableRecords<T> {
  private readonly records: OrderedShardedMap<T>;
  private readonly idBySecondary = new ShardedMap<string>();
  private readonly secondaryKeys: SecondaryKeys<T> | undefined;

  /** Takes over `records` (not copied). */
  constructor(secondaryKeys?: SecondaryKeys<T>, records = new OrderedShardedMap<T>()) {
    this.secondaryKeys = secondaryKeys;
    this.records = records;
    if (secondaryKeys) for (const [id, value] of records) for (const secondary of secondaryKeys(value)) this.idBySecondary.set(secondary, id);
  }

  get size(): number {
    return this.records.size;
  }

  get(id: string): T | undefined {
    return this.records.get(id);
  }

  has(id: string): boolean {
    return this.records.has(id);
  }

  set(id: string, value: T): void {
    this.forgetSecondaries(id);
    this.records.set(id, value);
    for (const secondary of this.secondaryKeys?.(value) ?? []) this.idBySecondary.set(secondary, id);
  }

  delete(id: string): boolean {
    this.forgetSecondaries(id);
    return this.records.delete(id);
  }

  entries(): IterableIterator<[string, T]> {
    return this.records.entries();
  }

  ids(): IterableIterator<string> {
    return this.records.keys();
  }

  findBySecondary(value: string): T | undefined {
    const id = this.idBySecondary.get(value);
    return id === undefined ? undefined : this.records.get(id);
  }

  *members(valueText: (value: T) => string): IterableIterator<string> {
    for (const [id, value] of this.records) yield `"${jsonStringContent(id)}": ${valueText(value)}`;
  }

  private forgetSecondaries(id: string): void {
    const current = this.records.get(id);
    if (current === undefined) return;
    for (const secondary of this.secondaryKeys?.(current) ?? []) if (this.idBySecondary.get(secondary) === id) this.idBySecondary.delete(secondary);
  }
}

/** A loaded snapshot that finds records without holding them all as objects. */
export interface SnapshotIndex<T> {
  readonly size: number;
  /** The record, parsed on first use; the same object on every later call. */
  get(id: string): T | undefined;
  has(id: string): boolean;
  /** The ids in snapshot order. */
  ids(): IterableIterator<string>;
  /** The records in snapshot order, as `get` gives them, without keeping in memory those that were not already. */
  entries(): IterableIterator<[string, T]>;
  /** Each id with its member text exactly as the snapshot has it, in snapshot order. */
  members(): IterableIterator<[string, string]>;
  /** Ids of the records that may have `value` among their secondary values (to be checked). */
  idsBySecondary(value: string): string[];
}

/**
 * A snapshot's index with the changes made since in a `MapRecords` on top: a record changed or added
 * since is read from there, a deleted one is hidden, anything else comes from the snapshot on demand.
 */
export class IndexedRecords<T> implements TableRecords<T> {
  private readonly base: SnapshotIndex<T>;
  private readonly changed: MapRecords<T>;
  /** Snapshot records deleted since. */
  private readonly deleted = new Set<string>();
  private readonly secondaryKeys: SecondaryKeys<T> | undefined;
  /** Records added since that the snapshot does not have. */
  private added = 0;

  constructor(base: SnapshotIndex<T>, secondaryKeys?: SecondaryKeys<T>) {
    this.base = base;
    this.secondaryKeys = secondaryKeys;
    this.changed = new MapRecords(secondaryKeys);
  }

  get size(): number {
    return this.base.size - this.deleted.size + this.added;
  }

  get(id: string): T | undefined {
    if (this.changed.has(id)) return this.changed.get(id);
    return this.deleted.has(id) ? undefined : this.base.get(id);
  }

  has(id: string): boolean {
    return this.changed.has(id) || (!this.deleted.has(id) && this.base.has(id));
  }

  set(id: string, value: T): void {
    if (!this.changed.has(id) && !this.base.has(id)) this.added += 1;
    this.deleted.delete(id);
    this.changed.set(id, value);
  }

  delete(id: string): boolean {
    const existed = this.has(id);
    const inBase = this.base.has(id);
    if (this.changed.delete(id) && !inBase) this.added -= 1;
    if (inBase) this.deleted.add(id);
    return existed;
  }

  *entries(): IterableIterator<[string, T]> {
    for (const [id, value] of this.base.entries()) if (!this.deleted.has(id)) yield [id, this.changed.get(id) ?? value];
    for (const [id, value] of this.changed.entries()) if (!this.base.has(id)) yield [id, value];
  }

  *ids(): IterableIterator<string> {
    for (const id of this.base.ids()) if (!this.deleted.has(id)) yield id;
    for (const id of this.changed.ids()) if (!this.base.has(id)) yield id;
  }

  findBySecondary(value: string): T | undefined {
    const changed = this.changed.findBySecondary(value);
    if (changed !== undefined) return changed;
    for (const id of this.base.idsBySecondary(value)) {
      if (this.changed.has(id) || this.deleted.has(id)) continue;
      const record = this.base.get(id);
      if (record !== undefined && this.secondaryKeys?.(record).includes(value)) return record;
    }
    return undefined;
  }

  *members(valueText: (value: T) => string): IterableIterator<string> {
    for (const [id, memberText] of this.base.members()) {
      if (this.deleted.has(id)) continue;
      const value = this.changed.get(id);
      yield value === undefined ? memberText : `"${jsonStringContent(id)}": ${valueText(value)}`;
    }
    for (const [id, value] of this.changed.entries()) if (!this.base.has(id)) yield `"${jsonStringContent(id)}": ${valueText(value)}`;
  }
}
