// Each backend seen by operators: GET /api/gateway/backends (admin only) and the per-backend series of /metrics, with two ComfyUIs of which one goes away mid-job.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { startTcpRelay, type TcpRelay } from '../helpers/tcp-relay.js';

interface BackendJson {
  name: string;
  url: string;
  weight: number;
  state: string;
  since: number;
  last_error: string | null;
  events: string;
  jobs_in_flight: number;
  queue_remaining: number | null;
  child?: string;
}

/** Resolves the first value of `check` that is not undefined; fails naming `what` after `timeoutMs`. */
async function until<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The value of one series in the Prometheus text, or NaN when it is absent. */
function valueOf(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

describe('backends for operators: the admin API and /metrics', () => {
  let gpu0: FakeComfyUI;
  let gpu1: FakeComfyUI;
  /** Between the gateway and gpu1: cutting it is gpu1 going away without a word (no event for its running job). */
  let relay: TcpRelay;
  let gateway: GatewayProcess;
  let admin: CreatedKey;
  let user: CreatedKey;

  const backends = async (): Promise<BackendJson[]> => {
    const res = await send(gateway.url, '/api/gateway/backends', { key: admin.api_key });
    assert.equal(res.status, 200, res.text);
    return res.json<{ backends: BackendJson[] }>().backends;
  };
  const backend = async (name: string): Promise<BackendJson> => (await backends()).find((b) => b.name === name)!;
  const metrics = async (): Promise<string> => {
    const res = await send(gateway.url, '/metrics', { key: admin.api_key });
    assert.equal(res.status, 200);
    return res.text;
  };
  /** Scrapes until `series` has `value` (a job's record can show its end a moment before the gateway counts it); resolves that scrape. */
  const metricsOnce = (series: string, value: number): Promise<string> =>
    until(async () => {
      const text = await metrics();
      return valueOf(text, series) === value ? text : undefined;
    }, `${series} ${value}`);
  const jobStatus = async (id: string): Promise<string> =>
    (await send(gateway.url, `/api/gateway/jobs/${id}`, { key: admin.api_key })).json<{ status: string }>().status;
  /** Queues the save workflow on one backend (an admin key may pin it); resolves its prompt_id. */
  const queueOn = async (name: string): Promise<string> => {
    const res = await send(gateway.url, '/api/prompt', {
      method: 'POST',
      key: admin.api_key,
      headers: { 'x-comfy-gate-backend': name },
      body: { prompt: SAVE_WORKFLOW },
    });
    assert.equal(res.status, 200, res.text);
    return res.json<{ prompt_id: string }>().prompt_id;
  };

  before(async () => {
    gpu0 = await startFakeComfyUI();
    gpu1 = await startFakeComfyUI({ stepDelayMs: 1000 });
    relay = await startTcpRelay('127.0.0.1', gpu1.port);
    gateway = await startGateway({
      upstream: `${gpu0.url}#name=gpu0`,
      args: ['--upstream', `http://127.0.0.1:${relay.port}#name=gpu1&weight=2`, '--require-api-auth'],
    });
    admin = await createKey(gateway.url, { name: 'admin', rate_limit: 100_000 });
    user = await createKey(gateway.url, { name: 'user', rate_limit: 100_000 }, admin.api_key);
    await until(async () => ((await backends()).every((b) => b.state === 'up' && b.events === 'connected') ? true : undefined), 'both backends up');
  });
  after(async () => {
    await gateway?.stop();
    await relay?.close();
    await gpu0?.close();
    await gpu1?.close();
  });

  test('GET /api/gateway/backends lists every backend, in configuration order, to admin keys only', async () => {
    const res = await send(gateway.url, '/api/gateway/backends', { key: admin.api_key });
    assert.equal(res.status, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    const list = res.json<{ backends: BackendJson[] }>().backends;
    assert.deepEqual(
      list.map(({ name, url, weight, state, last_error, events, jobs_in_flight, queue_remaining }) => ({
        name,
        url,
        weight,
        state,
        last_error,
        events,
        jobs_in_flight,
        queue_remaining,
      })),
      [
        { name: 'gpu0', url: gpu0.url, weight: 1, state: 'up', last_error: null, events: 'connected', jobs_in_flight: 0, queue_remaining: 0 },
        {
          name: 'gpu1',
          url: `http://127.0.0.1:${relay.port}`,
          weight: 2,
          state: 'up',
          last_error: null,
          events: 'connected',
          jobs_in_flight: 0,
          queue_remaining: 0,
        },
      ],
    );
    for (const b of list) {
      assert.ok(b.since > Date.now() / 1000 - 120 && b.since <= Date.now() / 1000, `${b.name} since ${b.since}`);
      assert.equal('child' in b, false, 'no child field for a backend the gateway does not run');
    }
    const ready = (await send(gateway.url, '/readyz')).json<{ backends: BackendJson[] }>();
    assert.deepEqual(
      ready.backends.map((b) => b.name),
      ['gpu0', 'gpu1'],
      '/readyz lists the same backends',
    );
    assert.deepEqual(Object.keys(ready.backends[0]!), Object.keys(list[0]!), 'with the same fields');

    const refused = await send(gateway.url, '/api/gateway/backends', { key: user.api_key });
    assert.equal(refused.status, 403);
    assert.equal(refused.json().error_code, 'FORBIDDEN');
    assert.equal((await send(gateway.url, '/api/gateway/backends')).json().error_code, 'AUTH_REQUIRED');
    const posted = await send(gateway.url, '/api/gateway/backends', { method: 'POST', key: admin.api_key, body: {} });
    assert.equal(posted.status, 405);
  });

  test('/metrics: each backend up, its queues, its jobs by outcome, and a backend that goes away mid-job', async () => {
    let text = await metrics();
    assert.equal(valueOf(text, 'comfy_gate_backend_up{backend="gpu0"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_up{backend="gpu1"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_comfy_queue_remaining{backend="gpu1"}'), 0);
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu1",kind="health_check"}'), 0);
    assert.equal(valueOf(text, 'comfy_gate_backend_jobs_total{backend="gpu0",outcome="success"}'), 0);

    // A job that ends well on gpu0.
    const done = await queueOn('gpu0');
    await until(async () => ((await jobStatus(done)) === 'success' ? true : undefined), 'the gpu0 job to succeed');
    text = await metricsOnce('comfy_gate_backend_jobs_total{backend="gpu0",outcome="success"}', 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_jobs_total{backend="gpu1",outcome="success"}'), 0);

    // A slow job on gpu1 counts in its queues while it runs.
    const lost = await queueOn('gpu1');
    await until(async () => ((await jobStatus(lost)) === 'running' ? true : undefined), 'the gpu1 job to run');
    text = await metrics();
    assert.equal(valueOf(text, 'comfy_gate_backend_queue_depth{backend="gpu1"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_queue_depth{backend="gpu0"}'), 0);
    assert.equal((await backend('gpu1')).jobs_in_flight, 1);

    // gpu1 goes away: unreachable, then confirmed down, and its running job ends as error.
    await relay.cut();
    const down = await until(async () => {
      const b = await backend('gpu1');
      return b.state === 'down' ? b : undefined;
    }, 'gpu1 confirmed down');
    assert.notEqual(down.last_error, null);
    assert.equal(down.queue_remaining, null);
    await until(async () => ((await jobStatus(lost)) === 'error' ? true : undefined), 'the gpu1 job to end as error');
    assert.equal((await backend('gpu0')).state, 'up');

    text = await metricsOnce('comfy_gate_backend_jobs_total{backend="gpu1",outcome="error"}', 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_up{backend="gpu1"}'), 0);
    assert.equal(valueOf(text, 'comfy_gate_backend_up{backend="gpu0"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_queue_depth{backend="gpu1"}'), 0);
    assert.ok(Number.isNaN(valueOf(text, 'comfy_gate_backend_comfy_queue_remaining{backend="gpu1"}')), 'no ComfyUI queue series while it is unknown');
    assert.equal(valueOf(text, 'comfy_gate_backend_comfy_queue_remaining{backend="gpu0"}'), 0);
    assert.ok(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu1",kind="health_check"}') >= 3, 'three failed checks confirm it down');
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu1",kind="job_lost"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu0",kind="health_check"}'), 0);
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu0",kind="job_lost"}'), 0);
  });
});
