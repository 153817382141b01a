// The CLI's access to the stores a running gateway may be using at the same time: a store directory, or a PostgreSQL database.

import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { redactUrl } from '../config/load.js';
import { DEFAULTS } from '../config/schema.js';
import { FileAuditStore } from '../store/file/file-audit-store.js';
import { FileKeyStore } from '../store/file/file-key-store.js';
import { FileSessionStore } from '../store/file/file-session-store.js';
import { createUsageFileIfMissing, FileUsageStore } from '../store/file/file-usage-store.js';
import { FileWorkflowStore } from '../store/file/file-workflow-store.js';
import { checkStoreDirectory, createStoreDirectory } from '../store/file/store-permissions.js';
import type { PostgresDatabase } from '../store/postgres/database.js';
import { StoreKeyRows } from '../store/store-key-rows.js';
import { StoreUsageRows } from '../store/store-usage-rows.js';
import type { AuditEntry, AuditStore, KeyRecord, KeyRows, UsageRows, WorkflowStore } from '../store/types.js';
import { allowUnsafeStoreOf, databaseUrlOf, userDirectoryOf, type FlagValues } from './options.js';
import { CommandError } from './usage-error.js';

/** Where a command's keys, usage, workflows and audit trail are. */
export interface StorePlace {
  directory: string;
  /** `--allow-unsafe-store-permissions`: warn instead of refusing a folder others can write. */
  allowUnsafe: boolean;
  /** The PostgreSQL URL when one was given: the stores are then there, and the directory is not used. */
  databaseUrl: string | null;
}

/**
 * The stores of one command run, each opened when first asked for and all closed by `close`, so the
 * process exits promptly. On PostgreSQL only the key, usage, workflow and audit tables are used (no job store,
 * Redis or job-event relay); a key change is announced to the running gateways by the table's NOTIFY,
 * as one made through the HTTP API is.
 */
export class CommandStores {
  readonly place: StorePlace;
  private database: Promise<PostgresDatabase> | null = null;
  private keyRows: Promise<KeyRows> | null = null;
  private usageRows: Promise<UsageRows> | null = null;
  private readonly closers: Array<() => Promise<void>> = [];

  constructor(place: StorePlace) {
    this.place = place;
  }

  /** The stores a command's flags (or the environment) name; `help` is for the error of a bad database URL. @throws UsageError */
  static of(values: FlagValues, env: NodeJS.ProcessEnv, help: string): CommandStores {
    return new CommandStores({
      directory: userDirectoryOf(values, env),
      allowUnsafe: allowUnsafeStoreOf(values, env),
      databaseUrl: databaseUrlOf(values, env, help),
    });
  }

  /** Where the data is, for messages: the directory, or the database URL without its password. */
  get where(): string {
    return this.place.databaseUrl === null ? this.place.directory : redactUrl(this.place.databaseUrl);
  }

  /**
   * Checks the store directory (see `requireStoreDirectory`), made first with `create`; on PostgreSQL,
   * connects (migrating the schema as a gateway does).
   * @throws CommandError; UnsafeStoreError
   */
  async prepare(options: { create?: boolean } = {}): Promise<void> {
    const { directory, allowUnsafe, databaseUrl } = this.place;
    if (databaseUrl !== null) {
      await this.openDatabase();
      return;
    }
    if (options.create) await createStoreDirectory(directory);
    await requireStoreDirectory(directory, allowUnsafe);
    if (options.create) await createUsageFileIfMissing(join(directory, 'api_usage.json'));
  }

  /**
   * The keys, opened once. On files, the store is read whole, and changes go through its lock and
   * journal, which a running gateway picks up within a second. On PostgreSQL, each read and write is a
   * query for the rows it needs (`keys list` pages through them), however many keys the table holds.
   */
  keys(): Promise<KeyRows> {
    this.keyRows ??= (async () => {
      if (this.place.databaseUrl === null) return new StoreKeyRows(await this.opened(async () => new FileKeyStore({ directory: this.place.directory })));
      const { PostgresKeyRows } = await import('../store/postgres/postgres-key-rows.js');
      return new PostgresKeyRows({ database: await this.openDatabase() });
    })();
    return this.keyRows;
  }

