// The store contracts against the JSON-file adapters, each test in a fresh user directory.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { FileAuditStore } from '../../src/store/file/file-audit-store.js';
import { FileJobStore } from '../../src/store/file/file-job-store.js';
import { FileKeyStore } from '../../src/store/file/file-key-store.js';
import { FileOwnershipStore } from '../../src/store/file/file-ownership-store.js';
import { FileSessionStore } from '../../src/store/file/file-session-store.js';
import { FileUsageStore } from '../../src/store/file/file-usage-store.js';
import { FileWebhookStore } from '../../src/store/file/file-webhook-store.js';
import { auditStoreContract } from './audit-store.contract.js';
import { CONTRACT_JOB_RETENTION, jobStoreContract } from './job-store.contract.js';
import { keyStoreContract } from './key-store.contract.js';
import { CONTRACT_RETENTION, ownershipStoreContract } from './ownership-store.contract.js';
import { sessionStoreContract } from './session-store.contract.js';
import { usageStoreContract } from './usage-store.contract.js';
import { CONTRACT_DELIVERY_RETENTION, webhookStoreContract } from './webhook-store.contract.js';

const directories: string[] = [];
let directory = '';
const reset = async (): Promise<void> => {
  directory = await mkdtemp(join(tmpdir(), 'comfy-gate-contract-'));
  directories.push(directory);
};
after(() => Promise.all(directories.map((d) => rm(d, { recursive: true, force: true }))));
const ONE_WRITER = { skip: 'the JSON-file store is written by one gateway process; it does not follow another writer' };

keyStoreContract('FileKeyStore', {
  reset,
  open: async () => {
    const store = new FileKeyStore({ directory, pollIntervalMs: 50 });
    await store.open();
    return store;
  },
  sharedChanges: { withinMs: 1000 },
});

// The same store with every snapshot read through the key index that large files get, split over three threads.
keyStoreContract('FileKeyStore (indexed snapshot)', {
  reset,
  open: async () => {
    const store = new FileKeyStore({ directory, pollIntervalMs: 50, index: { minBytes: 0, threads: 3 } });
    await store.open();
    return store;
  },
  sharedChanges: { withinMs: 1000 },
});

usageStoreContract('FileUsageStore', {
  reset,
  open: async () => {
    const store = new FileUsageStore({ directory, retentionDays: 36_500 });
    await store.open();
    return store;
  },
  sharedChanges: ONE_WRITER,
});

ownershipStoreContract('FileOwnershipStore', {
  reset,
  open: async () => {
    const store = new FileOwnershipStore({ directory, retention: CONTRACT_RETENTION });
    await store.open();
    return store;
  },
  sharedChanges: ONE_WRITER,
});

sessionStoreContract('FileSessionStore', {
  reset,
  open: async () => {
    const store = new FileSessionStore({ directory });
    await store.open();
    return store;
  },
  sharedChanges: ONE_WRITER,
});

jobStoreContract('FileJobStore', {
  reset,
  open: async () => {
    const store = new FileJobStore({ directory, ...CONTRACT_JOB_RETENTION });
    await store.open();
    return store;
  },
  sharedChanges: ONE_WRITER,
});

auditStoreContract('FileAuditStore', {
  reset,
  open: async () => Object.assign(new FileAuditStore({ directory }), { close: async () => undefined }),
  sharedChanges: { withinMs: 0 },
});

webhookStoreContract('FileWebhookStore', {
  reset,
  open: async () => {
    const store = new FileWebhookStore({ directory, ...CONTRACT_DELIVERY_RETENTION });
    await store.open();
    return store;
  },
  sharedChanges: ONE_WRITER,
});
