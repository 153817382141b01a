// Unit tests of the scheduler's count of jobs on their way to a backend, against a registry that counts a job before its write is durable.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { Backend } from '../../src/jobs/backend.js';
import { JobScheduler } from '../../src/jobs/scheduler.js';
import { createLogger } from '../../src/log/logger.js';
import { FileJobStore } from '../../src/store/file/file-job-store.js';
import type { JobRecord } from '../../src/store/types.js';
import { jobRecord } from '../helpers/job-record.js';
import { waitFor } from '../helpers/wait-for.js';

const BACKEND = { name: 'gpu0', weight: 1, accepting: () => true, isDown: () => false } as Backend;

/** A scheduler over one backend's worth of options: no key has quotas, the clock stands at 1. */
function schedulerOf(backends: Backend[], jobs: FileJobStore, depth: number): JobScheduler {
  return new JobScheduler({ backends, jobs, depth, keyOf: () => undefined, budgetSpent: () => false, log: createLogger('silent'), now: () => 1 });
}

/**
 * A backend whose ComfyUI queues every prompt sent to it (its prompt_id noted in `sent`) and answers, once
 * `answered` resolves, with the id `answerId` gives.
 */
function queueingBackend(sent: string[], answerId: (id: string) => string, answered: Promise<void> = Promise.resolve()): Backend {
  return {
    ...BACKEND,
    events: { expectAnswer: () => () => undefined, answered: () => undefined, messagesReceived: 0, promptAccepted: () => undefined },
    proxy: {
      fetch: async (_req: unknown, overrides: { body: string }) => {
        const id = (JSON.parse(overrides.body) as { prompt_id: string }).prompt_id;
        sent.push(id);
        await answered;
        return { status: 200, headers: {}, body: Buffer.from(JSON.stringify({ prompt_id: answerId(id) })) };
      },
    },
  } as unknown as Backend;
}

/** A held job of alice whose request is kept to be sent. */
function heldJob(id: string): JobRecord {
  return jobRecord(id, { status: 'held', backend: '', upstream_id: null, request: { body: { prompt_id: id, prompt: {} }, headers: {} } });
}

function sentJob(id: string): JobRecord {
  return jobRecord(id, { backend: BACKEND.name });
}

