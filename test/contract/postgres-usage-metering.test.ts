// Job metering on PostgreSQL beyond the UsageStore contract: another replica reads it, and `comfy-gate migrate` copies it from a JSON store.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FileUsageStore } from '../../src/store/file/file-usage-store.js';
import { PostgresDatabase } from '../../src/store/postgres/database.js';
import { importFileStore } from '../../src/store/postgres/import-file-store.js';
import { PostgresUsageStore } from '../../src/store/postgres/postgres-usage-store.js';
import type { DailyTotals } from '../../src/store/types.js';
import { freshPostgresDatabase, type FreshDatabase } from './backends.js';

const fresh = await freshPostgresDatabase();
const DAY1 = Date.UTC(2026, 2, 1, 12) / 1000;
const DAY2 = Date.UTC(2026, 2, 2, 12) / 1000;

/** Job metering only, for comparison. */
const jobs = (totals: DailyTotals | undefined): Partial<DailyTotals> =>
  totals ? { prompts: totals.prompts, prompts_run: totals.prompts_run, execution_seconds: totals.execution_seconds, outputs: totals.outputs } : {};

describe('job metering on PostgreSQL', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  const database = fresh as FreshDatabase;
  const opened: Array<{ close(): Promise<void> }> = [];
  after(async () => {
    for (const store of opened.reverse()) await store.close().catch(() => undefined);
    await database.drop();
  });

  async function openUsage(): Promise<PostgresUsageStore> {
    const store = new PostgresUsageStore({ database: await PostgresDatabase.open({ url: database.url }), retentionDays: 36_500, refreshIntervalMs: 60_000 });
    await store.open();
    opened.push(store);
    return store;
  }

  test('what one replica records, another reads at its next refresh, added to its own', async () => {
    const [one, two] = [await openUsage(), await openUsage()];
    one.recordPromptAdmitted('replicated', DAY1);
    one.recordJobRun('replicated', DAY1, 30, 2);
    two.recordJobRun('replicated', DAY1, 12, 1);
    await one.flush();
    await two.refresh();
    assert.deepEqual(jobs(two.dailyTotals('replicated', '2026-03-01').get('2026-03-01')), { prompts: 1, prompts_run: 2, execution_seconds: 42, outputs: 3 });
    assert.equal(two.dailyTotalsOfAll('2026-03-01').get('2026-03-01')?.execution_seconds, 42, 'in the sums over every key too');
    await two.flush();
    await one.refresh();
    assert.deepEqual(jobs(one.dailyTotals('replicated', '2026-03-01').get('2026-03-01')), { prompts: 1, prompts_run: 2, execution_seconds: 42, outputs: 3 });
  });

  test('migrate copies the job metering of a JSON store, once', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'comfy-gate-metering-'));
    try {
      const file = new FileUsageStore({ directory, retentionDays: 36_500 });
      await file.open();
      file.recordPromptAdmitted('imported', DAY1);
      file.recordPromptAdmitted('imported', DAY1 + 1);
      file.recordJobRun('imported', DAY2, 7.5, 4);
      await file.compact();
      file.recordJobRun('imported', DAY2, 2.5, 1);
      await file.close();

      const target = await PostgresDatabase.open({ url: database.url });
      opened.push(target);
      const first = await importFileStore(directory, target, Date.now() / 1000);
      assert.equal(first.daily_totals.copied, 2, 'two days');
      const second = await importFileStore(directory, target, Date.now() / 1000);
      assert.equal(second.daily_totals.copied, 0, 'nothing the second time');

      const store = await openUsage();
      const totals = store.dailyTotals('imported', '2026-03-01');
      assert.deepEqual(jobs(totals.get('2026-03-01')), { prompts: 2, prompts_run: 0, execution_seconds: 0, outputs: 0 });
      assert.deepEqual(jobs(totals.get('2026-03-02')), { prompts: 0, prompts_run: 2, execution_seconds: 10, outputs: 5 });
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
