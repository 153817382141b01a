// The WorkflowStore contract on the JSON file and on PostgreSQL, and what only the file store does (an unreadable file is refused, never overwritten).

import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
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

  test('reads parse the file again only when it changed, and see every change: another process’s, and an edit in place', async () => {
    const dir = await newDirectory();
    const store = new FileWorkflowStore({ directory: dir });
    const other = new FileWorkflowStore({ directory: dir });
    await store.put({ name: 'a', prompt: { '1': { class_type: 'SaveImage', inputs: {} } }, description: null, inputs: {} }, 1);
    const path = join(dir, 'workflows.json');
    const fresh = await store.get('a');
    assert.notEqual(await store.get('a'), fresh, 'a file changed this instant is parsed on every read (its time may not tell a next edit)');
    const past = new Date(Date.now() - 60_000);
    await utimes(path, past, past);
    const first = await store.get('a');
    assert.equal(await store.get('a'), first, 'the same settled file: the record of the last parse');
    await other.put({ name: 'a', prompt: {}, description: 'by the CLI', inputs: {} }, 2);
    const replaced = await store.get('a');
    assert.equal(replaced?.description, 'by the CLI', 'a file replaced by another process is read again');
    await utimes(path, past, past);
    assert.equal(await store.get('a'), await store.get('a'));
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('by the CLI', 'by hand!!!'));
    assert.equal((await store.get('a'))?.description, 'by hand!!!', 'an edit in place (same inode, same size) is read again');
    assert.deepEqual(
      (await store.list()).map((w) => w.name),
      ['a'],
    );
  });
});
