// The WorkflowStore contract on the JSON file and on PostgreSQL, and what only the file store does (an unreadable file is refused, never overwritten).

import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { FileWorkflowStore } from '../../src/store/file/file-workflow-store.js';
import { PostgresDatabase, PostgresWorkflowStore } from '../../src/store/postgres/index.js';
import { StoreCorruptError } from '../../src/store/types.js';
import { adminPool, freshPostgresDatabase } from './backends.js';
import { workflowStoreContract, type ClosableWorkflowStore } from './workflow-store.contract.js';

const directories: string[] = [];
let directory = '';
after(() => Promise.all(directories.map((d) => rm(d, { recursive: true, force: true }))));
const newDirectory = async (): Promise<string> => {
  directory = await mkdtemp(join(tmpdir(), 'comfy-gate-workflows-'));
  directories.push(directory);
  return directory;
};

workflowStoreContract('FileWorkflowStore', {
  reset: async () => {
    await newDirectory();
  },
  open: async (): Promise<ClosableWorkflowStore> => Object.assign(new FileWorkflowStore({ directory }), { close: async () => undefined }),
  sharedChanges: { withinMs: 0 },
});

const fresh = await freshPostgresDatabase();
let admin: pg.Pool | null = null;
if (!('skip' in fresh)) {
  await (await PostgresDatabase.open({ url: fresh.url })).close();
  admin = adminPool(fresh.url);
  after(async () => {
    await admin?.end();
    await fresh.drop();
  });
}
workflowStoreContract(
  'PostgresWorkflowStore',
  'skip' in fresh
    ? { skip: fresh.skip }
    : {
        reset: async () => {
          await admin!.query('TRUNCATE workflows');
        },
        open: async (): Promise<ClosableWorkflowStore> => {
          const database = await PostgresDatabase.open({ url: fresh.url });
          return Object.assign(new PostgresWorkflowStore({ database }), { close: () => database.close() });
        },
        sharedChanges: { withinMs: 0 },
      },
);

describe('FileWorkflowStore on disk', () => {
  test('an unreadable workflows.json is refused and left as it is; a write leaves no temporary file', async () => {
    const dir = await newDirectory();
    const store = new FileWorkflowStore({ directory: dir });
    await store.put({ name: 'a', prompt: {}, description: null, inputs: {} }, 1);
    assert.deepEqual(await readdir(dir), ['workflows.json']);
    await writeFile(join(dir, 'workflows.json'), '{"workflows": [');
    await assert.rejects(store.list(), StoreCorruptError);
    await assert.rejects(store.put({ name: 'b', prompt: {}, description: null, inputs: {} }, 2), StoreCorruptError);
    assert.equal(await readFile(join(dir, 'workflows.json'), 'utf8'), '{"workflows": [', 'never overwritten');
  });
});
