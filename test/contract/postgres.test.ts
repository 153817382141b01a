// The store contracts against the PostgreSQL adapters, in a database created for this run and dropped after it.

import { after } from 'node:test';
import pg from 'pg';
import {
  PostgresAuditStore,
  PostgresDatabase,
  PostgresJobStore,
  PostgresKeyStore,
  PostgresOwnershipStore,
  PostgresSessionStore,
  PostgresUsageStore,
  PostgresWebhookStore,
} from '../../src/store/postgres/index.js';
import { auditStoreContract, type ClosableAuditStore } from './audit-store.contract.js';
import { adminPool, freshPostgresDatabase } from './backends.js';
import type { HarnessOrSkip, StoreHarness } from './harness.js';
import { CONTRACT_JOB_RETENTION, jobStoreContract } from './job-store.contract.js';
import { keyStoreContract } from './key-store.contract.js';
import { CONTRACT_RETENTION, ownershipStoreContract } from './ownership-store.contract.js';
import { sessionStoreContract } from './session-store.contract.js';
import { usageStoreContract } from './usage-store.contract.js';
import { CONTRACT_DELIVERY_RETENTION, webhookStoreContract } from './webhook-store.contract.js';

const fresh = await freshPostgresDatabase();
let admin: pg.Pool | null = null;
if (!('skip' in fresh)) {
  // The schema is created once; each test then starts from empty tables.
  await (await PostgresDatabase.open({ url: fresh.url })).close();
  admin = adminPool(fresh.url);
  after(async () => {
    await admin?.end();
    await fresh.drop();
  });
}

const reset = async (): Promise<void> => {
  await admin!.query(
    'TRUNCATE api_keys, sessions, ownership, usage_records, usage_daily, usage_hourly, usage_batches, audit_log, jobs, webhook_deliveries RESTART IDENTITY',
  );
};

/** A harness whose every store has its own pool and LISTEN connection, as a replica would. */
function harness<S>(open: (database: PostgresDatabase) => Promise<S>): HarnessOrSkip<S> {
  if ('skip' in fresh) return { skip: fresh.skip };
  const h: StoreHarness<S> = {
    reset,
    open: async () => open(await PostgresDatabase.open({ url: fresh.url })),
    sharedChanges: { withinMs: 1000 },
  };
  return h;
}

keyStoreContract(
  'PostgresKeyStore',
  harness(async (database) => {
    const store = new PostgresKeyStore({ database });
    await store.open();
    return store;
  }),
);

usageStoreContract(
  'PostgresUsageStore',
  harness(async (database) => {
    const store = new PostgresUsageStore({ database, retentionDays: 36_500 });
    await store.open();
    return store;
  }),
);

ownershipStoreContract(
  'PostgresOwnershipStore',
  harness(async (database) => {
    const store = new PostgresOwnershipStore({ database, retention: CONTRACT_RETENTION });
    await store.open();
    return store;
  }),
);

sessionStoreContract(
  'PostgresSessionStore',
  harness(async (database) => {
    const store = new PostgresSessionStore({ database });
    await store.open();
    return store;
  }),
);

jobStoreContract(
  'PostgresJobStore',
  harness(async (database) => {
    const store = new PostgresJobStore({ database, ...CONTRACT_JOB_RETENTION });
    await store.open();
    return store;
  }),
);

auditStoreContract(
  'PostgresAuditStore',
  harness(async (database): Promise<ClosableAuditStore> => Object.assign(new PostgresAuditStore({ database }), { close: () => database.close() })),
);

webhookStoreContract(
  'PostgresWebhookStore',
  harness(async (database) => {
    const store = new PostgresWebhookStore({ database, ...CONTRACT_DELIVERY_RETENTION });
    await store.open();
    return store;
  }),
);
