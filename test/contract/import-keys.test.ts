// The keys' copy from JSON files into PostgreSQL (`comfy-gate migrate`): a large api_keys.json goes in statements of bounded size, every key once.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PostgresDatabase } from '../../src/store/postgres/index.js';
import { importFileStore } from '../../src/store/postgres/import-file-store.js';
import { migratedDatabaseForFile, type MigratedDatabase } from './backends.js';
import { makeKey } from './key-store.contract.js';

const fresh = await migratedDatabaseForFile();
const { url, admin } = fresh as MigratedDatabase;
/** More keys than two statements take, and not a whole number of them. */
const KEYS = 12_345;

describe('importFileStore: keys', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  let directory = '';
  after(async () => {
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  test(`copies ${KEYS} keys in statements of at most 5,000, each key once; a second run copies nothing`, async () => {
    directory = await mkdtemp(join(tmpdir(), 'comfy-gate-import-keys-'));
    const records = Array.from({ length: KEYS }, () => makeKey().record);
    await writeFile(join(directory, 'api_keys.json'), JSON.stringify(Object.fromEntries(records.map((record) => [record.key_id, record]))));

    const database = await PostgresDatabase.open({ url });
    const query = database.query.bind(database);
    /** Keys in each INSERT INTO api_keys, in the order sent. */
    const statements: number[] = [];
    database.query = ((text: string, values?: unknown[]) => {
      if (/^\s*INSERT INTO api_keys\b/.test(text)) statements.push((values![0] as unknown[]).length);
      return query(text, values);
    }) as typeof database.query;
    try {
      assert.deepEqual((await importFileStore(directory, database)).keys, { found: KEYS, copied: KEYS });
      assert.deepEqual(statements, [5000, 5000, 2345]);
      assert.deepEqual((await importFileStore(directory, database)).keys, { found: KEYS, copied: 0 });
    } finally {
      await database.close();
    }
    const { rows } = await admin.query<{ n: number; hashes: number }>('SELECT count(*)::int AS n, count(DISTINCT key_hash)::int AS hashes FROM api_keys');
    assert.deepEqual(rows[0], { n: KEYS, hashes: KEYS });
  });
});
