// Opens the stores a gateway runs on: JSON files and in-memory counters by default; PostgreSQL and Redis when their URLs are given.

import { redactUrl } from '../config/load.js';
import { DEFAULTS, type GatewayConfig } from '../config/schema.js';
import type { JobEventRelay } from '../events/job-event-relay.js';
import { createLogger } from '../log/logger.js';
import { WINDOW_SECONDS } from '../ratelimit/headers.js';
import { FileAuditStore } from './file/file-audit-store.js';
import { FileJobStore } from './file/file-job-store.js';
import { FileKeyStore } from './file/file-key-store.js';
import { FileOwnershipStore } from './file/file-ownership-store.js';
import { FileSessionStore } from './file/file-session-store.js';
import { FileUsageStore } from './file/file-usage-store.js';
import { FileWorkflowStore } from './file/file-workflow-store.js';
import { FileWebhookStore } from './file/file-webhook-store.js';
import { checkStoreDirectory, createStoreDirectory } from './file/store-permissions.js';
import { MemoryCounterStore } from './memory/memory-counter-store.js';
import type { StoreLog } from './postgres/database.js';
import type { SharedRecords } from './redis/redis-counter-store.js';
import type {
  AuditStore,
  CounterStore,
  DeliveryLeases,
  JobStore,
  KeyStore,
  OwnershipStore,
  SessionStore,
  UsageStore,
  WebhookDeliveryStore,
  WorkflowStore,
} from './types.js';

export interface Stores {
  keys: KeyStore;
  usage: UsageStore;
  counters: CounterStore;
  ownership: OwnershipStore;
  sessions: SessionStore;
  audit: AuditStore;
  jobs: JobStore;
  /** The registered workflows, read from the store on each use. */
  workflows: WorkflowStore;
  /** The webhook delivery outbox. */
  webhooks: WebhookDeliveryStore;
  /** With Redis only: caps each key's webhook attempts in flight across the replicas (without it, each replica caps its own). */
  deliveryLeases?: DeliveryLeases;
  /** With a database only: passes job events between the replicas on it (one process on JSON files needs none). */
  jobEvents?: JobEventRelay;
  /** Where the data lives, for the start-up line. */
  location: string;
}

/** The settings `createStores` reads; the backend URLs are optional (JSON files and memory counters without them). */
export type StoreConfig = Pick<GatewayConfig, 'userDirectory' | 'usageRetentionDays'> &
  Partial<
    Pick<
      GatewayConfig,
      | 'jobRetentionDays'
      | 'allowUnsafeStorePermissions'
      | 'databaseUrl'
      | 'redisUrl'
      | 'redisKeyPrefix'
      | 'redisTimeoutMs'
      | 'redisFailure'
      | 'logLevel'
      | 'webhookSecret'
    >
  >;

/**
 * Opens the key, usage, ownership, session and job stores and seeds the rate-limit windows with the requests of the last hour,
 * so a restart does not reset anyone's count. With `databaseUrl`, the stores live in PostgreSQL (the schema is
 * migrated first); with `redisUrl`, the rate-limit counters and (with `webhookSecret`) the webhook attempt leases live in Redis, shared by every replica. Each client
 * library is loaded only when its URL is given, never for the JSON-file default.
 * @throws UnsafeStoreError when the store folder or a file in it could be changed by another user (see `checkStoreDirectory`).
 * @throws StoreCorruptError when a store file cannot be read; the connection or migration error when PostgreSQL cannot be used.
 * @example const stores = await createStores({ userDirectory: './user', usageRetentionDays: 90 });
 */
export async function createStores(config: StoreConfig, log?: StoreLog, onWrite?: StoreWriteObserver): Promise<Stores> {
  const storeLog = log ?? (config.databaseUrl || config.redisUrl ? createLogger(config.logLevel ?? 'info') : undefined);
  const { shared, ...persistent } = config.databaseUrl ? await openPostgres(config.databaseUrl, config, storeLog) : await openFiles(config, storeLog, onWrite);
  let counters: CounterStore;
  let deliveryLeases: DeliveryLeases | undefined;
  let location = persistent.location;
  if (config.redisUrl) {
    try {
      counters = await openRedisCounters(config.redisUrl, config, storeLog, shared);
      // The leases' connection is opened only when webhooks are delivered.
      if (config.webhookSecret) deliveryLeases = await openRedisDeliveryLeases(config.redisUrl, config, storeLog);
    } catch (error) {
      persistent.jobEvents?.close();
      await Promise.all([
        persistent.keys.close(),
        persistent.usage.close(),
        persistent.ownership.close(),
        persistent.sessions.close(),
        persistent.jobs.close(),
        persistent.webhooks.close(),
      ]).catch(() => undefined);
      throw error;
    }
    location += `, counters ${redactUrl(config.redisUrl)}`;
  } else {
    counters = new MemoryCounterStore(WINDOW_SECONDS);
  }
  const now = Date.now() / 1000;
  counters.restore(persistent.usage.recentRequestTimes(WINDOW_SECONDS, now), now);
  return { ...persistent, counters, ...(deliveryLeases ? { deliveryLeases } : {}), location };
}

