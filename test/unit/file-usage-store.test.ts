// Unit tests of FileUsageStore: daily totals, durability, compaction and its crash points, retention, the reference's api_usage.json.

import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import fc from 'fast-check';
import { FileUsageStore, type FileUsageStoreOptions } from '../../src/store/file/file-usage-store.js';
import { loadUsageFile, recordLines } from '../../src/store/file/usage-file.js';
import { StoreCorruptError, type DailyTotals, type UsageRecord } from '../../src/store/types.js';

const DAY = 86_400;
/** 2024-05-01T10:00:00Z. */
const MAY_1 = Date.UTC(2024, 4, 1, 10) / 1000;
/** 2024-05-02T00:00:00Z. */
const MIDNIGHT = Date.UTC(2024, 4, 2) / 1000;

/** A usage record in the reference's shape. */
function usage(keyId: string, timestamp: number, status = 200, duration = 1.5): UsageRecord {
  return { key_id: keyId, endpoint: '/api/prompt', timestamp, duration, success: status < 400, metadata: { method: 'POST', status } };
}

/** One day's totals; failures are the requests that did not succeed; job metering is zero unless given. */
function totals(requests: number, successes: number, duration: number, rate_limited = 0, jobs: Partial<DailyTotals> = {}): DailyTotals {
  return { requests, successes, failures: requests - successes, duration, rate_limited, prompts: 0, prompts_run: 0, execution_seconds: 0, outputs: 0, ...jobs };
}

/** The prototype of the file handles of node:fs/promises, whose methods the store's journal uses. */
async function fileHandlePrototype(): Promise<FileHandle> {
  const handle = await open(tmpdir(), 'r');
  await handle.close();
  return Object.getPrototypeOf(handle) as FileHandle;
}

/** Makes the next FileHandle.writeFile write a few bytes, then fail as a full disk would. */
function failNextWrite(prototype: FileHandle): void {
  const write = mock.method(prototype, 'writeFile', async function (this: FileHandle, data: string) {
    write.mock.restore();
    await this.writeFile(data.slice(0, 12));
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  });
}

/** The store's daily totals of a key as a plain object, for deepEqual. */
const daily = (store: FileUsageStore, keyId: string, fromDay = '2000-01-01'): Record<string, DailyTotals> =>
  Object.fromEntries(store.dailyTotals(keyId, fromDay));

/** All requests of a key ever counted, whatever the day. */
const totalRequests = (store: FileUsageStore, keyId: string): number =>
  [...store.dailyTotals(keyId, '2000-01-01').values()].reduce((sum, t) => sum + t.requests, 0);

