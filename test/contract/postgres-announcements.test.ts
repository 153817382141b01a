// What the PostgreSQL schema announces to replicas: each row inserted or changed, and nothing for an insert that ON CONFLICT skipped.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PostgresDatabase } from '../../src/store/postgres/index.js';
import { CHANNELS } from '../../src/store/postgres/migrations.js';
import { adminPool, type FreshDatabase, freshPostgresDatabase } from './backends.js';
import { waitFor } from './harness.js';

const fresh = await freshPostgresDatabase();
const END = 'end-of-test';

describe('PostgreSQL change announcements', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  let admin: pg.Pool;
  let listener: pg.Client;
  const heard = new Map<string, string[]>(Object.values(CHANNELS).map((channel) => [channel, []]));

  before(async () => {
    await (await PostgresDatabase.open({ url: database.url })).close();
    admin = adminPool(database.url);
    listener = new pg.Client({ connectionString: database.url });
    await listener.connect();
    listener.on('notification', (n) => heard.get(n.channel)?.push(n.payload ?? ''));
    for (const channel of Object.values(CHANNELS)) await listener.query(`LISTEN ${channel}`);
  });
  after(async () => {
    await listener?.end();
    await admin?.end();
    await database.drop();
  });

  /** What each channel carried up to an end marker sent after everything else (notifications arrive in commit order). */
  async function announcements(): Promise<Record<string, string[]>> {
    for (const channel of Object.values(CHANNELS)) await admin.query('SELECT pg_notify($1, $2)', [channel, END]);
    await waitFor(() => [...heard.values()].every((payloads) => payloads.includes(END)), 5000, 'the end markers');
    return Object.fromEntries([...heard].map(([channel, payloads]) => [channel, payloads.filter((p) => p !== END)]));
  }

  test('inserts and changes are announced; inserts skipped by ON CONFLICT DO NOTHING, and last_used alone, are not', async () => {
    const insertKey = `INSERT INTO api_keys (key_id, name, created_at, rate_limit, key_hash) VALUES ('k1', $1, 1, 10, 'h') ON CONFLICT (key_id) DO NOTHING`;
    await admin.query(insertKey, ['first']);
    await admin.query(insertKey, ['skipped']);
    await admin.query(`UPDATE api_keys SET last_used = 5 WHERE key_id = 'k1'`);
    await admin.query(`UPDATE api_keys SET name = 'renamed' WHERE key_id = 'k1'`);

    const insertSession = `INSERT INTO sessions (id_hash, key_id, created_at, expires_at) VALUES ('s1', $1, 1, 2) ON CONFLICT (id_hash) DO NOTHING`;
    await admin.query(insertSession, ['k1']);
    await admin.query(insertSession, ['k2']);
    await admin.query(`UPDATE sessions SET revoked = true WHERE id_hash = 's1'`);

    const claim = `INSERT INTO ownership (kind, id, key_id, at) VALUES ($1, $2, $3, $4) ON CONFLICT (kind, id) DO NOTHING`;
    await admin.query(claim, ['prompt', 'p1', 'alice', 100.5]);
    await admin.query(claim, ['prompt', 'p1', 'bob', 200.5]);
    await admin.query(`UPDATE ownership SET outputs_recorded = true WHERE kind = 'prompt' AND id = 'p1'`);
    const setUser = `INSERT INTO ownership (kind, id, key_id, at, comfy_user) VALUES ('comfy-user', 'alice', 'alice', $1, $2)
      ON CONFLICT (kind, id) DO UPDATE SET comfy_user = excluded.comfy_user, at = excluded.at`;
    await admin.query(setUser, [300, 'cg_a']);
    await admin.query(setUser, [400, 'cg_b']);
    const longId = `output/${'x'.repeat(9000)}.png`;
    await admin.query(claim, ['file', longId, 'alice', 500]);
    await admin.query(claim, ['file', longId, 'bob', 600]);

    const seq = (await admin.query<{ seq: string }>(`SELECT seq FROM ownership WHERE kind = 'file'`)).rows[0]!.seq;
    const heardNow = await announcements();
    assert.deepEqual(heardNow[CHANNELS.keys], ['k1', 'k1'], 'the key: inserted, renamed');
    assert.deepEqual(heardNow[CHANNELS.sessions], ['s1', 's1'], 'the session: inserted, revoked');
    assert.deepEqual(
      heardNow[CHANNELS.ownership]!.map((payload) => JSON.parse(payload) as unknown),
      [
        { k: 'prompt', i: 'p1', o: 'alice', a: 100.5, r: false, u: null },
        { k: 'prompt', i: 'p1', o: 'alice', a: 100.5, r: true, u: null },
        { k: 'comfy-user', i: 'alice', o: 'alice', a: 300, r: false, u: 'cg_a' },
        { k: 'comfy-user', i: 'alice', o: 'alice', a: 400, r: false, u: 'cg_b' },
        { seq: Number(seq) },
      ],
      'ownership: each record as written, the long one by the seq it has in the table',
    );
  });
});
