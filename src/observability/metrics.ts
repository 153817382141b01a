// Prometheus metrics of the gateway (prom-client): requests, latency, refusals, upstream errors, WebSockets, image fetches, store writes, job metering, backends.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { createBackendMetrics, type BackendMetrics } from './backend-metrics.js';
import { createRequestMetrics, statusClassOf } from './request-metrics.js';

export interface GatewayMetrics extends BackendMetrics {
  registry: Registry;
  /** One finished request: its route group, status and duration; `keyId` labels only with per-key metrics on. */
  request(route: string, status: number, seconds: number, keyId?: string): void;
  /** One refused authentication, by error code. */
  authFailure(code: string): void;
  rateLimited(keyId: string): void;
  upstreamError(code: string): void;
  websocketOpened(): void;
  websocketClosed(): void;
  /** One durable write of a store (`keys`, `usage`, `ownership`, `sessions`, `audit`). */
  storeWrite(store: string, seconds: number): void;
  /** One prompt admitted for a key (`key_id` labels only with per-key metrics on). */
  promptAdmitted(keyId: string): void;
  /** One job of a key that ran: the seconds it executed and the files it produced. */
  jobRun(keyId: string, executionSeconds: number, outputs: number): void;
  /** Where the image fetch gauges are read at each scrape (the gateway's fetch places); until set, they read 0. */
  watchImageFetches(places: ImageFetchCounts): void;
}

/** How many image URL fetches are in flight, and how many wait for a place (`--max-image-fetches`). */
export interface ImageFetchCounts {
  readonly inFlight: number;
  readonly queued: number;
}

/**
 * Creates the metrics in their own registry, with Node's process metrics. Per-key labels only when
 * `perKey` is set: one series per key can be a lot for a scraper.
 */
export function createMetrics(options: { perKey: boolean }): GatewayMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'comfy_gate_' });
  const requests = createRequestMetrics(registry, { buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300] });
  const authFailures = new Counter({
    name: 'comfy_gate_auth_failures_total',
    help: 'Refused authentications, by error code.',
    labelNames: ['code'],
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: 'comfy_gate_rate_limited_total',
    help: 'Requests refused with 429 for being over a key’s limit.',
    registers: [registry],
  });
  const upstreamErrors = new Counter({
    name: 'comfy_gate_upstream_errors_total',
    help: 'Requests ComfyUI could not answer, by error code.',
    labelNames: ['code'],
    registers: [registry],
  });
  const websockets = new Gauge({ name: 'comfy_gate_websockets_open', help: 'WebSockets being relayed now.', registers: [registry] });
  let imageFetches: ImageFetchCounts = { inFlight: 0, queued: 0 };
  new Gauge({
    name: 'comfy_gate_image_fetches_in_flight',
    help: 'Image URLs of workflow runs being fetched now (at most --max-image-fetches).',
    registers: [registry],
    collect() {
      this.set(imageFetches.inFlight);
    },
  });
  new Gauge({
    name: 'comfy_gate_image_fetches_waiting',
    help: "Image URLs of workflow runs waiting for a place among the fetches in flight (the gateway's, or their key's share).",
    registers: [registry],
    collect() {
      this.set(imageFetches.queued);
    },
  });
  const storeWrites = new Histogram({
    name: 'comfy_gate_store_write_duration_seconds',
    help: 'Time of one durable store write (append and fsync, or atomic replace), by store.',
    labelNames: ['store'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const keyRequests = options.perKey
    ? new Counter({
        name: 'comfy_gate_key_requests_total',
        help: 'Requests per key, by status class.',
        labelNames: ['key_id', 'status_class'],
        registers: [registry],
      })
    : null;
  const keyRateLimited = options.perKey
    ? new Counter({ name: 'comfy_gate_key_rate_limited_total', help: 'Requests refused with 429 per key.', labelNames: ['key_id'], registers: [registry] })
    : null;

  // Job metering: one series in all, or one per key with per-key metrics on.
  const jobLabels = options.perKey ? ['key_id'] : [];
  const jobCounter = (name: string, help: string): Counter => new Counter({ name, help, labelNames: jobLabels, registers: [registry] });
  const promptsAdmitted = jobCounter('comfy_gate_prompts_admitted_total', 'Prompts admitted.');
  const promptsRun = jobCounter('comfy_gate_prompts_run_total', 'Jobs that ran to an end in ComfyUI.');
  const executionSeconds = jobCounter('comfy_gate_execution_seconds_total', 'Seconds jobs spent executing in ComfyUI.');
  const outputsProduced = jobCounter('comfy_gate_outputs_total', 'Files jobs produced.');
  const jobLabelsOf = (keyId: string): Partial<Record<string, string>> => (options.perKey ? { key_id: keyId } : {});

  return {
    registry,
    ...createBackendMetrics(registry),
    request(route, status, seconds, keyId) {
      requests.request(route, status, seconds);
      if (keyId && keyRequests) keyRequests.inc({ key_id: keyId, status_class: statusClassOf(status) });
    },
    authFailure: (code) => authFailures.inc({ code }),
    rateLimited(keyId) {
      rateLimited.inc();
      keyRateLimited?.inc({ key_id: keyId });
    },
    upstreamError: (code) => upstreamErrors.inc({ code }),
    websocketOpened: () => websockets.inc(),
    websocketClosed: () => websockets.dec(),
    storeWrite: (store, seconds) => storeWrites.observe({ store }, seconds),
    promptAdmitted: (keyId) => promptsAdmitted.inc(jobLabelsOf(keyId)),
    watchImageFetches(places) {
      imageFetches = places;
    },
    jobRun(keyId, seconds, outputs) {
      const labels = jobLabelsOf(keyId);
      promptsRun.inc(labels);
      // A counter only goes up: a value that is not a finite positive number adds nothing.
      if (Number.isFinite(seconds) && seconds > 0) executionSeconds.inc(labels, seconds);
      if (Number.isFinite(outputs) && outputs >= 1) outputsProduced.inc(labels, Math.floor(outputs));
    },
  };
}
