// The JSON-file key store: `api_keys.json` in the reference's format, plus a journal of changes since it was written.

import { join } from 'node:path';
import { parseStoredKey } from '../key-record.js';
import type { KeyPatch, KeyRecord, KeyStore } from '../types.js';
import { JournaledTable, type TableOp } from './journaled-table.js';
import { indexKeySnapshot, keyHashesOf, type KeyIndexOptions } from './key-index.js';

export interface FileKeyStoreOptions {
  /** The user directory holding `api_keys.json`. */
  directory: string;
  /** How often to look for changes written by another process (the CLI). */
  pollIntervalMs?: number;
  /** How often batched `last_used` times are written. */
  touchFlushMs?: number;
  /** Told how long each durable write took, in seconds. */
  onWrite?(seconds: number): void;
  /** How a large `api_keys.json` is indexed (see `indexKeySnapshot`). */
  index?: KeyIndexOptions;
}

/**
 * Keys in `api_keys.json` (one object keyed by key_id), found by id or by hash without touching the
 * disk: a file of a few thousand keys is read whole into memory; a large one becomes a compact index
 * over its bytes (built by parallel threads, which also check every key), each key parsed when first
 * used. Changes go through a journaled table: durable before they are acknowledged, and shared with
 * other processes (the CLI) on the same directory, which this store polls. `last_used` is batched and
 * written every `touchFlushMs`, never on the request path.
 */
export class FileKeyStore implements KeyStore {
  readonly keysPath: string;
  private readonly table: JournaledTable<KeyRecord>;
  private readonly touchFlushMs: number;
  private pendingTouches = new Map<string, number>();
  private touchTimer: NodeJS.Timeout | null = null;
  private readonly changeListeners = new Set<(keyId: string, key: KeyRecord | undefined) => void>();

  constructor(options: FileKeyStoreOptions) {
    this.keysPath = join(options.directory, 'api_keys.json');
    this.touchFlushMs = options.touchFlushMs ?? 2000;
    this.table = new JournaledTable({
      snapshotPath: this.keysPath,
      journalPath: join(options.directory, 'api_keys.journal'),
      lockPath: join(options.directory, '.api_keys.lock'),
      pollIntervalMs: options.pollIntervalMs ?? 500,
      ...(options.onWrite ? { onWrite: options.onWrite } : {}),
      parse: parseStoredKey,
      secondaryKeys: keyHashesOf,
      indexSnapshot: (path) => indexKeySnapshot(path, options.index),
      onChange: (id, before, after) => {
        if (after) {
          const touched = this.pendingTouches.get(id);
          if (touched !== undefined && (after.last_used ?? 0) < touched) after.last_used = touched;
          if (before && (before.last_used ?? 0) > (after.last_used ?? 0)) after.last_used = before.last_used;
        }
        for (const listener of this.changeListeners) listener(id, after);
      },
    });
  }

  async open(): Promise<void> {
    await this.table.open();
    this.touchTimer = setInterval(() => void this.flushTouches().catch(() => undefined), this.touchFlushMs).unref();
  }

  onKeyChange(listener: (keyId: string, key: KeyRecord | undefined) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  findByHash(keyHash: string): KeyRecord | undefined {
    return this.table.findBySecondary(keyHash);
  }

  get(keyId: string): KeyRecord | undefined {
    return this.table.get(keyId);
  }

  list(): KeyRecord[] {
    return [...this.table.values()];
  }

  ids(): IterableIterator<string> {
    return this.table.ids();
  }

  size(): number {
    return this.table.size;
  }

  isPristine(): boolean {
    return this.table.isPristine();
  }

  create(record: KeyRecord, options: { onlyIfPristine?: boolean } = {}): Promise<boolean> {
    return this.change(() => {
      if (options.onlyIfPristine && !this.table.isPristine()) return { ops: [], result: false };
      return { ops: [{ op: 'put', id: record.key_id, value: record }], result: true };
    });
  }

  update(keyId: string, patch: KeyPatch): Promise<KeyRecord | undefined> {
    return this.change(() => {
      const current = this.table.get(keyId);
      if (!current) return { ops: [], result: undefined };
      const updated: KeyRecord = { ...current, ...patch };
      return { ops: [{ op: 'put', id: keyId, value: updated }], result: updated };
    });
  }

  delete(keyId: string): Promise<boolean> {
    return this.change(() => {
      if (!this.table.get(keyId)) return { ops: [], result: false };
      return { ops: [{ op: 'delete', id: keyId }], result: true };
    });
  }

  touch(keyId: string, at: number): void {
    const record = this.table.get(keyId);
    if (!record) return;
    record.last_used = at;
    this.pendingTouches.set(keyId, at);
  }

  checkWritable(): Promise<void> {
    return this.table.checkWritable();
  }

  async close(): Promise<void> {
    if (this.touchTimer) clearInterval(this.touchTimer);
    this.touchTimer = null;
    await this.flushTouches();
    await this.table.close();
  }

  /** Writes the batched `last_used` times, if any. */
  private async flushTouches(): Promise<void> {
    if (this.pendingTouches.size > 0) await this.change(() => ({ ops: [], result: undefined }));
  }

  /** A change, with the batched `last_used` times written in the same append. */
  private async change<R>(plan: () => { ops: TableOp<KeyRecord>[]; result: R }): Promise<R> {
    const touches = this.pendingTouches;
    this.pendingTouches = new Map();
    try {
      return await this.table.change(() => {
        const { ops, result } = plan();
        const touched: TableOp<KeyRecord>[] = [];
        for (const [keyId, at] of touches) {
          const record = this.table.get(keyId);
          if (record && !ops.some((op) => op.id === keyId))
            touched.push({ op: 'put', id: keyId, value: { ...record, last_used: Math.max(record.last_used ?? 0, at) } });
        }
        return { ops: [...touched, ...ops], result };
      });
    } catch (error) {
      for (const [keyId, at] of touches) if (!this.pendingTouches.has(keyId)) this.pendingTouches.set(keyId, at);
      throw error;
    }
  }
}