  /**
   * The usage, read and never written (no appends, compactions or retention deletes). On files, the
   * usage files are read whole, once. On PostgreSQL, each read is a query for the keys it names (`usage`
   * without `--key` pages through them), however many keys the tables hold.
   */
  usage(): Promise<UsageRows> {
    this.usageRows ??= (async () => {
      if (this.place.databaseUrl === null) {
        const store = await this.opened(
          async () => new FileUsageStore({ directory: this.place.directory, retentionDays: DEFAULTS.usageRetentionDays, readOnly: true }),
        );
        return new StoreUsageRows(store, await this.keys());
      }
      const { PostgresUsageRows } = await import('../store/postgres/postgres-usage-rows.js');
      const database = await this.openDatabase();
      return this.opened(async () => new PostgresUsageRows({ database, retentionDays: DEFAULTS.usageRetentionDays }));
    })();
    return this.usageRows;
  }

  /** The named workflows; each read and write goes to the folder or the database, which a running gateway reads on each use. */
  async workflows(): Promise<WorkflowStore> {
    if (this.place.databaseUrl === null) return new FileWorkflowStore({ directory: this.place.directory });
    const { PostgresWorkflowStore } = await import('../store/postgres/postgres-workflow-store.js');
    return new PostgresWorkflowStore({ database: await this.openDatabase() });
  }

  /** The audit trail. */
  async audit(): Promise<AuditStore> {
    if (this.place.databaseUrl === null) return new FileAuditStore({ directory: this.place.directory });
    const { PostgresAuditStore } = await import('../store/postgres/postgres-audit-store.js');
    return new PostgresAuditStore({ database: await this.openDatabase() });
  }

  /**
   * Ends every browser session of a key, durably: on files through the session store's lock and journal (a
   * gateway running on the directory drops them within a second, one started later never reads them); on
   * PostgreSQL in the sessions table, whose change every replica reads, whether or not one runs now.
   */
  async endKeySessions(keyId: string): Promise<void> {
    if (this.place.databaseUrl === null) {
      const store = new FileSessionStore({ directory: this.place.directory });
      await store.open();
      try {
        await store.deleteForKey(keyId);
      } finally {
        await store.close();
      }
      return;
    }
    const { PostgresSessionStore } = await import('../store/postgres/postgres-session-store.js');
    // One statement: the store's replica of the table (its feed) is not needed for it, and not opened.
    await new PostgresSessionStore({ database: await this.openDatabase() }).deleteForKey(keyId);
  }

  /**
   * Appends a change made from the shell to the audit trail (actor `cli`). The change is already made:
   * when the trail cannot be written, a warning is printed and the command still succeeds.
   */
  async auditChange(entry: Omit<AuditEntry, 'actor'>): Promise<void> {
    try {
      await (
        await this.audit()
      ).append({
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

  /** Closes what was opened, the stores before their database. */
  async close(): Promise<void> {
    for (const close of this.closers.splice(0).reverse()) await close();
  }

  /** Opens a store made by `make` and has `close` close it. */
  private async opened<S extends { open(): Promise<void>; close(): Promise<void> }>(make: () => Promise<S>): Promise<S> {
    const store = await make();
    await store.open();
    this.closers.push(() => store.close());
    return store;
  }

  /**
   * The database, connected once; loaded only when a URL is given.
   * @throws CommandError naming the database (without its password) when it cannot be used.
   */
  private openDatabase(): Promise<PostgresDatabase> {
    const url = this.place.databaseUrl!;
    this.database ??= import('../store/postgres/database.js').then(async ({ PostgresDatabase }) => {
      const database = await PostgresDatabase.open({ url }).catch((error: unknown) => {
        throw new CommandError(`cannot use the database at ${redactUrl(url)}: ${(error as Error).message}`);
      });
      this.closers.push(() => database.close());
      return database;
    });
    return this.database;
  }
}

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

/** The key with this id. @throws CommandError when there is none. */
export async function requireKey(keys: KeyRows, keyId: string): Promise<KeyRecord> {
  const record = await keys.get(keyId);
  if (!record) throw new CommandError(`no key has key_id ${keyId}`);
  return record;
}
