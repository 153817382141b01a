// Unit tests of the key index: lookups by id and hash over several threads, the files it leaves to the plain reading, and its records with changes on top (property-based, against a Map).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { indexKeySnapshot, keyHashesOf, type KeyIndexOptions } from '../../src/store/file/key-index.js';
import { IndexedRecords } from '../../src/store/file/table-records.js';
import type { KeyRecord } from '../../src/store/types.js';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
const EVERY_SIZE: KeyIndexOptions = { minBytes: 0, threads: 3 };

const directory = await mkdtemp(join(tmpdir(), 'comfy-gate-key-index-'));
after(() => rm(directory, { recursive: true, force: true }));
let fileNumber = 0;

/** Key `i` (every third one mid-rotation, with a previous hash; names with quotes and non-ASCII text). */
function keyRecord(i: number, suffix = ''): KeyRecord {
  return {
    key_id: `key-${i}${suffix}`,
    name: `Key "${i}" – café ☕`,
    created_at: 1_714_000_000 + i,
    last_used: null,
    rate_limit: 100 + i,
    is_active: i % 5 !== 0,
    metadata: { team: i % 7, note: '{"key_hash": "not this one"}' },
    role: i % 11 === 0 ? 'admin' : 'user',
    expires_at: null,
    key_prefix: null,
    key_hash: sha256(`secret-${i}${suffix}`),
    previous_key_hash: i % 3 === 0 ? sha256(`old-secret-${i}${suffix}`) : null,
    previous_key_valid_until: i % 3 === 0 ? 1_800_000_000 : null,
    max_queued: i % 4 === 0 ? 1 + (i % 9) : null,
    max_running: i % 6 === 0 ? 2 : null,
    daily_execution_seconds: i % 8 === 0 ? 3600 + i : null,
    policy: i % 10 === 0 ? { max_steps: 20 + i, deny_nodes: ['Save*'] } : null,
    webhook_url: i % 12 === 0 ? `https://hooks.example.com/${i}` : null,
  };
}

/** Writes member lines as the table writes a snapshot; resolves the file's path. */
async function writeSnapshot(members: string[]): Promise<string> {
  const path = join(directory, `api_keys-${(fileNumber += 1)}.json`);
  await writeFile(path, `{\n${members.join(',\n')}\n}\n`);
  return path;
}

const memberOf = (record: KeyRecord): string => `${JSON.stringify(record.key_id)}: ${JSON.stringify(record)}`;

