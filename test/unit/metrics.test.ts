// Unit tests of GatewayMetrics: the job metering counters (one series in all, or one per key) and the per-backend series.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BackendStatus } from '../../src/backends/backend-pool.js';
import { createMetrics } from '../../src/observability/metrics.js';

/** The value of one series in the Prometheus text, or NaN when it is absent. */
function valueOf(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

describe('job metering metrics', () => {
  test('without per-key metrics: one unlabelled series per counter, there from the start', async () => {
    const metrics = createMetrics({ perKey: false });
    const before = await metrics.registry.metrics();
    for (const name of ['prompts_admitted', 'prompts_run', 'execution_seconds', 'outputs']) assert.equal(valueOf(before, `comfy_gate_${name}_total`), 0, name);
    metrics.promptAdmitted('a');
    metrics.promptAdmitted('b');
    metrics.jobRun('a', 12.5, 3);
    metrics.jobRun('b', 0.5, 0);
    // A counter never goes down: what is not a finite positive number adds nothing, but the run is counted.
    metrics.jobRun('b', Number.NaN, -1);
    const text = await metrics.registry.metrics();
    assert.equal(valueOf(text, 'comfy_gate_prompts_admitted_total'), 2);
    assert.equal(valueOf(text, 'comfy_gate_prompts_run_total'), 3);
    assert.equal(valueOf(text, 'comfy_gate_execution_seconds_total'), 13);
    assert.equal(valueOf(text, 'comfy_gate_outputs_total'), 3);
    assert.doesNotMatch(text, /key_id=/);
  });

  test('with per-key metrics: a series per key', async () => {
    const metrics = createMetrics({ perKey: true });
    metrics.promptAdmitted('a');
    metrics.jobRun('a', 4, 2);
    metrics.jobRun('b', 1.5, 1);
    const text = await metrics.registry.metrics();
    assert.equal(valueOf(text, 'comfy_gate_prompts_admitted_total{key_id="a"}'), 1);
    assert.ok(Number.isNaN(valueOf(text, 'comfy_gate_prompts_admitted_total{key_id="b"}')), 'no series for a key without prompts');
    assert.equal(valueOf(text, 'comfy_gate_prompts_run_total{key_id="b"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_execution_seconds_total{key_id="a"}'), 4);
    assert.equal(valueOf(text, 'comfy_gate_execution_seconds_total{key_id="b"}'), 1.5);
    assert.equal(valueOf(text, 'comfy_gate_outputs_total{key_id="a"}'), 2);
  });
});

/** A backend's status as the pool reports it, with `changes` applied. */
function status(name: string, changes: Partial<BackendStatus> = {}): BackendStatus {
  return {
    name,
    url: `http://${name}:8188`,
    weight: 1,
    events: 'connected',
    jobsInFlight: 0,
    child: null,
    state: 'up',
    since: 1,
    lastError: null,
    queueRemaining: 0,
    failedChecks: 0,
    ...changes,
  };
}

describe('backend metrics', () => {
  test('no backend series until the pool is watched', async () => {
    const text = await createMetrics({ perKey: false }).registry.metrics();
    assert.doesNotMatch(text, /backend="/);
  });

  test('gauges are read from the pool at each scrape; an unknown ComfyUI queue has no series', async () => {
    const metrics = createMetrics({ perKey: false });
    let backends = [status('gpu0', { jobsInFlight: 3, queueRemaining: 5 }), status('gpu1', { state: 'starting', queueRemaining: null })];
    metrics.watchBackends(() => backends);
    let text = await metrics.registry.metrics();
    assert.equal(valueOf(text, 'comfy_gate_backend_up{backend="gpu0"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_up{backend="gpu1"}'), 0, 'starting is not up');
    assert.equal(valueOf(text, 'comfy_gate_backend_queue_depth{backend="gpu0"}'), 3);
    assert.equal(valueOf(text, 'comfy_gate_backend_queue_depth{backend="gpu1"}'), 0);
    assert.equal(valueOf(text, 'comfy_gate_backend_comfy_queue_remaining{backend="gpu0"}'), 5);
    assert.doesNotMatch(text, /comfy_gate_backend_comfy_queue_remaining\{backend="gpu1"\}/);
    assert.doesNotMatch(text, /NaN/);

    backends = [status('gpu0', { state: 'unreachable', jobsInFlight: 1, queueRemaining: null }), status('gpu1', { queueRemaining: 2 })];
    text = await metrics.registry.metrics();
    assert.equal(valueOf(text, 'comfy_gate_backend_up{backend="gpu0"}'), 0);
    assert.equal(valueOf(text, 'comfy_gate_backend_up{backend="gpu1"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_queue_depth{backend="gpu0"}'), 1);
    assert.doesNotMatch(text, /comfy_gate_backend_comfy_queue_remaining\{backend="gpu0"\}/, 'the series goes once the queue is unknown');
    assert.equal(valueOf(text, 'comfy_gate_backend_comfy_queue_remaining{backend="gpu1"}'), 2);
  });

  test('jobs by outcome and errors by kind: every series there from the first scrape, failed checks counted once', async () => {
    const metrics = createMetrics({ perKey: false });
    let failedChecks = 2;
    metrics.watchBackends(() => [status('gpu0'), status('gpu1', { state: 'down', failedChecks })]);
    let text = await metrics.registry.metrics();
    for (const backend of ['gpu0', 'gpu1'])
      for (const outcome of ['success', 'error', 'interrupted', 'cancelled'])
        assert.equal(valueOf(text, `comfy_gate_backend_jobs_total{backend="${backend}",outcome="${outcome}"}`), 0, `${backend} ${outcome}`);
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu0",kind="health_check"}'), 0);
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu0",kind="job_lost"}'), 0);
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu1",kind="health_check"}'), 2);

    metrics.backendJobEnded('gpu0', 'success');
    metrics.backendJobEnded('gpu0', 'success');
    metrics.backendJobEnded('gpu1', 'error');
    metrics.backendJobEnded('', 'cancelled');
    metrics.backendJobLost('gpu1');
    failedChecks = 5;
    text = await metrics.registry.metrics();
    assert.equal(valueOf(text, 'comfy_gate_backend_jobs_total{backend="gpu0",outcome="success"}'), 2);
    assert.equal(valueOf(text, 'comfy_gate_backend_jobs_total{backend="gpu1",outcome="error"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_jobs_total{backend="gpu1",outcome="cancelled"}'), 0);
    assert.doesNotMatch(text, /backend=""/, 'a job that never reached a backend is not counted on one');
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu1",kind="job_lost"}'), 1);
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu1",kind="health_check"}'), 5);
    text = await metrics.registry.metrics();
    assert.equal(valueOf(text, 'comfy_gate_backend_errors_total{backend="gpu1",kind="health_check"}'), 5, 'a scrape adds nothing when no check failed since');
  });
});