/** The stores besides the counters; with a database, also what it tells the counters about the other replicas. */
type PersistentStores = Omit<Stores, 'counters'> & { shared?: SharedRecords };

/** Told how long each durable write of a store took (for metrics): the store's name and seconds. */
export type StoreWriteObserver = (store: string, seconds: number) => void;

async function openFiles(config: StoreConfig, log: StoreLog | undefined, onWrite?: StoreWriteObserver): Promise<PersistentStores> {
  const directory = config.userDirectory;
  await createStoreDirectory(directory);
  await checkStoreDirectory(directory, {
    allowUnsafe: config.allowUnsafeStorePermissions ?? false,
    warn: (message) => (log ?? createLogger(config.logLevel ?? 'info')).warn({ directory }, message),
  });
  const observed = (store: string) => (onWrite ? { onWrite: (seconds: number) => onWrite(store, seconds) } : {});
  const keys = new FileKeyStore({ directory, ...observed('keys') });
  const usage = new FileUsageStore({ directory, retentionDays: config.usageRetentionDays, ...observed('usage') });
  const ownership = new FileOwnershipStore({ directory, ...observed('ownership') });
  const sessions = new FileSessionStore({ directory, ...observed('sessions') });
  const jobs = new FileJobStore({ directory, retentionSeconds: jobRetentionSeconds(config), ...observed('jobs') });
  const webhooks = new FileWebhookStore({ directory, retentionSeconds: deliveryRetentionSeconds(config), ...observed('webhooks') });
  await Promise.all([keys.open(), usage.open(), ownership.open(), sessions.open(), jobs.open(), webhooks.open()]);
  return {
    keys,
    usage,
    ownership,
    sessions,
    jobs,
    webhooks,
    audit: new FileAuditStore({ directory, ...observed('audit') }),
    workflows: new FileWorkflowStore({ directory, ...observed('workflows') }),
    location: directory,
  };
}

async function openPostgres(url: string, config: StoreConfig, log: StoreLog | undefined): Promise<PersistentStores> {
  const { openPostgresStores } = await import('./postgres/index.js');
  const stores = await openPostgresStores({
    url,
    usageRetentionDays: config.usageRetentionDays,
    jobRetentionSeconds: jobRetentionSeconds(config),
    deliveryRetentionSeconds: deliveryRetentionSeconds(config),
    ...(log ? { log } : {}),
  });
  const shared: SharedRecords = {
    recordedRequestTimes: (keyId, since) => stores.usage.recordedRequestTimes(keyId, since),
    connectedGateways: () => stores.database.connectedGateways(),
  };
  return { ...stores, shared, location: redactUrl(url) };
}

/** `--job-retention-days` in seconds. */
function jobRetentionSeconds(config: StoreConfig): number {
  return (config.jobRetentionDays ?? DEFAULTS.jobRetentionDays) * 86_400;
}

/**
 * How long a delivered or failed webhook delivery is kept: a day past the job retention, so that its
 * job is always forgotten first and the start-up catch-up never sends an ended job's event again.
 */
export function deliveryRetentionSeconds(config: StoreConfig): number {
  return jobRetentionSeconds(config) + 86_400;
}

async function openRedisDeliveryLeases(url: string, config: StoreConfig, log: StoreLog | undefined): Promise<DeliveryLeases> {
  const { RedisDeliveryLeases } = await import('./redis/redis-delivery-leases.js');
  return RedisDeliveryLeases.open({
    url,
    ...(config.redisKeyPrefix ? { keyPrefix: config.redisKeyPrefix } : {}),
    ...(config.redisTimeoutMs ? { timeoutMs: config.redisTimeoutMs } : {}),
    ...(log ? { log } : {}),
  });
}

async function openRedisCounters(url: string, config: StoreConfig, log: StoreLog | undefined, shared: SharedRecords | undefined): Promise<CounterStore> {
  const { RedisCounterStore } = await import('./redis/redis-counter-store.js');
  return RedisCounterStore.open({
    url,
    windowSeconds: WINDOW_SECONDS,
    ...(config.redisKeyPrefix ? { keyPrefix: config.redisKeyPrefix } : {}),
    ...(config.redisTimeoutMs ? { timeoutMs: config.redisTimeoutMs } : {}),
    ...(config.redisFailure ? { failure: config.redisFailure } : {}),
    ...(log ? { log } : {}),
    ...(shared ? { shared } : {}),
  });
}
