// A connection that the server ends while a transaction holds it (a restart, a forced drop) fails that transaction and nothing else.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PostgresDatabase } from '../../src/store/postgres/index.js';
import { freshPostgresDatabase, type FreshDatabase } from './backends.js';

const fresh = await freshPostgresDatabase();

describe('PostgreSQL connection lost inside a transaction', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  let database: PostgresDatabase;
  before(async () => {
    database = await PostgresDatabase.open({ url: (fresh as FreshDatabase).url });
  });
  after(async () => {
    await database?.close();
    await (fresh as FreshDatabase).drop();
  });

  test('the transaction rejects, the process does not crash, and the next query gets a working connection', async () => {
    const outcome = database.transaction(async (client) => {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await database.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      // Between two queries the client is idle: the server's goodbye arrives as an error event.
      await sleep(300);
      await client.query('SELECT 1');
    });
    await assert.rejects(outcome);
    for (let i = 0; i < 5; i += 1) assert.deepEqual((await database.query<{ one: number }>('SELECT 1 AS one')).rows, [{ one: 1 }]);
  });
});
