// Ownership across PostgreSQL replicas: a claim lost to another key is never taken for the owner, whatever is announced; a key's claims past its share are forgotten everywhere, unless renewed meanwhile.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import pg from 'pg';
import { PostgresDatabase, PostgresOwnershipStore } from '../../src/store/postgres/index.js';
import { CHANNELS } from '../../src/store/postgres/migrations.js';
import { adminPool, type FreshDatabase, freshPostgresDatabase } from './backends.js';
import { waitFor } from './harness.js';

const fresh = await freshPostgresDatabase();

describe('PostgresOwnershipStore replicas on one database', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  let admin: pg.Pool;
  let replicas: PostgresOwnershipStore[] = [];
  let markers = 0;

  before(async () => {
    await (await PostgresDatabase.open({ url: database.url })).close();
    admin = adminPool(database.url);
  });
  after(async () => {
    await admin?.end();
    await database.drop();
  });
  beforeEach(async () => {
    await admin.query('TRUNCATE ownership RESTART IDENTITY');
    replicas = [];
    for (let i = 0; i < 2; i += 1) {
      // A key's share of 3 claims per kind (renewed once 0.2 s old), for the test of claims past it; the others stay well within it.
      const store = new PostgresOwnershipStore({
        database: await PostgresDatabase.open({ url: database.url }),
        retention: { keyShare: 3, newestPromptsKept: 1, retentionSeconds: 6 },
      });
      await store.open();
      replicas.push(store);
    }
  });
  afterEach(async () => {
    await Promise.all(replicas.map((store) => store.close()));
  });

  /**
   * Resolves once every replica has applied all that was announced before the call: a marker claim is
   * announced after it (notifications arrive in commit order), so once a replica holds the marker and
   * its feed is idle, the earlier announcements are applied too.
   */
  async function drained(): Promise<void> {
    const marker = `marker-${(markers += 1)}`;
    await admin.query(`INSERT INTO ownership (kind, id, key_id, at) VALUES ('file', $1, 'marker', $2)`, [marker, Date.now() / 1000]);
    for (const [i, store] of replicas.entries()) {
      await waitFor(() => store.ownerOf('file', marker) === 'marker', 5000, `replica ${i} to hear of ${marker}`);
      await store.settled();
    }
  }

  /** Announces an ownership record as the trigger would, without the table changing. */
  async function announce(kind: string, id: string, keyId: string): Promise<void> {
    const payload = JSON.stringify({ k: kind, i: id, o: keyId, a: Date.now() / 1000, r: false, u: null });
    await admin.query('SELECT pg_notify($1, $2)', [CHANNELS.ownership, payload]);
  }

  test('after simultaneous claims of one id through two replicas, both name the first writer, and the loser sees nothing of it', async () => {
    const [a, b] = replicas as [PostgresOwnershipStore, PostgresOwnershipStore];
    const rounds = [
      { kind: 'prompt', id: 'p-race' },
      { kind: 'client', id: 'c-race' },
      { kind: 'file', id: 'output/race.png' },
    ] as const;
    const winners: string[] = [];
    for (const { kind, id } of rounds) {
      // Both claims start before either replica knows the id, so both are written and one is skipped.
      const owners = await Promise.all([a.claim(kind, id, 'alice'), b.claim(kind, id, 'bob')]);
      assert.equal(owners[0], owners[1], `${kind} ${id}: the claims resolved ${owners.join(' and ')}`);
      winners.push(owners[0]);
    }
    await drained();
    for (const [r, { kind, id }] of rounds.entries()) {
      const winner = winners[r]!;
      const loser = winner === 'alice' ? 'bob' : 'alice';
      const { rows } = await admin.query<{ key_id: string }>('SELECT key_id FROM ownership WHERE kind = $1 AND id = $2', [kind, id]);
      assert.equal(rows[0]?.key_id, winner, `${kind} ${id}: the table holds the first writer`);
      assert.deepEqual(
        replicas.map((store) => store.ownerOf(kind, id)),
        [winner, winner],
        `${kind} ${id}: both replicas name ${winner}`,
      );
      if (kind === 'prompt') {
        for (const store of replicas) {
          assert.deepEqual(
            store.recentPrompts(loser, 10).map((p) => p.promptId),
            [],
            `the prompt is not among ${loser}'s`,
          );
        }
      }
    }
  });

  test('an announcement naming another owner than the replica holds is checked against the table, not believed', async () => {
    const [a, b] = replicas as [PostgresOwnershipStore, PostgresOwnershipStore];
    assert.equal(await a.claim('prompt', 'p1', 'alice'), 'alice');
    assert.equal(await a.claim('prompt', 'p2', 'alice'), 'alice');
    assert.equal(await a.claim('prompt', 'p3', 'alice'), 'alice');
    await drained();
    assert.equal(b.ownerOf('prompt', 'p1'), 'alice');

    // p1: the table still says alice. p2: the row was replaced by bob's. p3: the row is gone.
    await announce('prompt', 'p1', 'mallory');
    await admin.query(`DELETE FROM ownership WHERE kind = 'prompt' AND id IN ('p2', 'p3')`);
    await admin.query(`INSERT INTO ownership (kind, id, key_id, at) VALUES ('prompt', 'p2', 'bob', $1)`, [Date.now() / 1000]);
    await announce('prompt', 'p3', 'mallory');
    await drained();

    for (const [i, store] of replicas.entries()) {
      assert.equal(store.ownerOf('prompt', 'p1'), 'alice', `replica ${i}: p1 is still alice's`);
      assert.equal(store.ownerOf('prompt', 'p2'), 'bob', `replica ${i}: p2 is bob's, as the table says`);
      assert.equal(store.ownerOf('prompt', 'p3'), undefined, `replica ${i}: p3 is no one's`);
      assert.deepEqual(store.recentPrompts('mallory', 10), [], `replica ${i}: mallory owns nothing`);
      assert.deepEqual(
        store.recentPrompts('alice', 10).map((p) => p.promptId),
        ['p1'],
        `replica ${i}: alice keeps p1 only`,
      );
    }
  });

  test("a key's claims past its share, forgotten through one replica, are forgotten by the others; one renewed meanwhile through another replica is kept", async () => {
    const [a, b] = replicas as [PostgresOwnershipStore, PostgresOwnershipStore];
    for (const id of ['c0', 'c1', 'c2']) assert.equal(await a.claim('client', id, 'alice'), 'alice');
    assert.equal(await b.claim('client', 'bob-c0', 'bob'), 'bob');
    await drained();
    // c0 renewed through a replica whose announcement has not reached the others yet (none is made here).
    const client = await admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(`UPDATE ownership SET at = $1 WHERE kind = 'client' AND id = 'c0'`, [Date.now() / 1000]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    assert.equal(await a.claim('client', 'c3', 'alice'), 'alice', 'past her share, alice still claims');
    assert.equal(await a.claim('client', 'c4', 'alice'), 'alice');
    await drained();
    const { rows } = await admin.query<{ id: string }>(`SELECT id FROM ownership WHERE kind = 'client' ORDER BY id`);
    assert.deepEqual(
      rows.map((row) => row.id),
      ['bob-c0', 'c0', 'c2', 'c3', 'c4'],
      'c1, the oldest unrenewed, is deleted; the renewed c0 is not',
    );
    assert.equal(b.ownerOf('client', 'c1'), undefined, 'the other replica forgot c1');
    assert.equal(b.ownerOf('client', 'c0'), 'alice', 'and keeps the renewed c0');
    for (const [i, store] of replicas.entries()) assert.equal(store.ownerOf('client', 'bob-c0'), 'bob', `replica ${i}: bob's claim is kept`);
    assert.equal(await a.claim('client', 'c0', 'bob'), 'alice', 'the renewed claim still answers its owner, from the table, on the replica that let it go');
  });
});
