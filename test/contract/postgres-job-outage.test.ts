// Jobs written while PostgreSQL cannot be reached: answered from memory at once, written in order once it answers, the table winning a conflict.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import pg from 'pg';
import { isConnectionError, PostgresDatabase, PostgresJobStore } from '../../src/store/postgres/index.js';
import type { JobRecord } from '../../src/store/types.js';
import { startTcpRelay, type TcpRelay } from '../helpers/tcp-relay.js';
import { adminPool, type FreshDatabase, freshPostgresDatabase } from './backends.js';
import { waitFor } from './harness.js';

const fresh = await freshPostgresDatabase();

const NOW = Date.now() / 1000;
let admitted = 0;

/** A job admitted after every job made before it. */
function job(id: string, keyId: string, fields: Partial<JobRecord> = {}): JobRecord {
  return {
    id,
    key_id: keyId,
    client_id: null,
    backend: 'default',
    upstream_id: null,
    status: 'held',
    admitted_at: NOW + (admitted += 1),
    forwarded_at: null,
    started_at: null,
    finished_at: null,
    execution_seconds: null,
    outputs: [],
    error: null,
    request: { body: { prompt: {} }, headers: {} },
    front: false,
    webhook: null,
    ...fields,
  };
}

/** The jobs table as `SELECT` gives it, by id: what matters here of each row. */
interface StoredJob {
  id: string;
  key_id: string;
  status: string;
  upstream_id: string | null;
}

