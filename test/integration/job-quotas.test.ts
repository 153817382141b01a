// Per-key job quotas through the gateway: max_queued, max_running and daily_execution_seconds, each refused with its code; and the metering they read.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SAVE_WORKFLOW, waitForHistory } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

async function queue(gatewayUrl: string, key: string): Promise<{ status: number; body: Record<string, unknown>; retryAfter: string | undefined }> {
  const res = await send(gatewayUrl, '/api/prompt', { method: 'POST', key, body: { prompt: SAVE_WORKFLOW } });
  return { status: res.status, body: res.json(), retryAfter: res.headers['retry-after'] as string | undefined };
}

async function statuses(gatewayUrl: string, key: string): Promise<string[]> {
  const res = await send(gatewayUrl, '/api/gateway/jobs?limit=500', { key });
  return res.json<{ jobs: Array<{ status: string }> }>().jobs.map((job) => job.status);
}

describe('per-key job quotas', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;

  before(async () => {
    // About a second per prompt: a budget of one second is spent by one run.
    comfy = await startFakeComfyUI({ stepDelayMs: 60 });
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '3'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  test('max_queued: past it, 429 QUEUE_LIMIT, and nothing is queued', async () => {
    const key = (await createKey(gateway.url, { name: 'queued', rate_limit: 1000, max_queued: 2 }, admin)).api_key;
    assert.equal((await queue(gateway.url, key)).status, 200);
    assert.equal((await queue(gateway.url, key)).status, 200);
    const refused = await queue(gateway.url, key);
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error_code, 'QUEUE_LIMIT');
    assert.equal((await statuses(gateway.url, key)).length, 2);
  });

  test('max_running: the key has at most that many jobs in ComfyUI; the rest wait in the gateway', async () => {
    const key = (await createKey(gateway.url, { name: 'running', rate_limit: 1000, max_running: 1 }, admin)).api_key;
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) ids.push((await queue(gateway.url, key)).body.prompt_id as string);
    for (let i = 0; i < 20; i += 1) {
      const now = await statuses(gateway.url, key);
      assert.ok(now.filter((status) => status === 'queued' || status === 'running').length <= 1, `at most one in ComfyUI: ${now.join(', ')}`);
      await sleep(50);
    }
    for (const id of ids) await waitForHistory(gateway.url, key, id, 60_000);
  });

  test('daily_execution_seconds: once spent, 429 EXECUTION_BUDGET_EXCEEDED with Retry-After until the next UTC day', async () => {
    const created = await createKey(gateway.url, { name: 'budget', rate_limit: 1000, daily_execution_seconds: 1 }, admin);
    const first = await queue(gateway.url, created.api_key);
    assert.equal(first.status, 200);
    await waitForHistory(gateway.url, created.api_key, first.body.prompt_id as string, 60_000);
    let refused = await queue(gateway.url, created.api_key);
    for (let i = 0; i < 100 && refused.status === 200; i += 1) {
      // The run's seconds are recorded as its end event arrives; wait for it.
      await waitForHistory(gateway.url, created.api_key, refused.body.prompt_id as string, 60_000);
      refused = await queue(gateway.url, created.api_key);
    }
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error_code, 'EXECUTION_BUDGET_EXCEEDED');
    const retryAfter = Number(refused.retryAfter);
    const untilMidnight = 86_400 - (Math.floor(Date.now() / 1000) % 86_400);
    assert.ok(retryAfter >= 1 && Math.abs(retryAfter - untilMidnight) <= 5, `Retry-After ${retryAfter} is the time to the next UTC day (${untilMidnight})`);
  });

  test('daily_execution_seconds: jobs still held once the budget is spent end as error without reaching ComfyUI', async () => {
    const key = (await createKey(gateway.url, { name: 'held-budget', rate_limit: 1000, max_running: 1, daily_execution_seconds: 1 }, admin)).api_key;
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) ids.push((await queue(gateway.url, key)).body.prompt_id as string);
    const ended = async (): Promise<Array<Record<string, unknown>>> => {
      const jobs = await Promise.all(ids.map(async (id) => (await send(gateway.url, `/api/gateway/jobs/${id}`, { key })).json<Record<string, unknown>>()));
      return jobs.every((job) => !['held', 'queued', 'running'].includes(job.status as string)) ? jobs : [];
    };
    let jobs = await ended();
    for (let i = 0; i < 300 && jobs.length === 0; i += 1) {
      await sleep(50);
      jobs = await ended();
    }
    assert.equal(jobs.length, 3, 'every job ended');
    const [first, ...held] = jobs;
    assert.equal((first!.error as { exception_type: string }).exception_type, 'ExecutionBudgetExceeded');
    for (const job of held) {
      assert.equal(job.status, 'error');
      assert.equal((job.error as { exception_type: string }).exception_type, 'ExecutionBudgetExceeded');
      assert.equal(job.started_at, null, 'a held job never ran');
      assert.ok(!comfy.prompts.some((prompt) => prompt.id === job.id), 'a held job is not sent to ComfyUI once the budget is spent');
    }
  });
});
