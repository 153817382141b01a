// Unit tests of UsageMergeThread: one thread serves merge after merge, survives a merge that fails, and stops when told.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setImmediate } from 'node:timers/promises';
import { UsageMergeThread, type UsageMerge } from '../../src/store/file/usage-merge.js';
import type { UsageRecord } from '../../src/store/types.js';

const NOW = Date.UTC(2024, 4, 1, 10) / 1000;

function record(keyId: string, timestamp: number): UsageRecord {
  return { key_id: keyId, endpoint: '/prompt', timestamp, duration: 0.5, success: true, metadata: { method: 'POST', status: 200 } };
}

describe('UsageMergeThread', () => {
  let dir: string;
  let thread: UsageMergeThread;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-merge-'));
    thread = new UsageMergeThread();
  });

  afterEach(async () => {
    thread.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Sets a journal aside holding `records` and resolves the merge that takes it into api_usage.json. */
  async function journalAside(name: string, records: UsageRecord[]): Promise<UsageMerge> {
    const asidePath = join(dir, name);
    await writeFile(asidePath, [JSON.stringify({ journal_id: name }), ...records.map((r) => JSON.stringify(r))].join('\n') + '\n');
    return { usagePath: join(dir, 'api_usage.json'), asidePath, retentionDays: 100_000, now: NOW };
  }

  const recordsInFile = async (): Promise<UsageRecord[]> =>
    (JSON.parse(await readFile(join(dir, 'api_usage.json'), 'utf8')) as { records: UsageRecord[] }).records;

  test('one thread merges journal after journal, and stops when told', async () => {
    assert.equal(thread.threadId, null, 'no thread before the first merge');
    await thread.merge(await journalAside('first', [record('a', NOW)]));
    const first = thread.threadId;
    assert.ok(first !== null);
    await thread.merge(await journalAside('second', [record('b', NOW + 1)]));
    assert.equal(thread.threadId, first, 'the second merge ran on the same thread');
    assert.deepEqual(await recordsInFile(), [record('a', NOW), record('b', NOW + 1)]);
    thread.stop();
    assert.equal(thread.threadId, null);
    await thread.merge(await journalAside('third', [record('c', NOW + 2)]));
    assert.notEqual(thread.threadId, first, 'a merge after stop() starts a new thread');
    assert.equal((await recordsInFile()).length, 3);
  });

  test('a thread that stops between merges is dropped, and the next merge starts another', async () => {
    await thread.merge(await journalAside('first', [record('a', NOW)]));
    const first = thread.threadId;
    // Stopped from outside, as a crash of the thread would: no merge is waiting for it.
    await (thread as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    await setImmediate();
    assert.equal(thread.threadId, null);
    await thread.merge(await journalAside('second', [record('b', NOW + 1)]));
    assert.notEqual(thread.threadId, first);
    assert.deepEqual(await recordsInFile(), [record('a', NOW), record('b', NOW + 1)]);
  });

  test('a merge that fails rejects with its error, and the thread serves the next one', async () => {
    await thread.merge(await journalAside('first', [record('a', NOW)]));
    const first = thread.threadId;
    const broken = await journalAside('broken', []);
    await writeFile(broken.asidePath, '{"journal_id": "broken"}\nnot json\n');
    await assert.rejects(thread.merge(broken), /line 2 is not JSON/);
    assert.equal(thread.threadId, first);
    await thread.merge(await journalAside('after', [record('b', NOW + 1)]));
    assert.deepEqual(await recordsInFile(), [record('a', NOW), record('b', NOW + 1)]);
  });
});
