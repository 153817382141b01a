// The CLI's access to a store directory that a running gateway may be using at the same time.

import { stat } from 'node:fs/promises';
import { DEFAULTS } from '../config/schema.js';
import { FileAuditStore } from '../store/file/file-audit-store.js';
import { FileKeyStore } from '../store/file/file-key-store.js';
import { FileSessionStore } from '../store/file/file-session-store.js';
import { FileUsageStore } from '../store/file/file-usage-store.js';
import { checkStoreDirectory } from '../store/file/store-permissions.js';
import type { AuditEntry, KeyRecord } from '../store/types.js';
import { CommandError } from './usage-error.js';

/**
 * Resolves once `directory` is an existing folder, so that a mistyped `--user-directory` is reported
 * instead of read as an empty store, and one that no other user can change (see `checkStoreDirectory`;
 * with `allowUnsafe`, a warning is printed instead).
 * @throws CommandError; UnsafeStoreError
 */
export async function requireStoreDirectory(directory: string, allowUnsafe: boolean): Promise<void> {
  const found = await stat(directory).catch(() => null);
  if (!found) throw new CommandError(`${directory} does not exist; give the gateway's user directory with --user-directory`);
  if (!found.isDirectory()) throw new CommandError(`${directory} is not a directory`);
  await checkStoreFolder(directory, allowUnsafe);
}

/** `checkStoreDirectory` with its warning printed on stderr. @throws UnsafeStoreError */
export function checkStoreFolder(directory: string, allowUnsafe: boolean): Promise<void> {
  return checkStoreDirectory(directory, { allowUnsafe, warn: (message) => console.error(`comfy-gate: warning: ${message}`) });
}

/**
 * Opens the keys for the length of `task`. Changes go through the store's lock and journal, so they
 * are safe beside a running gateway, which picks them up within a second.
 */
export async function withKeyStore<R>(directory: string, task: (store: FileKeyStore) => Promise<R>): Promise<R> {
  const store = new FileKeyStore({ directory });
  await store.open();
  try {
    return await task(store);
  } finally {
    await store.close();
  }
}

/**
 * Ends every browser session of a key, durably, through the session store's lock and journal: a gateway
 * running on the directory drops them within a second, and one started later never reads them.
 */
export async function endKeySessions(directory: string, keyId: string): Promise<void> {
  const store = new FileSessionStore({ directory });
  await store.open();
  try {
    await store.deleteForKey(keyId);
  } finally {
    await store.close();
  }
}

/**
 * The usage store opened read-only: it never writes, so it cannot disturb the appends and compactions
 * of a gateway running on the same directory.
 */
export async function openUsageReadOnly(directory: string): Promise<FileUsageStore> {
  const store = new FileUsageStore({ directory, retentionDays: DEFAULTS.usageRetentionDays, readOnly: true });
  await store.open();
  return store;
}

/** The key with this id. @throws CommandError when there is none. */
export function requireKey(store: FileKeyStore, keyId: string): KeyRecord {
  const record = store.get(keyId);
  if (!record) throw new CommandError(`no key has key_id ${keyId}`);
  return record;
}

/**
 * Appends a change made from the shell to the audit trail (actor `cli`). The change is already made:
 * when the trail cannot be written, a warning is printed and the command still succeeds.
 */
export async function auditFromCli(directory: string, entry: Omit<AuditEntry, 'actor'>): Promise<void> {
  try {
    await new FileAuditStore({ directory }).append({
      ts: entry.ts,
      actor: 'cli',
      action: entry.action,
      ...(entry.key_id ? { key_id: entry.key_id } : {}),
      ...(entry.details ? { details: entry.details } : {}),
    });
  } catch (error) {
    console.error(`comfy-gate: warning: ${entry.action} was done, but the audit trail could not be written: ${(error as Error).message}`);
  }
}
