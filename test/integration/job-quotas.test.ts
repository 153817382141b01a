// Per-key job quotas through the gateway: max_queued, max_running and daily_execution_seconds, each refused with its code; and the metering they read.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SAVE_WORKFLOW, waitForHistory } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

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

  test('max_queued under concurrency: prompts and runs sent at once, exactly max_queued are admitted', async () => {
    const key = (await createKey(gateway.url, { name: 'burst', rate_limit: 1000, max_queued: 3 }, admin)).api_key;
    const run = { method: 'POST', key, body: { prompt: SAVE_WORKFLOW, wait: 0 } };
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        i % 2 === 0 ? queue(gateway.url, key).then((res) => res.status) : send(gateway.url, '/api/gateway/run', run).then((res) => res.status),
      ),
    );
    assert.equal(answers.filter((status) => status === 200 || status === 202).length, 3, answers.join(', '));
    assert.equal(answers.filter((status) => status === 429).length, 9, answers.join(', '));
    assert.equal((await statuses(gateway.url, key)).length, 3);
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

/** A promise held open until the test lets it go. */
interface Gate {
  promise: Promise<void>;
  open(): void;
}

function gate(): Gate {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('daily_execution_seconds while a job runs (about 4 s per prompt, --upstream-queue-depth 3)', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;
  /** When set, the fake's next answer to POST /prompt waits for it (the prompt is queued in the fake meanwhile). */
  let nextAnswerGate: Gate | null = null;
  /** While set, the fake holds every interrupt: the running prompt runs on. */
  let interruptGate: Gate | null = null;
  let interruptsHeld = 0;
  /** How many of the next deletes from the fake's queue fail with 500. */
  let failingDeletes = 0;

  before(async () => {
    comfy = await startFakeComfyUI({
      stepDelayMs: 250,
      beforePromptAnswer: async () => {
        const held = nextAnswerGate;
        nextAnswerGate = null;
        await held?.promise;
      },
      beforeInterrupt: async () => {
        if (!interruptGate) return;
        interruptsHeld += 1;
        await interruptGate.promise;
      },
      queueDeleteStatus: () => (failingDeletes-- > 0 ? 500 : 200),
    });
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--upstream-queue-depth', '3'] });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 100_000 })).api_key;
  });
  after(async () => {
    interruptGate?.open();
    nextAnswerGate?.open();
    await gateway?.stop();
    await comfy?.close();
  });

  type Job = { id: string; status: string; started_at: number | null; error: { exception_type?: string; message: string } | null };
  const jobOf = async (id: string): Promise<Job> => (await send(gateway.url, `/api/gateway/jobs/${id}`, { key: admin })).json<Job>();
  const ended = (id: string): Promise<Job> =>
    waitFor(
      async () => {
        const job = await jobOf(id);
        return !['held', 'queued', 'running'].includes(job.status) && job;
      },
      `job ${id} to end`,
      30_000,
    );
  const budgetKey = async (name: string): Promise<string> =>
    (await createKey(gateway.url, { name, rate_limit: 1000, daily_execution_seconds: 2 }, admin)).api_key;
  const queued = async (key: string): Promise<string> => {
    const answer = await queue(gateway.url, key);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return answer.body.prompt_id as string;
  };
  /** Asserts that the job ended over its key's budget without ever running in ComfyUI. */
  const endedUnrun = async (id: string): Promise<void> => {
    const job = await ended(id);
    assert.equal(job.status, 'error');
    assert.equal(job.error?.exception_type, 'ExecutionBudgetExceeded');
    assert.match(job.error?.message ?? '', /was spent before the job started/);
    assert.equal(job.started_at, null);
  };

  test('a prompt sent once the running job has spent the budget, before that job ends, gets 429 and nothing is sent', async () => {
    const key = await budgetKey('spent-while-running');
    interruptGate = gate();
    const running = await queued(key);
    // The budget is spent while the job runs: the gateway interrupts it, and the fake keeps it running meanwhile.
    await waitFor(() => interruptsHeld > 0, 'the interrupt at the end of the budget', 15_000);
    assert.equal((await jobOf(running)).status, 'running');
    const sentBefore = comfy.prompts.length;
    const refused = await queue(gateway.url, key);
    assert.equal(refused.status, 429, JSON.stringify(refused.body));
    assert.equal(refused.body.error_code, 'EXECUTION_BUDGET_EXCEEDED');
    const untilMidnight = 86_400 - (Math.floor(Date.now() / 1000) % 86_400);
    assert.ok(Math.abs(Number(refused.retryAfter) - untilMidnight) <= 5, `Retry-After ${refused.retryAfter} is the time to the next UTC day`);
    assert.equal(comfy.prompts.length, sentBefore, 'nothing sent to ComfyUI');
    assert.equal((await statuses(gateway.url, key)).length, 1, 'no job admitted');
    interruptGate.open();
    interruptGate = null;
    assert.equal((await ended(running)).error?.exception_type, 'ExecutionBudgetExceeded');
  });

  test("a prompt whose POST /prompt is on its way when the budget runs out is deleted from ComfyUI's queue once answered", async () => {
    const key = await budgetKey('send-race');
    const first = await queued(key);
    // Another key's job waits behind it in ComfyUI: when the first is interrupted, that one starts, not the key's next.
    const other = await queued(admin);
    const sentBefore = comfy.prompts.length;
    nextAnswerGate = gate();
    const answering = nextAnswerGate;
    const sending = queue(gateway.url, key);
    await waitFor(() => comfy.prompts.length === sentBefore + 1 && nextAnswerGate === null, 'the next prompt queued in ComfyUI, its answer held');
    const racing = comfy.prompts.at(-1)!.id;
    // The budget runs out while the answer is held: the first is interrupted and the other key's job starts.
    assert.equal((await ended(first)).error?.exception_type, 'ExecutionBudgetExceeded');
    await waitFor(() => comfy.started.includes(other), "the other key's job to start", 15_000);
    answering.open();
    const answer = await sending;
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.prompt_id, racing);
    await waitFor(() => comfy.deletedFromQueue.includes(racing), "the raced prompt deleted from ComfyUI's queue", 10_000);
    await endedUnrun(racing);
    await ended(other);
    assert.ok(!comfy.started.includes(racing), 'the raced prompt never started');
  });

  test("a delete from ComfyUI's queue that fails is tried again", async () => {
    const key = await budgetKey('failing-delete');
    failingDeletes = 1;
    const first = await queued(key);
    const other = await queued(admin);
    const next = await queued(key);
    await waitFor(() => failingDeletes < 0 && comfy.deletedFromQueue.includes(next), "the key's queued job deleted on a second try", 15_000);
    assert.equal((await ended(first)).error?.exception_type, 'ExecutionBudgetExceeded');
    await endedUnrun(next);
    await ended(other);
    assert.ok(!comfy.started.includes(next), "the key's queued job never started");
    const { stdout, stderr } = gateway.output();
    assert.match(stdout + stderr, /jobs could not be deleted from ComfyUI's queue: the delete is tried again/);
    assert.ok(!(stdout + stderr).includes(key), 'the key is not logged');
  });
});
