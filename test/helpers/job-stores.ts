// The job registry and the ownership store, open in a new temporary folder, for unit tests that need both.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileJobStore } from '../../src/store/file/file-job-store.js';
import { FileOwnershipStore } from '../../src/store/file/file-ownership-store.js';

export interface OpenJobStores {
  jobs: FileJobStore;
  ownership: FileOwnershipStore;
  /** Closes both stores and removes their folder. */
  close(): Promise<void>;
}

/** Opens both stores in a new folder named after `purpose`. */
export async function openJobStores(purpose: string): Promise<OpenJobStores> {
  const dir = await mkdtemp(join(tmpdir(), `comfy-gate-${purpose}-`));
  const jobs = new FileJobStore({ directory: dir });
  const ownership = new FileOwnershipStore({ directory: dir });
  await Promise.all([jobs.open(), ownership.open()]);
  return {
    jobs,
    ownership,
    async close() {
      await Promise.all([jobs.close(), ownership.close()]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
