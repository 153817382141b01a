// The usage in PostgreSQL's usage tables read for the keys a command names, without the totals of every key a gateway keeps.

import type { UsageRows, UsageStore } from '../types.js';
import type { PostgresDatabase } from './database.js';
import { PostgresUsageStore } from './postgres-usage-store.js';

/**
 * Each `ofKeys` reads the named keys' rows alone (found by key_id, the start of each table's primary
 * key), so a command about one key costs the same however many keys have usage; `eachPageOfKeysGone`
 * pages through a cursor. Nothing is written.
 */
export class PostgresUsageRows implements UsageRows {
  private readonly database: PostgresDatabase;
  private readonly retentionDays: number;

  constructor(options: { database: PostgresDatabase; retentionDays: number }) {
    this.database = options.database;
    this.retentionDays = options.retentionDays;
  }

  /** Holds the database from open to close, so that it stays open between the reads, whose stores let go of it. */
  open(): Promise<void> {
    this.database.retain();
    return Promise.resolve();
  }

  close(): Promise<void> {
    return this.database.release();
  }

  async ofKeys(keyIds: readonly string[], fromDay?: string): Promise<UsageStore> {
    const store = new PostgresUsageStore({
      database: this.database,
      retentionDays: this.retentionDays,
      readOnly: true,
      only: { keyIds, ...(fromDay === undefined ? {} : { fromDay }) },
    });
    // Read at open; closing a read-only store only lets go of the database (held by `open`), and the totals stay.
    await store.open();
    await store.close();
    return store;
  }

  eachPageOfKeysGone(onPage: (keyIds: string[]) => void | Promise<void>): Promise<void> {
    return this.database.eachPage<{ key_id: string }>(
      `SELECT DISTINCT key_id FROM usage_daily AS d
       WHERE NOT EXISTS (SELECT 1 FROM api_keys AS k WHERE k.key_id = d.key_id AND NOT k.deleted) ORDER BY key_id`,
      [],
      (rows) => onPage(rows.map((row) => row.key_id)),
    );
  }
}
