// A usage store held in memory (the files') seen through the `UsageRows` calls a command makes.

import type { KeyRows, UsageRows, UsageStore } from './types.js';

/** `usage` already holds every key's usage: `ofKeys` hands it over whole, and the keys gone come as one page. */
export class StoreUsageRows implements UsageRows {
  constructor(
    private readonly usage: UsageStore,
    private readonly keys: KeyRows,
  ) {}

  ofKeys(): Promise<UsageStore> {
    return Promise.resolve(this.usage);
  }

  async eachPageOfKeysGone(onPage: (keyIds: string[]) => void | Promise<void>): Promise<void> {
    const gone: string[] = [];
    for (const keyId of this.usage.keyIds().sort()) if (!(await this.keys.get(keyId))) gone.push(keyId);
    if (gone.length > 0) await onPage(gone);
  }
}
