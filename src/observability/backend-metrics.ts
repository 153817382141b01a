// Prometheus metrics of each ComfyUI backend: its health, its queues (read from the pool at each scrape), and the jobs and errors counted on it.

import { Counter, Gauge, type Registry } from 'prom-client';
import type { BackendStatus } from '../backends/backend-pool.js';
import type { JobStatus } from '../store/types.js';

/** What the metrics are told of the backends. */
export interface BackendMetrics {
  /** Where the per-backend gauges are read at each scrape (the pool's status); until set, they have no series. */
  watchBackends(read: () => readonly BackendStatus[]): void;
  /** A job that ended on `backend`, by its final status. */
  backendJobEnded(backend: string, outcome: JobStatus): void;
  /** A job `backend` lost (confirmed down, or restarted without it), whether it was placed again or ended. */
  backendJobLost(backend: string): void;
}

/** The final statuses counted per backend; each has a series from the first scrape on. */
const OUTCOMES: readonly JobStatus[] = ['success', 'error', 'interrupted', 'cancelled'];

/** Registers the per-backend metrics in `registry`. */
export function createBackendMetrics(registry: Registry): BackendMetrics {
  let read = (): readonly BackendStatus[] => [];
  /** Failed health checks already counted, per backend (each backend's health reports its running total). */
  const countedChecks = new Map<string, number>();

  new Gauge({
    name: 'comfy_gate_backend_up',
    help: 'Whether the backend answered its last health check (1) or not (0).',
    labelNames: ['backend'],
    registers: [registry],
    collect() {
      this.reset();
      for (const backend of read()) this.set({ backend: backend.name }, backend.state === 'up' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'comfy_gate_backend_queue_depth',
    help: "The gateway's jobs queued or running on the backend.",
    labelNames: ['backend'],
    registers: [registry],
    collect() {
      this.reset();
      for (const backend of read()) this.set({ backend: backend.name }, backend.jobsInFlight);
    },
  });
  new Gauge({
    name: 'comfy_gate_backend_comfy_queue_remaining',
    help: "ComfyUI's own queue_remaining (every client's jobs) at the backend's last good health check; no series while unknown.",
    labelNames: ['backend'],
    registers: [registry],
    collect() {
      this.reset();
      for (const backend of read()) if (backend.queueRemaining !== null) this.set({ backend: backend.name }, backend.queueRemaining);
    },
  });
  const jobs = new Counter({
    name: 'comfy_gate_backend_jobs_total',
    help: 'Jobs that ended on the backend, by outcome.',
    labelNames: ['backend', 'outcome'],
    registers: [registry],
    collect() {
      for (const backend of read()) for (const outcome of OUTCOMES) this.inc({ backend: backend.name, outcome }, 0);
    },
  });
  const errors = new Counter({
    name: 'comfy_gate_backend_errors_total',
    help: 'Failed health checks (kind="health_check") and jobs the backend lost (kind="job_lost").',
    labelNames: ['backend', 'kind'],
    registers: [registry],
    collect() {
      for (const backend of read()) {
        // A backend's count of failed checks only grows: what it gained since the last scrape is added.
        this.inc({ backend: backend.name, kind: 'health_check' }, backend.failedChecks - (countedChecks.get(backend.name) ?? 0));
        this.inc({ backend: backend.name, kind: 'job_lost' }, 0);
        countedChecks.set(backend.name, backend.failedChecks);
      }
    },
  });

  return {
    watchBackends(reader) {
      read = reader;
    },
    backendJobEnded(backend, outcome) {
      if (backend !== '') jobs.inc({ backend, outcome });
    },
    backendJobLost(backend) {
      errors.inc({ backend, kind: 'job_lost' });
    },
  };
}
