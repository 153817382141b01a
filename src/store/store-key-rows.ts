// A key store that holds every key in memory (the files' store) seen through the `KeyRows` calls a command makes.

import type { KeyPatch, KeyRecord, KeyRows, KeyStore } from './types.js';

/** `store`'s keys one at a time; `eachPage` hands over all of them, oldest first, as one page. */
export class StoreKeyRows implements KeyRows {
  constructor(private readonly store: KeyStore) {}

  get(keyId: string): Promise<KeyRecord | undefined> {
    return Promise.resolve(this.store.get(keyId));
  }

  async create(record: KeyRecord): Promise<void> {
    await this.store.create(record);
  }

  update(keyId: string, patch: KeyPatch): Promise<KeyRecord | undefined> {
    return this.store.update(keyId, patch);
  }

  delete(keyId: string): Promise<boolean> {
    return this.store.delete(keyId);
  }

  async eachPage(onPage: (records: KeyRecord[]) => void | Promise<void>): Promise<void> {
    await onPage(this.store.list().sort((a, b) => a.created_at - b.created_at));
  }
}
