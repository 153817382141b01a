// Unit tests of the job metering counters of GatewayMetrics: one series in all, or one per key with per-key metrics.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
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
