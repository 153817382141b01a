// The request metrics kept as plain numbers read out exactly as prom-client's own Counter and Histogram would, fed the same requests.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Counter, Histogram, Registry } from 'prom-client';
import { createRequestMetrics, statusClassOf } from '../../src/observability/request-metrics.js';

const BUCKETS = [0.001, 0.01, 0.1, 1, 10];

interface Request {
  route: string;
  status: number;
  seconds: number;
}

/** The series of a Prometheus text: `name{labels sorted}` → value, with the HELP and TYPE lines. */
function seriesOf(text: string): Map<string, string> {
  const series = new Map<string, string>();
  for (const line of text.split('\n').filter(Boolean)) {
    if (line.startsWith('#')) {
      series.set(line, '');
      continue;
    }
    const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `a series line: ${line}`);
    const labels = (match[2] ?? '').split(',').filter(Boolean).sort().join(',');
    series.set(`${match[1]}{${labels}}`, match[3]!);
  }
  return series;
}

/** The same requests through prom-client's own metrics, as the gateway counted them before. */
function stockMetrics(requests: readonly Request[]): Registry {
  const registry = new Registry();
  const counter = new Counter({
    name: 'comfy_gate_http_requests_total',
    help: 'Requests answered, by route group and status class.',
    labelNames: ['route', 'status_class'],
    registers: [registry],
  });
  const histogram = new Histogram({
    name: 'comfy_gate_http_request_duration_seconds',
    help: 'Time from request to the end of the response, by route group.',
    labelNames: ['route'],
    buckets: BUCKETS,
    registers: [registry],
  });
  for (const { route, status, seconds } of requests) {
    counter.inc({ route, status_class: statusClassOf(status) });
    histogram.observe({ route }, seconds);
  }
  return registry;
}

const request = fc.record({
  route: fc.constantFrom('queue', 'prompt', 'view', 'other'),
  status: fc.integer({ min: 100, max: 999 }),
  // Bounds themselves, values between them and over the last one.
  seconds: fc.oneof(fc.constantFrom(...BUCKETS, 0), fc.double({ min: 0, max: 20, noNaN: true })),
});

describe('request metrics', () => {
  test('read out as prom-client reads its own, for any requests, scrape after scrape', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { maxLength: 60 }), fc.array(request, { maxLength: 60 }), async (first, second) => {
        const registry = new Registry();
        const metrics = createRequestMetrics(registry, { buckets: BUCKETS });
        for (const { route, status, seconds } of first) metrics.request(route, status, seconds);
        assert.deepEqual(seriesOf(await registry.metrics()), seriesOf(await stockMetrics(first).metrics()));
        for (const { route, status, seconds } of second) metrics.request(route, status, seconds);
        assert.deepEqual(seriesOf(await registry.metrics()), seriesOf(await stockMetrics([...first, ...second]).metrics()), 'a scrape counts nothing twice');
      }),
      { numRuns: 200 },
    );
  });

  test('a request lands in the first bucket whose bound it does not exceed; one over every bound only in +Inf', async () => {
    const registry = new Registry();
    const metrics = createRequestMetrics(registry, { buckets: BUCKETS });
    metrics.request('queue', 200, 0.01);
    metrics.request('queue', 404, 11);
    const series = seriesOf(await registry.metrics());
    assert.equal(series.get('comfy_gate_http_request_duration_seconds_bucket{le="0.001",route="queue"}'), '0');
    assert.equal(series.get('comfy_gate_http_request_duration_seconds_bucket{le="0.01",route="queue"}'), '1');
    assert.equal(series.get('comfy_gate_http_request_duration_seconds_bucket{le="10",route="queue"}'), '1');
    assert.equal(series.get('comfy_gate_http_request_duration_seconds_bucket{le="+Inf",route="queue"}'), '2');
    assert.equal(series.get('comfy_gate_http_request_duration_seconds_sum{route="queue"}'), '11.01');
    assert.equal(series.get('comfy_gate_http_requests_total{route="queue",status_class="2xx"}'), '1');
    assert.equal(series.get('comfy_gate_http_requests_total{route="queue",status_class="4xx"}'), '1');
  });
});