describe('JobScheduler slots', () => {
  let dir: string;
  let jobs: FileJobStore;
  let scheduler: JobScheduler;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-scheduler-'));
    jobs = new FileJobStore({ directory: dir });
    await jobs.open();
    scheduler = schedulerOf([BACKEND], jobs, 2);
  });
  afterEach(async () => {
    scheduler.close();
    await jobs.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a job being recorded counts once: in the registry as soon as it is there, not also as on its way', async () => {
    const first = scheduler.takeSlotNow('alice', null, 'a');
    assert.ok(first);
    const recording = jobs.create(sentJob('a'));
    assert.equal(jobs.sentTo(BACKEND.name), 1, 'the registry counts it before its write is durable');
    const second = scheduler.takeSlotNow('alice', null, 'b');
    assert.ok(second, 'one job on the backend, depth 2: room for another');
    assert.equal(scheduler.takeSlotNow('alice', null, 'c'), undefined, 'and no more');
    await recording;
    scheduler.sent(first);
    scheduler.sent(second);
  });

  test('a job recorded under the id ComfyUI answered with counts once too', async () => {
    const slot = scheduler.takeSlotNow('alice', null, 'sent-id')!;
    slot.jobId = 'comfy-id';
    const recording = jobs.create(sentJob('comfy-id'));
    const second = scheduler.takeSlotNow('alice', null, 'b');
    assert.ok(second);
    assert.equal(scheduler.takeSlotNow('alice', null, 'c'), undefined);
    await recording;
    scheduler.sent(slot);
    scheduler.sent(second);
  });

  test('restore queues the held jobs of a large registry a slice per turn of the event loop, oldest first', async () => {
    const ids = Array.from({ length: 4500 }, (_, i) => `held-${i}`);
    await Promise.all(ids.map((id, i) => jobs.create(jobRecord(id, { status: 'held', backend: '', upstream_id: null, admitted_at: 1 + i }))));
    const full = { ...BACKEND, accepting: () => false };
    const restoring = schedulerOf([full], jobs, 2);
    try {
      const restored = restoring.restore();
      const queuedAtOnce = ids.filter((id) => restoring.position(id) !== undefined).length;
      assert.ok(queuedAtOnce > 0 && queuedAtOnce < ids.length, `a first slice is queued at once, the rest later (${queuedAtOnce} at once)`);
      restoring.hold(jobRecord('admitted-meanwhile', { status: 'held', backend: '', upstream_id: null, admitted_at: 10_000 }));
      // Cancelled after the first slice was read: a later slice no longer finds it held.
      const cancelled = ids[ids.length - 2]!;
      await jobs.update(cancelled, { status: 'cancelled', finished_at: 2 }, { ifStatus: 'held' });
      await restored;
      const stillHeld = ids.filter((id) => id !== cancelled);
      assert.deepEqual(
        stillHeld.map((id) => restoring.position(id)),
        stillHeld.map((_, i) => i),
        'every held job queued once, in the order they were admitted',
      );
      assert.equal(restoring.position(cancelled), undefined, 'a job cancelled during the restore is not queued');
      assert.equal(restoring.position('admitted-meanwhile'), stillHeld.length, 'a job admitted while the restore ran goes after the older ones');
    } finally {
      restoring.close();
    }
  });

  test('held jobs released together have their writes under way together, and each is sent once', async () => {
    const sent: string[] = [];
    const backend = queueingBackend(sent, (id) => id);
    let writing = 0;
    let mostAtOnce = 0;
    const counted = Object.create(jobs, {
      update: {
        value: async (...args: Parameters<FileJobStore['update']>) => {
          writing += 1;
          mostAtOnce = Math.max(mostAtOnce, writing);
          try {
            return await jobs.update(...args);
          } finally {
            writing -= 1;
          }
        },
      },
    }) as FileJobStore;
    const ids = ['h1', 'h2', 'h3', 'h4'];
    for (const id of ids) await jobs.create(heldJob(id));
    const releasing = schedulerOf([backend], counted, 3);
    try {
      await releasing.restore();
      await waitFor(() => sent.length >= 3, 'three held jobs sent');
      assert.deepEqual(sent, ['h1', 'h2', 'h3'], 'the three jobs the depth has room for, in order, once each');
      assert.equal(mostAtOnce, 3, 'their held → queued writes were under way at once, not one after another');
      assert.equal(jobs.get('h4')?.status, 'held', 'the fourth waits for room');
    } finally {
      releasing.close();
    }
  });

  test('a released job is told of (onSent) once its POST /prompt is answered and recorded, under the id ComfyUI answered with', async () => {
    let answer = (): void => undefined;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const sent: string[] = [];
    const told: JobRecord[] = [];
    await jobs.create(heldJob('h1'));
    const releasing = new JobScheduler({
      backends: [queueingBackend(sent, (id) => `comfy-${id}`, answered)],
      jobs,
      depth: 2,
      keyOf: () => undefined,
      budgetSpent: () => false,
      onSent: (job) => told.push(job),
      log: createLogger('silent'),
      now: () => 1,
    });
    try {
      await releasing.restore();
      await waitFor(() => sent.length === 1, 'the held job sent');
      assert.equal(jobs.get('h1')?.status, 'queued', 'released');
      assert.equal(told.length, 0, 'not told while its POST /prompt is on its way');
      answer();
      await waitFor(() => told.length === 1, 'told of the job once answered');
      assert.equal(told[0]!.id, 'h1');
      assert.equal(told[0]!.status, 'queued');
      assert.equal(told[0]!.upstream_id, 'comfy-h1', 'with the id ComfyUI answered with recorded');
    } finally {
      releasing.close();
    }
  });
});
