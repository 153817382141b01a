// Opens the stores a gateway runs on. Today: the JSON files in the user directory, and counters in memory.

import { mkdir } from 'node:fs/promises';
import type { GatewayConfig } from '../config/schema.js';
import { WINDOW_SECONDS } from '../ratelimit/headers.js';
import { FileAuditStore } from './file/file-audit-store.js';
import { FileKeyStore } from './file/file-key-store.js';
import { FileOwnershipStore } from './file/file-ownership-store.js';
import { FileSessionStore } from './file/file-session-store.js';
import { FileUsageStore } from './file/file-usage-store.js';
import { MemoryCounterStore } from './memory/memory-counter-store.js';
import type { AuditStore, CounterStore, KeyStore, OwnershipStore, SessionStore, UsageStore } from './types.js';

export interface Stores {
  keys: KeyStore;
  usage: UsageStore;
  counters: CounterStore;
  ownership: OwnershipStore;
  sessions: SessionStore;
  audit: AuditStore;
  /** Where the data lives, for the start-up line. */
  location: string;
}

/**
 * Opens the key, usage, ownership and session stores and seeds the rate-limit windows with the requests of the last hour,
 * so a restart does not reset anyone's count.
 * @throws StoreCorruptError when a store file cannot be read.
 */
export async function createStores(config: Pick<GatewayConfig, 'userDirectory' | 'usageRetentionDays'>): Promise<Stores> {
  await mkdir(config.userDirectory, { recursive: true });
  const keys = new FileKeyStore({ directory: config.userDirectory });
  const usage = new FileUsageStore({ directory: config.userDirectory, retentionDays: config.usageRetentionDays });
  const ownership = new FileOwnershipStore({ directory: config.userDirectory });
  const sessions = new FileSessionStore({ directory: config.userDirectory });
  await Promise.all([keys.open(), usage.open(), ownership.open(), sessions.open()]);
  const counters = new MemoryCounterStore(WINDOW_SECONDS);
  const now = Date.now() / 1000;
  counters.restore(usage.recentRequestTimes(WINDOW_SECONDS, now), now);
  return { keys, usage, counters, ownership, sessions, audit: new FileAuditStore({ directory: config.userDirectory }), location: config.userDirectory };
}
