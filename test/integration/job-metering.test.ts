// Job metering through the gateway process: prompts, jobs run, execution seconds and outputs recorded in the store show in /api/usage, /api/usage/all, the key, the CLI's CSV and /metrics.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FileUsageStore } from '../../src/store/file/file-usage-store.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';

const DAY = 86_400;
const dayOf = (seconds: number): string => new Date(seconds * 1000).toISOString().slice(0, 10);

interface JobFigures {
  prompts: number;
  prompts_run: number;
  execution_seconds: number;
  outputs: number;
}

type DailyPoint = JobFigures & { date: string; requests: number };

const figures = (value: JobFigures): JobFigures => ({
  prompts: value.prompts,
  prompts_run: value.prompts_run,
  execution_seconds: value.execution_seconds,
  outputs: value.outputs,
});

describe('job metering through the gateway', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let directory: Awaited<ReturnType<typeof tempUserDirectory>>;
  let admin: CreatedKey;
  let user: CreatedKey;
  let formula: CreatedKey;
  const today = Math.floor(Date.now() / 1000 / DAY) * DAY;
  const [todayDate, twoDaysAgoDate] = [dayOf(today), dayOf(today - 2 * DAY)];

  before(async () => {
    comfy = await startFakeComfyUI();
    directory = await tempUserDirectory();
    const first = await startGateway({ upstream: comfy.url, userDirectory: directory.path, args: ['--require-api-auth'] });
    admin = await createKey(first.url, { name: 'admin', rate_limit: 100_000 });
    user = await createKey(first.url, { name: 'painter', rate_limit: 100_000 }, admin.api_key);
    formula = await createKey(first.url, { name: '=SUM(A1)' }, admin.api_key);
    assert.equal(await first.stop(), 0);

    // What the job machinery records, written through the store the gateway then opens.
    const usage = new FileUsageStore({ directory: directory.path, retentionDays: 90 });
    await usage.open();
    usage.recordPromptAdmitted(user.key_id, today - 2 * DAY + 60);
    usage.recordJobRun(user.key_id, today - 2 * DAY + 120, 40.5, 2);
    for (let i = 0; i < 3; i += 1) usage.recordPromptAdmitted(user.key_id, today + 10 + i);
    usage.recordJobRun(user.key_id, today + 30, 12.25, 1);
    usage.recordJobRun(user.key_id, today + 40, 7.75, 3);
    usage.recordPromptAdmitted(formula.key_id, today + 50);
    usage.recordJobRun(formula.key_id, today + 60, 100, 5);
    await usage.close();

    gateway = await startGateway({ upstream: comfy.url, userDirectory: directory.path, args: ['--require-api-auth', '--metrics-per-key'] });
  });
  after(async () => {
    await gateway?.stop();
    await comfy.close();
    await directory.remove();
  });

  test("GET /api/usage: the key's own totals and day-by-day figures", async () => {
    const res = await send(gateway.url, '/api/usage?days=7&by=day', { key: user.api_key });
    assert.equal(res.status, 200, res.text);
    const body = res.json<{ usage_stats: JobFigures & { total_requests: number }; daily: DailyPoint[] }>();
    assert.deepEqual(figures(body.usage_stats), { prompts: 4, prompts_run: 3, execution_seconds: 60.5, outputs: 6 });
    assert.equal(body.daily.length, 7);
    const byDate = new Map(body.daily.map((point) => [point.date, figures(point)]));
    assert.deepEqual(byDate.get(twoDaysAgoDate), { prompts: 1, prompts_run: 1, execution_seconds: 40.5, outputs: 2 });
    assert.deepEqual(byDate.get(todayDate), { prompts: 3, prompts_run: 2, execution_seconds: 20, outputs: 4 });
    assert.deepEqual(byDate.get(dayOf(today - DAY)), { prompts: 0, prompts_run: 0, execution_seconds: 0, outputs: 0 }, 'a quiet day has zeros');

    const oneDay = await send(gateway.url, '/api/usage?days=1', { key: user.api_key });
    assert.deepEqual(figures(oneDay.json<{ usage_stats: JobFigures }>().usage_stats), { prompts: 3, prompts_run: 2, execution_seconds: 20, outputs: 4 });
  });

  test('GET /api/usage/all and GET /api/keys/{key_id}: per key, and every key together', async () => {
    const res = await send(gateway.url, '/api/usage/all?days=7&by=day', { key: admin.api_key });
    assert.equal(res.status, 200, res.text);
    const body = res.json<{
      usage_stats: Record<string, JobFigures>;
      daily: Record<string, DailyPoint[]>;
      daily_total: DailyPoint[];
      total_stats: JobFigures;
    }>();
    assert.deepEqual(figures(body.usage_stats[user.key_id]!), { prompts: 4, prompts_run: 3, execution_seconds: 60.5, outputs: 6 });
    assert.deepEqual(figures(body.usage_stats[formula.key_id]!), { prompts: 1, prompts_run: 1, execution_seconds: 100, outputs: 5 });
    assert.deepEqual(figures(body.total_stats), { prompts: 5, prompts_run: 4, execution_seconds: 160.5, outputs: 11 });
    assert.deepEqual(figures(body.daily_total.at(-1)!), { prompts: 4, prompts_run: 3, execution_seconds: 120, outputs: 9 });
    assert.equal(body.daily_total.at(-1)!.date, todayDate);
    assert.deepEqual(figures(body.daily[formula.key_id]!.at(-1)!), { prompts: 1, prompts_run: 1, execution_seconds: 100, outputs: 5 });

    const key = await send(gateway.url, `/api/keys/${user.key_id}`, { key: admin.api_key });
    assert.deepEqual(figures(key.json<{ usage_stats: JobFigures }>().usage_stats), { prompts: 4, prompts_run: 3, execution_seconds: 60.5, outputs: 6 });
  });

  test('the CLI usage export has the new columns, beside the running gateway, with formulas still escaped', async () => {
    const csv = await runCli(['usage', '--user-directory', directory.path, '--format', 'csv', '--days', '1']);
    assert.equal(csv.code, 0, csv.stderr);
    const [header, ...rows] = csv.stdout.trimEnd().split('\n');
    assert.equal(header, 'key_id,key_name,date,requests,successes,failures,total_duration_s,prompts,prompts_run,execution_seconds,outputs');
    const row = (keyId: string): string[] => rows.find((line) => line.startsWith(`${keyId},`))!.split(',');
    assert.deepEqual(row(user.key_id).slice(1, 3), ['painter', todayDate]);
    assert.deepEqual(row(user.key_id).slice(7), ['3', '2', '20', '4']);
    assert.deepEqual(row(formula.key_id).slice(1), [`"'=SUM(A1)"`, todayDate, '0', '0', '0', '0', '1', '1', '100', '5']);
  });

  test('/metrics lists the job metering counters', async () => {
    const res = await send(gateway.url, '/metrics', { key: admin.api_key });
    assert.equal(res.status, 200);
    for (const name of ['prompts_admitted', 'prompts_run', 'execution_seconds', 'outputs']) {
      assert.match(res.text, new RegExp(`^# TYPE comfy_gate_${name}_total counter$`, 'm'), name);
    }
  });
});
