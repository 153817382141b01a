// Unit tests of the held-job queue's release order: round-robin across keys, FIFO within a key, admin `front` first.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FairQueue } from '../../src/jobs/fair-queue.js';

/** Releases every job the queue holds (all keys may release) and returns their ids in release order. */
function drain(queue: FairQueue, mayRelease: (keyId: string) => boolean = () => true): string[] {
  const order: string[] = [];
  for (let next = queue.next(mayRelease); next; next = queue.next(mayRelease)) {
    queue.remove(next.id);
    order.push(next.id);
  }
  return order;
}

/** Admission times in the order the jobs are queued, as jobs admitted one after another have them. */
let clock = 0;
const tick = (): number => (clock += 1);

describe('FairQueue', () => {
  test('keys take turns; each key its own jobs first in, first out', () => {
    const queue = new FairQueue();
    for (let i = 1; i <= 4; i += 1) queue.add({ id: `a${i}`, keyId: 'a', front: false, admittedAt: tick() });
    queue.add({ id: 'b1', keyId: 'b', front: false, admittedAt: tick() });
    queue.add({ id: 'c1', keyId: 'c', front: false, admittedAt: tick() });
    queue.add({ id: 'c2', keyId: 'c', front: false, admittedAt: tick() });
    assert.deepEqual(drain(queue), ['a1', 'b1', 'c1', 'a2', 'c2', 'a3', 'a4']);
  });

  test('the key that last sent a job without waiting goes last in the next round', () => {
    const queue = new FairQueue();
    queue.tookTurn('a');
    queue.add({ id: 'a2', keyId: 'a', front: false, admittedAt: tick() });
    queue.add({ id: 'a3', keyId: 'a', front: false, admittedAt: tick() });
    queue.add({ id: 'b1', keyId: 'b', front: false, admittedAt: tick() });
    assert.deepEqual(drain(queue), ['b1', 'a2', 'a3']);
  });

  test("a key whose last held job was released keeps its place: the jobs it queues next wait for the other keys' turns", () => {
    const alone = new FairQueue();
    alone.add({ id: 'a1', keyId: 'a', front: false, admittedAt: tick() });
    assert.deepEqual(drain(alone), ['a1']);
    alone.add({ id: 'a2', keyId: 'a', front: false, admittedAt: tick() });
    alone.add({ id: 'a3', keyId: 'a', front: false, admittedAt: tick() });
    alone.add({ id: 'b1', keyId: 'b', front: false, admittedAt: tick() });
    assert.deepEqual(drain(alone), ['b1', 'a2', 'a3']);

    const two = new FairQueue();
    for (const id of ['a1', 'b1', 'b2']) two.add({ id, keyId: id[0]!, front: false, admittedAt: tick() });
    const first = two.next(() => true)!;
    two.remove(first.id);
    assert.equal(first.id, 'a1');
    two.add({ id: 'a2', keyId: 'a', front: false, admittedAt: tick() });
    assert.deepEqual(drain(two), ['b1', 'a2', 'b2']);
  });

  test('positions match the release order', () => {
    const queue = new FairQueue();
    const ids = ['a1', 'a2', 'a3', 'b1', 'b2', 'c1'];
    for (const id of ids) queue.add({ id, keyId: id[0]!, front: false, admittedAt: tick() });
    queue.add({ id: 'f1', keyId: 'admin', front: true, admittedAt: tick() });
    const positions = new Map([...ids, 'f1'].map((id) => [id, queue.position(id)]));
    const order = drain(queue);
    for (const [index, id] of order.entries()) assert.equal(positions.get(id), index, `position of ${id}`);
    assert.equal(order[0], 'f1', 'an admin front job goes first');
  });

  test('a key that may not release (max_running) is skipped without losing its turn order', () => {
    const queue = new FairQueue();
    queue.add({ id: 'a1', keyId: 'a', front: false, admittedAt: tick() });
    queue.add({ id: 'a2', keyId: 'a', front: false, admittedAt: tick() });
    queue.add({ id: 'b1', keyId: 'b', front: false, admittedAt: tick() });
    assert.deepEqual(
      drain(queue, (keyId) => keyId !== 'a'),
      ['b1'],
    );
    assert.equal(queue.size, 2);
    assert.deepEqual(drain(queue), ['a1', 'a2']);
  });

  test('removing a held job (cancelled) keeps the others in order', () => {
    const queue = new FairQueue();
    for (const id of ['a1', 'b1', 'a2', 'b2']) queue.add({ id, keyId: id[0]!, front: false, admittedAt: tick() });
    assert.equal(queue.remove('a1'), true);
    assert.equal(queue.remove('a1'), false);
    assert.equal(queue.position('a1'), undefined);
    assert.deepEqual(drain(queue), ['a2', 'b1', 'b2']);
  });

  test('a job older than those queued before it (restored after a restart, or put back) goes in its place by admission', () => {
    const queue = new FairQueue();
    queue.add({ id: 'a-new', keyId: 'a', front: false, admittedAt: 30 });
    queue.add({ id: 'a-old', keyId: 'a', front: false, admittedAt: 10 });
    queue.add({ id: 'a-mid', keyId: 'a', front: false, admittedAt: 20 });
    queue.add({ id: 'f-new', keyId: 'admin', front: true, admittedAt: 40 });
    queue.add({ id: 'f-old', keyId: 'admin', front: true, admittedAt: 5 });
    assert.deepEqual(drain(queue), ['f-old', 'f-new', 'a-old', 'a-mid', 'a-new']);
  });
});
