// Opens the PostgreSQL stores of a gateway on one shared database. Loaded only when a database URL is given.

import { JobEventRelay } from '../../events/job-event-relay.js';
import { PostgresAuditStore } from './postgres-audit-store.js';
import { PostgresDatabase, type StoreLog } from './database.js';
import { CHANNELS } from './migrations.js';
import { PostgresJobStore } from './postgres-job-store.js';
import { PostgresKeyStore } from './postgres-key-store.js';
import { PostgresOwnershipStore } from './postgres-ownership-store.js';
import { PostgresSessionStore } from './postgres-session-store.js';
import { PostgresUsageStore } from './postgres-usage-store.js';
import { PostgresWorkflowStore } from './postgres-workflow-store.js';
import { PostgresWebhookStore } from './postgres-webhook-store.js';

export { PostgresDatabase, isConnectionError } from './database.js';
export { PostgresKeyStore } from './postgres-key-store.js';
export { PostgresUsageStore, DEFAULT_MAX_BUFFERED_RECORDS } from './postgres-usage-store.js';
export { PostgresOwnershipStore } from './postgres-ownership-store.js';
export { PostgresSessionStore } from './postgres-session-store.js';
export { PostgresAuditStore } from './postgres-audit-store.js';
export { PostgresJobStore } from './postgres-job-store.js';
export { PostgresWorkflowStore } from './postgres-workflow-store.js';
export { PostgresWebhookStore } from './postgres-webhook-store.js';

export interface PostgresStoresOptions {
  url: string;
  usageRetentionDays: number;
  /** Seconds a finished job is kept (default 30 days). */
  jobRetentionSeconds?: number;
  /** Seconds a delivered or failed webhook delivery is kept (default 31 days). */
  deliveryRetentionSeconds?: number;
  log?: StoreLog;
}

export interface PostgresStores {
  database: PostgresDatabase;
  keys: PostgresKeyStore;
  usage: PostgresUsageStore;
  ownership: PostgresOwnershipStore;
  sessions: PostgresSessionStore;
  audit: PostgresAuditStore;
  jobs: PostgresJobStore;
  workflows: PostgresWorkflowStore;
  webhooks: PostgresWebhookStore;
  /** Job events between the replicas, by NOTIFY and LISTEN on their own channel. */
  jobEvents: JobEventRelay;
}

/**
 * Connects, migrates the schema and opens every store, each with its in-memory replica loaded.
 * @throws the connection or migration error; nothing is left open.
 */
export async function openPostgresStores(options: PostgresStoresOptions): Promise<PostgresStores> {
  const database = await PostgresDatabase.open({ url: options.url, ...(options.log ? { log: options.log } : {}) });
  const jobEvents = await openJobEventRelay(database).catch(async (error: unknown) => {
    await database.close();
    throw error;
  });
  const keys = new PostgresKeyStore({ database });
  const usage = new PostgresUsageStore({ database, retentionDays: options.usageRetentionDays, ...(options.log ? { log: options.log } : {}) });
  const ownership = new PostgresOwnershipStore({ database });
  const sessions = new PostgresSessionStore({ database });
  const jobs = new PostgresJobStore({ database, ...(options.jobRetentionSeconds ? { retentionSeconds: options.jobRetentionSeconds } : {}) });
  const webhooks = new PostgresWebhookStore({ database, retentionSeconds: options.deliveryRetentionSeconds ?? 31 * 86_400 });
  // The database stays open while any store uses it; this hold is let go once all are open (or one failed).
  database.retain();
  try {
    const opened = await Promise.allSettled([keys.open(), usage.open(), ownership.open(), sessions.open(), jobs.open(), webhooks.open()]);
    const failed = opened.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) {
      await Promise.all(
        [keys, usage, ownership, sessions, jobs, webhooks].map((store, i) =>
          opened[i]!.status === 'fulfilled' ? store.close().catch(() => undefined) : Promise.resolve(),
        ),
      );
      throw failed.reason;
    }
  } catch (error) {
    jobEvents.close();
    throw error;
  } finally {
    await database.release();
  }
  return {
    database,
    keys,
    usage,
    ownership,
    sessions,
    jobs,
    webhooks,
    jobEvents,
    audit: new PostgresAuditStore({ database }),
    workflows: new PostgresWorkflowStore({ database }),
  };
}

/** The job-event relay of the replicas on `database`: NOTIFY and LISTEN on their own channel. */
export function openJobEventRelay(database: PostgresDatabase): Promise<JobEventRelay> {
  return JobEventRelay.open({
    send: (payloads) => database.notify(CHANNELS.jobEvents, payloads),
    // Events sent while the LISTEN connection was down are lost: there is nothing to catch up on.
    listen: (onPayload) => database.subscribe(CHANNELS.jobEvents, onPayload, () => undefined),
  });
}