describe('PostgresJobStore while PostgreSQL cannot be reached', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  let admin: pg.Pool;
  let relay: TcpRelay;
  /** The store under test: its connections go through the relay. */
  let cutOff: PostgresJobStore;
  /** Another replica, connected directly: it keeps writing while the first cannot. */
  let other: PostgresJobStore;

  before(async () => {
    await (await PostgresDatabase.open({ url: database.url })).close();
    admin = adminPool(database.url);
    const target = new URL(database.url);
    relay = await startTcpRelay(target.hostname, Number(target.port || 5432));
  });
  after(async () => {
    await relay?.close();
    await admin?.end();
    await database.drop();
  });

  async function openStore(url: string, maxDeferredWrites?: number): Promise<PostgresJobStore> {
    const store = new PostgresJobStore({ database: await PostgresDatabase.open({ url }), ...(maxDeferredWrites ? { maxDeferredWrites } : {}) });
    await store.open();
    return store;
  }

  function relayed(): string {
    const url = new URL(database.url);
    url.hostname = '127.0.0.1';
    url.port = String(relay.port);
    return url.toString();
  }

  beforeEach(async () => {
    await admin.query('TRUNCATE jobs');
    await relay.restore();
    cutOff = await openStore(relayed());
    other = await openStore(database.url);
  });
  afterEach(async () => {
    await relay.restore();
    await Promise.all([cutOff.close(), other.close()]);
  });

  async function stored(): Promise<Map<string, StoredJob>> {
    const { rows } = await admin.query<StoredJob>('SELECT id, key_id, status, upstream_id FROM jobs ORDER BY id');
    return new Map(rows.map((row) => [row.id, row]));
  }

  /** Lets the database be reached again and waits until the store's queued writes are written (by its own retry). */
  async function restored(store: PostgresJobStore): Promise<void> {
    await relay.restore();
    await waitFor(() => store.pendingWrites() === 0, 10_000, 'the queued writes to be written');
  }

  test('create and update are answered from memory, seen by every read, and written in order once the database answers', async () => {
    assert.equal(await cutOff.create(job('sent', 'alice', { status: 'queued', upstream_id: 'sent', request: null })), true);
    assert.equal(await cutOff.create(job('waiting', 'alice')), true);
    await relay.cut();

    const fresh = job('new', 'alice', { client_id: 'c-1' });
    assert.equal(await cutOff.create(fresh), true, 'a new id is taken');
    assert.deepEqual(cutOff.get('new'), fresh);
    assert.equal(await cutOff.create(job('waiting', 'bob')), false, 'an id known here is refused');
    const taken = await cutOff.update('waiting', { status: 'queued' }, { ifStatus: 'held' });
    assert.equal(taken?.status, 'queued');
    assert.equal(await cutOff.update('waiting', { status: 'cancelled' }, { ifStatus: 'held' }), undefined, 'ifStatus is checked against memory');
    assert.equal(await cutOff.update('unknown', { status: 'queued' }), undefined);
    const patch = { status: 'queued' as const, upstream_id: 'comfy-1', forwarded_at: NOW + 1, request: null };
    assert.deepEqual(await cutOff.update('new', patch), { ...fresh, ...patch });
    assert.equal((await cutOff.update('new', { status: 'running', started_at: NOW + 2 }))?.status, 'running');
    const outputs = [{ node: '9', filename: 'a.png', subfolder: '', type: 'output' }];
    assert.equal((await cutOff.update('sent', { status: 'success', finished_at: NOW + 3, outputs }))?.status, 'success');

    assert.equal(cutOff.byUpstreamId('default', 'comfy-1')?.id, 'new');
    assert.deepEqual(
      cutOff.list({ keyId: 'alice', offset: 0, limit: 10 }).map((j) => [j.id, j.status]),
      [
        ['new', 'running'],
        ['waiting', 'queued'],
        ['sent', 'success'],
      ],
    );
    assert.equal(cutOff.count({ statuses: ['queued', 'running'] }), 2);
    assert.deepEqual(
      cutOff
        .active()
        .map((j) => j.id)
        .sort(),
      ['new', 'waiting'],
    );
    assert.equal(cutOff.pendingWrites(), 5, 'one create and four updates are queued');
    assert.deepEqual(
      [...(await stored()).values()].map((row) => [row.id, row.status]),
      [
        ['sent', 'queued'],
        ['waiting', 'held'],
      ],
      'nothing reached the table',
    );
    const memory = cutOff.list({ offset: 0, limit: 10 });

    await restored(cutOff);
    const rows = await stored();
    assert.deepEqual([...rows.keys()], ['new', 'sent', 'waiting']);
    assert.deepEqual(rows.get('new'), { id: 'new', key_id: 'alice', status: 'running', upstream_id: 'comfy-1' });
    assert.equal(rows.get('sent')!.status, 'success');
    assert.equal(rows.get('waiting')!.status, 'queued');
    const { rows: sent } = await admin.query<{ outputs: unknown }>("SELECT outputs FROM jobs WHERE id = 'sent'");
    assert.deepEqual(sent[0]!.outputs, outputs);
    assert.deepEqual(cutOff.list({ offset: 0, limit: 10 }), memory, 'memory is what it was');
    await waitFor(() => other.get('new')?.status === 'running' && other.get('sent')?.status === 'success', 5000, 'the other replica to hear of them');
    assert.equal(other.byUpstreamId('default', 'comfy-1')?.id, 'new');
    assert.deepEqual(other.list({ offset: 0, limit: 10 }), memory);
  });

  test('the table wins what another replica wrote meanwhile: a create that lost its id (with the writes after it), a lost ifStatus, a deleted job', async () => {
    assert.equal(await cutOff.create(job('held', 'alice')), true);
    assert.equal(await cutOff.create(job('gone', 'alice', { status: 'running' })), true);
    await waitFor(() => other.get('held') !== undefined && other.get('gone') !== undefined, 5000, 'the other replica to hear of them');
    await relay.cut();

    const mine = job('x', 'alice');
    assert.equal(await cutOff.create(mine), true);
    assert.equal((await cutOff.update('x', { status: 'queued', upstream_id: 'x-comfy', request: null }))?.upstream_id, 'x-comfy');
    assert.equal((await cutOff.update('x', { status: 'running' }))?.status, 'running');
    assert.equal((await cutOff.update('held', { status: 'queued' }, { ifStatus: 'held' }))?.status, 'queued');
    assert.equal((await cutOff.update('gone', { status: 'success' }))?.status, 'success');
    assert.equal(await cutOff.create(job('y', 'alice')), true, 'a job after them is written all the same');
    assert.equal(cutOff.pendingWrites(), 6);

    const theirs = job('x', 'bob');
    assert.equal(await other.create(theirs), true);
    assert.equal((await other.update('held', { status: 'cancelled' }, { ifStatus: 'held' }))?.status, 'cancelled');
    await admin.query("DELETE FROM jobs WHERE id = 'gone'");

    await restored(cutOff);
    const rows = await stored();
    assert.deepEqual(
      [...rows.values()].map((row) => [row.id, row.key_id, row.status]),
      [
        ['held', 'alice', 'cancelled'],
        ['x', 'bob', 'held'],
        ['y', 'alice', 'held'],
      ],
      "the other replica's writes stand; the writes of the job that lost its id, and the update of the deleted job, are dropped",
    );
    assert.deepEqual(cutOff.get('x'), theirs, "memory holds the other replica's job");
    assert.equal(cutOff.byUpstreamId('default', 'x-comfy'), undefined);
    assert.equal(cutOff.get('held')?.status, 'cancelled');
    assert.equal(cutOff.get('gone'), undefined);
    assert.equal(cutOff.get('y')?.key_id, 'alice');
  });

  test('past the bound a write fails with the connection error; other errors are never queued', async () => {
    await cutOff.close();
    cutOff = await openStore(relayed(), 2);
    await assert.rejects(cutOff.create(job('nul', 'alice', { client_id: 'a\u0000b' })), (error) => !isConnectionError(error));
    assert.equal(cutOff.get('nul'), undefined);
    assert.equal(cutOff.pendingWrites(), 0);

    await relay.cut();
    assert.equal(await cutOff.create(job('a', 'alice')), true);
    assert.equal(await cutOff.create(job('b', 'alice')), true);
    await assert.rejects(cutOff.create(job('c', 'alice')), (error) => isConnectionError(error));
    await assert.rejects(cutOff.update('a', { status: 'queued' }), (error) => isConnectionError(error));
    assert.equal(cutOff.get('c'), undefined);
    assert.equal(cutOff.get('a')?.status, 'held', 'a refused write changes nothing');

    await restored(cutOff);
    assert.deepEqual([...(await stored()).keys()], ['a', 'b']);
    assert.equal((await cutOff.update('a', { status: 'queued' }))?.status, 'queued', 'writes go to the table again');
  });
});