describe('key index', () => {
  test('finds every key by id and by each of its hashes, over three threads', async () => {
    const records = Array.from({ length: 3000 }, (_, i) => keyRecord(i));
    const index = await indexKeySnapshot(await writeSnapshot(records.map(memberOf)), EVERY_SIZE);
    assert.ok(index, 'the snapshot is indexed');
    assert.equal(index.size, records.length);
    assert.deepEqual(
      [...index.ids()],
      records.map((r) => r.key_id),
      'ids come in file order',
    );
    for (const record of records) {
      assert.deepEqual(index.get(record.key_id), record);
      assert.equal(index.get(record.key_id), index.get(record.key_id), 'the same object every time');
      for (const hash of keyHashesOf(record)) assert.ok(index.idsBySecondary(hash).includes(record.key_id), `${record.key_id} by ${hash}`);
    }
    assert.deepEqual(
      [...index.members()],
      records.map((r) => [r.key_id, memberOf(r)]),
      'member texts in file order',
    );
    assert.deepEqual(
      [...index.entries()],
      records.map((r) => [r.key_id, r]),
      'records in file order',
    );
    assert.equal(index.get('key-3000'), undefined);
    assert.equal(index.has('no such key'), false);
    assert.deepEqual(index.idsBySecondary(sha256('never issued')), []);
  });

  test('splits the file wherever the shares fall, across a key longer than a share', async () => {
    const records = Array.from({ length: 41 }, (_, i) => (i === 20 ? { ...keyRecord(i), metadata: { notes: 'x'.repeat(300_000) } } : keyRecord(i)));
    const path = await writeSnapshot(records.map(memberOf));
    for (let threads = 1; threads <= 8; threads += 1) {
      const index = await indexKeySnapshot(path, { minBytes: 0, threads });
      assert.ok(index, `indexed over ${threads} threads`);
      assert.deepEqual(
        [...index.ids()],
        records.map((r) => r.key_id),
        `ids in file order over ${threads} threads`,
      );
      for (const record of records) {
        assert.deepEqual(index.get(record.key_id), record);
        for (const hash of keyHashesOf(record)) assert.ok(index.idsBySecondary(hash).includes(record.key_id), `${record.key_id} by ${hash}`);
      }
    }
  });

  test('a key found by hash once is found again without reading the file', async () => {
    const records = Array.from({ length: 200 }, (_, i) => keyRecord(i));
    const path = await writeSnapshot(records.map(memberOf));
    const index = await indexKeySnapshot(path, EVERY_SIZE);
    assert.ok(index);
    const record = records[77]!;
    assert.deepEqual(index.idsBySecondary(record.key_hash), [record.key_id]);
    assert.deepEqual(index.get(record.key_id), record);
    // Emptied in place (the same file, unlike a snapshot renamed over it): a read of it would now fail.
    await truncate(path, 0);
    assert.deepEqual(index.idsBySecondary(record.key_hash), [record.key_id]);
    assert.deepEqual(index.get(record.key_id), record);
  });

  test('reads ASCII and non-ASCII stretches of a file alike, and a line longer than a read', async () => {
    const asciiKey = (i: number): KeyRecord => ({ ...keyRecord(i), name: `Key ${i}`, metadata: { team: i % 7 } });
    const records = Array.from({ length: 2000 }, (_, i) =>
      i % 500 === 250 ? keyRecord(i) : i === 1200 ? { ...asciiKey(i), metadata: { notes: 'y'.repeat(200_000) } } : asciiKey(i),
    );
    const path = await writeSnapshot(records.map(memberOf));
    for (const threads of [1, 3]) {
      const index = await indexKeySnapshot(path, { minBytes: 0, threads });
      assert.ok(index, `indexed over ${threads} threads`);
      assert.deepEqual(
        [...index.members()],
        records.map((r) => [r.key_id, memberOf(r)]),
        `member texts in file order over ${threads} threads`,
      );
      for (const record of records) {
        assert.deepEqual(index.get(record.key_id), record);
        for (const hash of keyHashesOf(record)) assert.ok(index.idsBySecondary(hash).includes(record.key_id), `${record.key_id} by ${hash}`);
      }
    }
  });

  test('reads keys from the file it indexed after a new snapshot is renamed over it', async () => {
    const records = Array.from({ length: 200 }, (_, i) => keyRecord(i));
    const path = await writeSnapshot(records.map(memberOf));
    const index = await indexKeySnapshot(path, EVERY_SIZE);
    assert.ok(index);
    const replacement = await writeSnapshot(records.map((r) => memberOf({ ...r, name: 'replaced' })));
    await rename(replacement, path);
    for (const record of records) assert.deepEqual(index.get(record.key_id), record, 'the key as the indexed file has it');
    assert.deepEqual(
      [...index.members()].map(([, text]) => text),
      records.map(memberOf),
    );
  });

  test('leaves small files, other layouts, bad keys and repeated ids to the plain reading', async () => {
    const members = Array.from({ length: 50 }, (_, i) => memberOf(keyRecord(i)));
    const cases: Array<[string, string]> = [
      [
        'pretty-printed',
        JSON.stringify(Object.fromEntries(members.map((m) => [m.slice(1, m.indexOf('"', 1)), JSON.parse(m.slice(m.indexOf(': ') + 2))])), null, 2),
      ],
      ['an id twice', `{\n${[...members, members[3]!].join(',\n')}\n}\n`],
      ['a bad key_hash near the end', `{\n${[...members, memberOf({ ...keyRecord(99), key_hash: 'abc' })].join(',\n')}\n}\n`],
      ['no closing brace', `{\n${members.join(',\n')}\n`],
      ['a trailing comma', `{\n${members.join(',\n')},\n}\n`],
      ['an escaped id', `{\n${[...members, `"key\\u002d50": ${JSON.stringify(keyRecord(50))}`].join(',\n')}\n}\n`],
    ];
    for (const [what, text] of cases) {
      const path = join(directory, `odd-${(fileNumber += 1)}.json`);
      await writeFile(path, text);
      assert.equal(await indexKeySnapshot(path, EVERY_SIZE), null, what);
    }
    assert.equal(await indexKeySnapshot(await writeSnapshot(members), { threads: 3 }), null, 'a file below the default size');
  });

  test('records with changes on top behave as a Map of the same records', async () => {
    const base = Array.from({ length: 40 }, (_, i) => keyRecord(i));
    const index = await indexKeySnapshot(await writeSnapshot(base.map(memberOf)), EVERY_SIZE);
    assert.ok(index);
    const step = fc.oneof(
      fc.record({ op: fc.constant('set' as const), i: fc.nat(59), version: fc.nat(3) }),
      fc.record({ op: fc.constant('delete' as const), i: fc.nat(59) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const records = new IndexedRecords<KeyRecord>(index, keyHashesOf);
        const model = new Map(base.map((r) => [r.key_id, r]));
        for (const s of steps) {
          const id = keyRecord(s.i).key_id;
          if (s.op === 'set') {
            const value = { ...keyRecord(s.i, `-v${s.version}`), key_id: id };
            records.set(id, value);
            model.set(id, value);
          } else {
            assert.equal(records.delete(id), model.delete(id), `delete ${id}`);
          }
        }
        assert.equal(records.size, model.size);
        const sorted = (entries: Iterable<[string, KeyRecord]>): Array<[string, KeyRecord]> => [...entries].sort(([a], [b]) => a.localeCompare(b));
        assert.deepEqual(sorted(records.entries()), sorted(model.entries()));
        assert.deepEqual(
          [...records.ids()],
          [...records.entries()].map(([id]) => id),
          'the ids alone, in the order of the entries',
        );
        assert.deepEqual(
          [...records.members((record) => JSON.stringify(record))]
            .map((m) => JSON.parse(`{${m}}`) as Record<string, KeyRecord>)
            .sort((a, b) => Object.keys(a)[0]!.localeCompare(Object.keys(b)[0]!)),
          sorted(model.entries()).map(([id, r]) => ({ [id]: r })),
        );
        for (let i = 0; i < 60; i += 1) {
          for (const version of ['', '-v0', '-v1', '-v2', '-v3']) {
            for (const hash of [sha256(`secret-${i}${version}`), sha256(`old-secret-${i}${version}`)]) {
              const expected = [...model.values()].find((r) => keyHashesOf(r).includes(hash));
              assert.deepEqual(records.findBySecondary(hash), expected, `hash of key ${i}${version}`);
            }
          }
        }
      }),
      { numRuns: 150 },
    );
  });
});