describe('FileUsageStore', () => {
  let dir: string;
  let usagePath: string;
  let journalPath: string;
  let asidePath: string;
  let opened: FileUsageStore[];

  /** Opens a store on the test directory; it is closed after the test. */
  async function openStore(options: Partial<FileUsageStoreOptions> = {}): Promise<FileUsageStore> {
    const store = new FileUsageStore({ directory: dir, retentionDays: 100_000, flushIntervalMs: 60_000, ...options });
    await store.open();
    opened.push(store);
    return store;
  }

  /** Closes every store opened so far, as a stopped process would. */
  async function closeAll(): Promise<void> {
    await Promise.all(opened.splice(0).map((s) => s.close()));
  }

  /** Closes the open stores and opens a fresh one, as a restarted process would. */
  async function reopen(options: Partial<FileUsageStoreOptions> = {}): Promise<FileUsageStore> {
    await closeAll();
    return openStore(options);
  }

  /** api_usage.json as any JSON reader sees it. */
  async function readUsageFile(): Promise<{ records: UsageRecord[] }> {
    return JSON.parse(await readFile(usagePath, 'utf8')) as { records: UsageRecord[] };
  }

  const exists = (path: string): Promise<boolean> =>
    stat(path).then(
      () => true,
      () => false,
    );

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-usage-'));
    usagePath = join(dir, 'api_usage.json');
    journalPath = join(dir, 'api_usage.journal');
    asidePath = join(dir, 'api_usage.journal.compacting');
    opened = [];
  });

  afterEach(async () => {
    await Promise.all(opened.map((s) => s.close().catch(() => undefined)));
    await rm(dir, { recursive: true, force: true });
  });

  test('record() updates the daily totals at once, per UTC day', async () => {
    const store = await openStore();
    store.record(usage('a', MAY_1, 200, 1));
    store.record(usage('a', MIDNIGHT - 0.5, 500, 2));
    store.record(usage('a', MIDNIGHT, 302, 4));
    store.record(usage('b', MAY_1, 200, 8));
    assert.deepEqual(daily(store, 'a'), { '2024-05-01': totals(2, 1, 3), '2024-05-02': totals(1, 1, 4) });
    assert.deepEqual(daily(store, 'a', '2024-05-02'), { '2024-05-02': totals(1, 1, 4) }, 'days before fromDay are left out');
    assert.deepEqual(daily(store, 'b'), { '2024-05-01': totals(1, 1, 8) });
    assert.deepEqual(store.keyIds().sort(), ['a', 'b']);
    assert.deepEqual(daily(store, 'nobody'), {});
  });

  test('after flush() a new instance sees the same totals', async () => {
    const store = await openStore();
    store.record(usage('a', MAY_1, 200, 1));
    store.record(usage('a', MAY_1 + DAY, 404, 2));
    store.recordRateLimited('a', MAY_1 + DAY);
    await store.flush();
    assert.equal(store.lastWriteError(), null);

    const other = await openStore();
    assert.deepEqual(daily(other, 'a'), daily(store, 'a'));
    assert.deepEqual(daily(other, 'a'), { '2024-05-01': totals(1, 1, 1), '2024-05-02': totals(1, 0, 2, 1) });
  });

  test('close() writes what is still buffered', async () => {
    const store = await openStore();
    store.record(usage('a', MAY_1));
    const fresh = await reopen();
    assert.deepEqual(daily(fresh, 'a'), { '2024-05-01': totals(1, 1, 1.5) });
  });

  test('recordRateLimited counts in rate_limited, not in requests', async () => {
    const store = await openStore();
    store.recordRateLimited('a', MAY_1);
    store.recordRateLimited('a', MAY_1 + 1);
    store.record(usage('a', MAY_1 + 2));
    assert.deepEqual(daily(store, 'a'), { '2024-05-01': totals(1, 1, 1.5, 2) });
    const fresh = await reopen();
    assert.deepEqual(daily(fresh, 'a'), { '2024-05-01': totals(1, 1, 1.5, 2) });
  });

  test('prompts and jobs count in their day only: journal lines, never records of api_usage.json, kept through compaction', async () => {
    const store = await openStore();
    store.recordPromptAdmitted('a', MAY_1);
    store.recordPromptAdmitted('a', MIDNIGHT - 1);
    store.recordJobRun('a', MIDNIGHT + 5, 12.5, 3);
    store.record(usage('a', MAY_1 + 2));
    const expected = {
      '2024-05-01': totals(1, 1, 1.5, 0, { prompts: 2 }),
      '2024-05-02': totals(0, 0, 0, 0, { prompts_run: 1, execution_seconds: 12.5, outputs: 3 }),
    };
    assert.deepEqual(daily(store, 'a'), expected);
    assert.equal(store.requestsSince('a', 0), 1, 'prompts and jobs are not counted requests');
    await store.compact();
    assert.deepEqual((await readUsageFile()).records, [usage('a', MAY_1 + 2)], 'the reference records only');
    assert.deepEqual(daily(await reopen(), 'a'), expected, 'from the header after a compaction');
  });

  test('a comfy-gate file written before job metering (five numbers a day) loads with zeros, and takes the new totals', async () => {
    const header = { version: 1, merged_journal: null, daily_totals: { a: { '2024-05-01': [3, 2, 1, 4.5, 1] } }, hourly_requests: {} };
    await writeFile(usagePath, `{"comfy_gate": ${JSON.stringify(header)},\n"records": [\n]}\n`);
    const store = await openStore();
    assert.deepEqual(daily(store, 'a'), { '2024-05-01': totals(3, 2, 4.5, 1) });
    assert.deepEqual(Object.fromEntries(store.dailyTotalsOfAll('2000-01-01')), { '2024-05-01': totals(3, 2, 4.5, 1) });
    store.recordJobRun('a', MAY_1, 2, 1);
    await store.compact();
    const expected = { '2024-05-01': totals(3, 2, 4.5, 1, { prompts_run: 1, execution_seconds: 2, outputs: 1 }) };
    assert.deepEqual(daily(await reopen(), 'a'), expected);
  });

  test('recentRequestTimes() gives the counted requests of the last window after a restart', async () => {
    const now = Date.now() / 1000;
    const store = await openStore();
    store.record(usage('a', now - 7200));
    store.record(usage('a', now - 100, 500));
    store.record(usage('a', now - 10));
    store.recordRateLimited('a', now - 5);
    store.record(usage('b', now - 50));
    const fresh = await reopen();
    const recent = fresh.recentRequestTimes(3600, now);
    assert.deepEqual(recent.get('a'), [now - 100, now - 10]);
    assert.deepEqual(recent.get('b'), [now - 50]);
    assert.deepEqual(fresh.recentRequestTimes(60, now).get('a'), [now - 10], 'only the last windowSeconds');
  });

  test('recentRequestTimes() still has the last hour after a compaction and a restart', async () => {
    const now = Date.now() / 1000;
    const store = await openStore();
    store.record(usage('a', now - 30));
    store.recordRateLimited('a', now - 20);
    await store.compact();
    store.record(usage('a', now - 10));
    const fresh = await reopen();
    assert.deepEqual(fresh.recentRequestTimes(3600, now).get('a'), [now - 30, now - 10]);
  });

  test('after a compaction, the last hour is read from the end of the records: many blocks, past a long request that ended last', async () => {
    const now = Date.now() / 1000;
    const store = await openStore();
    store.record(usage('a', now - 4000, 200, 1));
    const short = Array.from({ length: 3000 }, (_, i) => now - 3000 + i * 0.5);
    for (const t of short) store.record({ ...usage('a', t), endpoint: `/view?filename=${'é'.repeat(40)}.png` });
    store.record(usage('b', now - 3500, 200, 3490));
    store.record(usage('c', now - 4000, 200, 3990));
    await store.compact();
    assert.ok((await stat(usagePath)).size > 4 * 65_536, 'the records span several blocks');
    const fresh = await reopen();
    assert.deepEqual(fresh.recentRequestTimes(3600, now).get('a'), short, 'every request of the hour, in order, and none older');
    assert.deepEqual(fresh.recentRequestTimes(3600, now).get('b'), [now - 3500], 'a request that started 58 minutes ago and ended last');
    assert.equal(fresh.recentRequestTimes(3600, now).get('c'), undefined, 'one that started before the hour does not count, nor end the reading');
  });

  test('a file written before the last hour moved out of its header is read by its header, without counting twice', async () => {
    const now = Date.now() / 1000;
    const header = { version: 1, merged_journal: null, daily_totals: {}, recent: { a: [now - 20] } };
    await writeFile(usagePath, `{"comfy_gate": ${JSON.stringify(header)},\n"records": [\n${JSON.stringify(usage('a', now - 20))}\n]}\n`);
    const store = await openStore();
    assert.deepEqual(store.recentRequestTimes(3600, now).get('a'), [now - 20]);
    store.record(usage('a', now - 10));
    await store.compact();
    const fresh = await reopen();
    assert.deepEqual(fresh.recentRequestTimes(3600, now).get('a'), [now - 20, now - 10], 'and so is the file it is rewritten into');
  });

  test('compact() writes every record to api_usage.json in the reference shape, counted once after reopen', async () => {
    const store = await openStore();
    const first = [usage('a', MAY_1, 200, 1), usage('b', MAY_1 + 1, 500, 2)];
    const second = [usage('a', MAY_1 + DAY, 201, 4)];
    for (const r of first) store.record(r);
    store.recordRateLimited('a', MAY_1 + 2);
    await store.compact();
    assert.equal(await exists(asidePath), false, 'the merged journal is deleted');
    assert.deepEqual((await readUsageFile()).records, first, 'rate-limited requests are not records');

    for (const r of second) store.record(r);
    await store.compact();
    const { records } = await readUsageFile();
    assert.deepEqual(records, [...first, ...second]);
    for (const r of records) {
      assert.deepEqual(Object.keys(r).sort(), ['duration', 'endpoint', 'key_id', 'metadata', 'success', 'timestamp']);
      assert.deepEqual(Object.keys(r.metadata).sort(), ['method', 'status']);
    }

    store.record(usage('b', MAY_1 + DAY));
    const fresh = await reopen();
    assert.deepEqual(daily(fresh, 'a'), { '2024-05-01': totals(1, 1, 1, 1), '2024-05-02': totals(1, 1, 4) });
    assert.deepEqual(daily(fresh, 'b'), { '2024-05-01': totals(1, 0, 2), '2024-05-02': totals(1, 1, 1.5) });
  });

  test('a crash after the merge but before the aside journal was deleted does not double count', async () => {
    const store = await openStore();
    store.record(usage('a', MAY_1));
    store.record(usage('a', MAY_1 + 1));
    await store.flush();
    const mergedJournal = await readFile(journalPath);
    await store.compact();
    await closeAll();
    await writeFile(asidePath, mergedJournal);

    const fresh = await openStore();
    assert.deepEqual(daily(fresh, 'a'), { '2024-05-01': totals(2, 2, 3) });
    assert.equal(await exists(asidePath), false, 'the already merged journal is removed');
    assert.equal((await readUsageFile()).records.length, 2);
  });

  test('a journal set aside but not merged (crash before the merge) is counted once, and merged', async () => {
    const store = await openStore();
    store.record(usage('a', MAY_1));
    await store.compact();
    store.record(usage('a', MAY_1 + 1));
    store.record(usage('b', MAY_1 + 2));
    await closeAll();
    await rename(journalPath, asidePath);

    const fresh = await openStore();
    assert.deepEqual(daily(fresh, 'a'), { '2024-05-01': totals(2, 2, 3) });
    assert.deepEqual(daily(fresh, 'b'), { '2024-05-01': totals(1, 1, 1.5) });
    assert.equal(await exists(asidePath), false);
    assert.deepEqual(
      (await readUsageFile()).records.map((r) => r.timestamp),
      [MAY_1, MAY_1 + 1, MAY_1 + 2],
    );
    const again = await reopen();
    assert.deepEqual(daily(again, 'a'), { '2024-05-01': totals(2, 2, 3) });
  });

  test('a torn last journal line is dropped, and later records still count', async () => {
    const store = await openStore();
    store.record(usage('a', MAY_1));
    await closeAll();
    await appendFile(journalPath, '{"key_id":"a","endpoint":"/api/pro');

    const recovered = await openStore();
    assert.deepEqual(daily(recovered, 'a'), { '2024-05-01': totals(1, 1, 1.5) });
    recovered.record(usage('a', MAY_1 + 1));
    const fresh = await reopen();
    assert.deepEqual(daily(fresh, 'a'), { '2024-05-01': totals(2, 2, 3) });
  });

  test('a journal write cut short (disk full) loses nothing and leaves no unreadable line', async () => {
    const store = await openStore();
    store.record(usage('a', MAY_1));
    await store.flush();
    failNextWrite(await fileHandlePrototype());
    store.record(usage('a', MAY_1 + 1));
    await assert.rejects(store.flush(), { code: 'ENOSPC' });
    assert.equal((store.lastWriteError() as { code?: string } | null)?.code, 'ENOSPC');

    store.record(usage('a', MAY_1 + 2));
    await store.flush();
    assert.equal(store.lastWriteError(), null);
    const fresh = await reopen();
    assert.deepEqual(daily(fresh, 'a'), { '2024-05-01': totals(3, 3, 4.5) });
  });

  test('compaction drops records older than retentionDays from the file; daily totals keep them', async () => {
    const now = Date.now() / 1000;
    const inReferenceFile = [usage('a', now - 40 * DAY), usage('a', now - 2 * DAY)];
    await writeFile(usagePath, JSON.stringify({ records: inReferenceFile }, null, 2));
    const store = await openStore({ retentionDays: 30 });
    const inJournal = [usage('b', now - 35 * DAY), usage('a', now)];
    for (const r of inJournal) store.record(r);
    await store.compact();
    assert.deepEqual((await readUsageFile()).records, [inReferenceFile[1], inJournal[1]]);
    const reopened = await reopen({ retentionDays: 30 });
    assert.equal(totalRequests(reopened, 'a'), 3, 'every request of a is still counted');
    assert.equal(totalRequests(reopened, 'b'), 1, 'every request of b is still counted');
  });

  test('a shorter retention applies to records already in a comfy-gate file', async () => {
    const now = Date.now() / 1000;
    const [old, recent] = [usage('a', now - 10 * DAY), usage('a', now - DAY)];
    const store = await openStore({ retentionDays: 30 });
    store.record(old);
    store.record(recent);
    await store.compact();
    assert.deepEqual((await readUsageFile()).records, [old, recent]);

    const stricter = await reopen({ retentionDays: 5 });
    stricter.record(usage('a', now));
    await stricter.compact();
    assert.deepEqual((await readUsageFile()).records, [recent, usage('a', now)]);
    assert.equal(totalRequests(stricter, 'a'), 3);
  });

  test("compaction drops the file's leading expired records; an expired one after a kept one waits for those before it", async () => {
    // Records are in the order their requests ended, and a merge copies the file from its first kept
    // record on as bytes: a model of that over random files, ages half a day away from the 30-day limit.
    const ages = fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 12 });
    await fc.assert(
      fc.asyncProperty(ages, ages, async (fileAges, journalAges) => {
        await closeAll();
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir);
        const now = Date.now() / 1000;
        const recordOf = (age: number, index: number): UsageRecord => usage(`key-${index % 3}`, now - (age + 0.5) * DAY);
        const inFile = fileAges.map(recordOf);
        const keeping = await openStore({ retentionDays: 100_000 });
        await keeping.ensureCreated();
        for (const r of inFile) keeping.record(r);
        await keeping.compact();
        const stricter = await reopen({ retentionDays: 30 });
        const inJournal = journalAges.map((age, index) => recordOf(age, index + 1));
        for (const r of inJournal) stricter.record(r);
        await stricter.compact();
        const firstKept = inFile.findIndex((r) => r.timestamp >= now - 30 * DAY);
        const expected = [...(firstKept < 0 ? [] : inFile.slice(firstKept)), ...inJournal.filter((r) => r.timestamp >= now - 30 * DAY)];
        assert.deepEqual((await readUsageFile()).records, expected);
        const reopened = await reopen({ retentionDays: 30 });
        assert.equal(totalRequests(reopened, 'key-0') + totalRequests(reopened, 'key-1') + totalRequests(reopened, 'key-2'), inFile.length + inJournal.length);
      }),
      { numRuns: 25 },
    );
  });

  test('compaction copies the kept records of the file byte for byte, over several reads', async () => {
    const store = await openStore();
    // About 2.3 MB of records: the copy takes three reads.
    for (let i = 0; i < 16_000; i += 1) store.record(usage(`key-${i % 7}`, MAY_1 + i, i % 5 === 0 ? 500 : 200, i / 1000));
    await store.compact();
    const before = await readFile(usagePath, 'utf8');
    const records = before.slice(before.indexOf('"records": [\n') + '"records": [\n'.length, before.lastIndexOf('\n]}'));
    store.record(usage('key-0', MAY_1 + 20_000));
    await store.compact();
    const after = await readFile(usagePath, 'utf8');
    assert.ok(after.includes(`"records": [\n${records},\n${JSON.stringify(usage('key-0', MAY_1 + 20_000))}\n]}\n`));
    assert.equal((await readUsageFile()).records.length, 16_001);
  });

  test('a file saved with CRLF line ends, or with a header longer than a read, is compacted and read again', async () => {
    const now = Date.now() / 1000;
    const store = await openStore({ retentionDays: 30 });
    const [old, recent] = [usage('a', now - 40 * DAY), usage('b', now - DAY)];
    // Totals of 40,000 keys: a header line of over 1 MiB.
    for (let i = 0; i < 40_000; i += 1) store.recordRateLimited(`key-${i}`, MAY_1);
    store.record(old);
    store.record(recent);
    await store.compact();
    await closeAll();
    const text = await readFile(usagePath, 'utf8');
    assert.ok(text.indexOf('\n') > 1 << 20, 'the header line is longer than a read');
    await writeFile(usagePath, text.replaceAll('\n', '\r\n'));
    const reopened = await openStore({ retentionDays: 30 });
    reopened.record(usage('a', now));
    await reopened.compact();
    assert.deepEqual((await readUsageFile()).records, [recent, usage('a', now)]);
    assert.equal(totalRequests(await reopen({ retentionDays: 30 }), 'a'), 2);
    const lines: string[] = [];
    for await (const batch of recordLines(usagePath, await loadUsageFile(usagePath))) lines.push(...batch);
    assert.deepEqual(
      lines.map((line) => JSON.parse(line) as UsageRecord),
      [recent, usage('a', now)],
    );
  });

  test('a usage file in the reference format loads, with the right totals, and survives compaction', async () => {
    const records = [usage('key-one', MAY_1, 200, 1.25), usage('key-one', MAY_1 + DAY, 500, 0.5), usage('key-two', MAY_1 + 30, 200, 2)];
    const reference = JSON.stringify({ records }, null, 2);
    await writeFile(usagePath, reference);

    const store = await openStore();
    assert.deepEqual(store.keyIds().sort(), ['key-one', 'key-two']);
    assert.deepEqual(daily(store, 'key-one'), { '2024-05-01': totals(1, 1, 1.25), '2024-05-02': totals(1, 0, 0.5) });
    assert.deepEqual(daily(store, 'key-two'), { '2024-05-01': totals(1, 1, 2) });
    assert.equal(await readFile(usagePath, 'utf8'), reference, 'opening does not rewrite the file');

    const added = usage('key-two', MAY_1 + DAY);
    store.record(added);
    await store.compact();
    assert.deepEqual((await readUsageFile()).records, [...records, added]);
    const fresh = await reopen();
    assert.deepEqual(daily(fresh, 'key-one'), { '2024-05-01': totals(1, 1, 1.25), '2024-05-02': totals(1, 0, 0.5) });
    assert.deepEqual(daily(fresh, 'key-two'), { '2024-05-01': totals(1, 1, 2), '2024-05-02': totals(1, 1, 1.5) });
  });

  for (const [what, content] of [
    ['not JSON', '{"records": [{"key_id": "a", '],
    ['JSON without a records list', '{"entries": []}'],
  ] as const) {
    test(`a usage file that is ${what} makes open() reject, and the file is left unchanged`, async () => {
      await writeFile(usagePath, content);
      const store = new FileUsageStore({ directory: dir, retentionDays: 30 });
      await assert.rejects(store.open(), (error: unknown) => {
        assert.ok(error instanceof StoreCorruptError);
        assert.ok(error.message.includes(usagePath), `the message names the file: ${error.message}`);
        return true;
      });
      assert.equal(await readFile(usagePath, 'utf8'), content);
    });
  }

  test('ensureCreated() creates a file with an empty records list', async () => {
    const store = await openStore();
    assert.equal(await exists(usagePath), false);
    await store.ensureCreated();
    assert.deepEqual((await readUsageFile()).records, []);
    const fresh = await reopen();
    assert.deepEqual(fresh.keyIds(), []);
  });

  test('ensureCreated() leaves an existing file alone', async () => {
    const reference = JSON.stringify({ records: [usage('a', MAY_1)] }, null, 2);
    await writeFile(usagePath, reference);
    const store = await openStore();
    await store.ensureCreated();
    assert.equal(await readFile(usagePath, 'utf8'), reference);
    assert.deepEqual(daily(await reopen(), 'a'), { '2024-05-01': totals(1, 1, 1.5) });
  });

  /** Every file of the test directory and its bytes, to show that nothing was written. */
  async function directoryBytes(): Promise<Map<string, Buffer>> {
    const names = (await readdir(dir)).sort();
    return new Map(await Promise.all(names.map(async (name) => [name, await readFile(join(dir, name))] as [string, Buffer])));
  }

  test('a read-only open counts a torn journal and an unmerged aside journal, and leaves every file byte for byte', async () => {
    const store = await openStore();
    store.record(usage('a', MAY_1));
    await store.compact();
    store.record(usage('a', MAY_1 + 1, 500, 2));
    store.recordRateLimited('b', MAY_1 + 2);
    store.recordPromptAdmitted('b', MAY_1 + 2);
    store.recordJobRun('b', MAY_1 + 2, 7, 2);
    await closeAll();
    // A crash after the journal was set aside and before the merge, then a writer that died mid-append.
    await rename(journalPath, asidePath);
    await writeFile(
      journalPath,
      JSON.stringify({ journal_id: 'next' }) + '\n' + JSON.stringify(usage('b', MAY_1 + 3)) + '\n' + '{"key_id":"b","endpoint":"/api/pro',
    );
    const before = await directoryBytes();
    assert.deepEqual([...before.keys()], ['api_usage.journal', 'api_usage.json', 'api_usage.journal.compacting'].sort());

    const reader = new FileUsageStore({ directory: dir, retentionDays: 1, readOnly: true });
    await reader.open();
    assert.deepEqual(daily(reader, 'a'), { '2024-05-01': totals(2, 1, 3.5) }, 'the main file and the aside journal, each once');
    assert.deepEqual(
      daily(reader, 'b'),
      { '2024-05-01': totals(1, 1, 1.5, 1, { prompts: 1, prompts_run: 1, execution_seconds: 7, outputs: 2 }) },
      'the active journal without its torn line',
    );
    assert.deepEqual(reader.keyIds().sort(), ['a', 'b']);

    assert.throws(() => reader.record(usage('a', MAY_1 + 4)), /read-only/);
    assert.throws(() => reader.recordRateLimited('a', MAY_1 + 4), /read-only/);
    assert.throws(() => reader.recordPromptAdmitted('a', MAY_1 + 4), /read-only/);
    assert.throws(() => reader.recordJobRun('a', MAY_1 + 4, 1, 1), /read-only/);
    await assert.rejects(reader.flush(), /read-only/);
    await assert.rejects(reader.compact(), /read-only/);
    await assert.rejects(reader.ensureCreated(), /read-only/);
    await reader.close();
    assert.deepEqual(await directoryBytes(), before, 'no file was created, changed, cut or deleted');

    // The gateway's own open then recovers as before: it cuts the torn line and merges the aside journal.
    const writer = await openStore();
    assert.deepEqual(daily(writer, 'a'), { '2024-05-01': totals(2, 1, 3.5) });
    assert.equal(await exists(asidePath), false);
    assert.equal((await readFile(journalPath, 'utf8')).endsWith('\n'), true);
  });

  test('a read-only open leaves an aside journal that was already merged, and does not count it twice', async () => {
    const store = await openStore();
    store.record(usage('a', MAY_1));
    store.record(usage('a', MAY_1 + 1));
    await store.flush();
    const mergedJournal = await readFile(journalPath);
    await store.compact();
    await closeAll();
    await writeFile(asidePath, mergedJournal);
    const before = await directoryBytes();

    const reader = new FileUsageStore({ directory: dir, retentionDays: 1, readOnly: true });
    await reader.open();
    assert.deepEqual(daily(reader, 'a'), { '2024-05-01': totals(2, 2, 3) });
    assert.deepEqual(await directoryBytes(), before);
  });

  test('a read-only open overtaken by a compaction reads again, so no record is missed', async () => {
    const writer = await openStore();
    writer.record(usage('a', MAY_1));
    await writer.compact();
    writer.record(usage('a', MAY_1 + 1));
    writer.record(usage('a', MAY_1 + 2));
    await writer.flush();
    // The reader gets the old main file's header; then, before it reads the journals, the gateway
    // sets the journal aside, merges it into a new main file and deletes it.
    const read = mock.method(await fileHandlePrototype(), 'read', async function (this: FileHandle, ...args: Parameters<FileHandle['read']>) {
      read.mock.restore();
      const result = await this.read(...args);
      await writer.compact();
      return result;
    });
    const reader = new FileUsageStore({ directory: dir, retentionDays: 100_000, readOnly: true });
    await reader.open();
    assert.equal(read.mock.callCount(), 1, 'the compaction ran in the middle of the read');
    assert.equal(totalRequests(reader, 'a'), 3);
  });
});
