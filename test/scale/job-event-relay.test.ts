// The job-event relay on real PostgreSQL: relays of two processes on one database pass events in order, never back to their sender, and refuse what one notification cannot carry.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MAX_PAYLOAD_BYTES, MAX_PENDING_EVENTS, type JobEventRelay, type RelayedJobEvent } from '../../src/events/job-event-relay.js';
import { CHANNELS } from '../../src/store/postgres/migrations.js';
import { openJobEventRelay, PostgresDatabase } from '../../src/store/postgres/index.js';
import { waitFor } from '../helpers/wait-for.js';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';

const fresh = await freshPostgresDatabase();

describe('job-event relay on PostgreSQL', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  const databases: PostgresDatabase[] = [];
  const relays: JobEventRelay[] = [];
  /** What each relay received, by relay. */
  const received = new Map<JobEventRelay, RelayedJobEvent[]>();

  /** A relay on its own connection to the database, as another process has, keeping what it receives. */
  async function openRelay(): Promise<JobEventRelay> {
    const db = await PostgresDatabase.open({ url: database.url });
    databases.push(db);
    const relay = await openJobEventRelay(db);
    relays.push(relay);
    const events: RelayedJobEvent[] = [];
    received.set(relay, events);
    relay.receive((event) => events.push(event));
    return relay;
  }

  let a: JobEventRelay;
  let b: JobEventRelay;
  before(async () => {
    a = await openRelay();
    b = await openRelay();
  });
  after(async () => {
    for (const relay of relays) relay.close();
    await Promise.all(databases.map((db) => db.close()));
    await database.drop();
  });

  /** Empties what every relay received so far. */
  const forget = (): void => {
    for (const events of received.values()) events.length = 0;
  };

  test('a burst reaches the other relay whole and in order, identical events included, and none comes back to its sender', async () => {
    forget();
    const sent: RelayedJobEvent[] = Array.from({ length: 500 }, (_, i) => ({
      keyId: `key-${i % 3}`,
      clientId: i % 5 === 0 ? null : 'client',
      // Pairs of identical events: PostgreSQL would fold identical notifications of one transaction into one.
      text: JSON.stringify({ type: 'progress', data: { value: Math.floor(i / 2), prompt_id: 'p' } }),
    }));
    for (const event of sent) assert.equal(a.publish(event), 'queued');
    await waitFor(() => received.get(b)!.length >= sent.length, 'the burst at the other relay', 10_000);
    assert.deepEqual(received.get(b), sent);
    // Every process hears notifications in commit order: once b's answer is back at a, a's own ones were heard before it.
    const answer = { keyId: 'key-0', clientId: 'client', text: '{"type":"executing","data":{"node":null}}' };
    assert.equal(b.publish(answer), 'queued');
    await waitFor(() => received.get(a)!.length > 0, "b's event at a");
    assert.deepEqual(received.get(a), [answer], 'a got none of its own events back');
    assert.equal(received.get(b)!.length, sent.length, 'b got none of its own back');
  });

  test('an event as long as one notification carries is relayed; one byte more is not', async () => {
    forget();
    const c = await openRelay();
    const header = `${JSON.stringify([c.origin, 0, 'key', 'client'])}\n`;
    const fits = 'x'.repeat(MAX_PAYLOAD_BYTES - Buffer.byteLength(header));
    // Counted in bytes: one two-byte character makes it one byte too long.
    assert.equal(c.publish({ keyId: 'key', clientId: 'client', text: `é${fits.slice(1)}` }), 'too_large');
    assert.equal(c.publish({ keyId: 'key', clientId: 'client', text: fits }), 'queued');
    assert.equal(c.publish({ keyId: 'key', clientId: 'client', text: `${fits}x` }), 'too_large');
    await waitFor(() => received.get(a)!.length > 0 && received.get(b)!.length > 0, 'the longest event at a and b');
    assert.deepEqual(received.get(b), [{ keyId: 'key', clientId: 'client', text: fits }]);
    assert.deepEqual(received.get(a), received.get(b));
  });

  test('past the backlog, events are refused rather than queued without bound', async () => {
    forget();
    const outcomes = Array.from({ length: MAX_PENDING_EVENTS + 2 }, (_, i) => a.publish({ keyId: 'key', clientId: null, text: `{"n":${i}}` }));
    // The first is sent at once; the next MAX_PENDING_EVENTS wait for it; the last is refused.
    assert.equal(outcomes.filter((o) => o === 'queued').length, MAX_PENDING_EVENTS + 1);
    assert.equal(outcomes.at(-1), 'backlog_full');
    await waitFor(() => received.get(b)!.length >= MAX_PENDING_EVENTS + 1, 'the queued events at b', 10_000);
    assert.deepEqual(
      received.get(b)!.map((event) => event.text),
      Array.from({ length: MAX_PENDING_EVENTS + 1 }, (_, i) => `{"n":${i}}`),
    );
  });

  test('notifications on the channel that are not relay messages are ignored', async () => {
    forget();
    await databases[0]!.notify(CHANNELS.jobEvents, ['no header', '[1,2]\n{}', '["x",0,5,null]\n{}', '["x",0,"key",7]\n{}', 'not json\n{}']);
    const valid = { keyId: 'key', clientId: 'client', text: '{"type":"status"}' };
    a.publish(valid);
    await waitFor(() => received.get(b)!.length > 0, 'the valid event at b');
    assert.deepEqual(received.get(b), [valid]);
  });
});
