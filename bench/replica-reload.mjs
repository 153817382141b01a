// `node bench/replica-reload.mjs [CHECKOUT] [--jobs N] [--runs R]`: what a PostgreSQL job store's safety-net reload costs a replica
// that wrote the rows itself (as one replica alone does, and every replica for its own jobs): wall time, CPU time and the longest
// turn of the event loop while it runs, over N finished jobs (30000) in a database of its own, R times (3). CHECKOUT is a built
// checkout (this one by default), so that two builds' reloads can be set side by side.

import { resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { checkoutArgs } from './checkout-args.mjs';
import { onServer, POSTGRES_URL } from './shared-stores.mjs';

/** Jobs created at once while the table is filled. */
const BATCH = 500;

const { checkout, jobs: jobCount, runs } = checkoutArgs('node bench/replica-reload.mjs [CHECKOUT] [--jobs N] [--runs R]', { '--jobs': 30_000, '--runs': 3 });

const { PostgresDatabase, PostgresJobStore } = await import(resolve(checkout, 'dist/src/store/postgres/index.js'));

/** A job as it is once it ran: no kept prompt, no outputs (the smallest row a reload reads). */
function finishedJob(index, at) {
  return {
    id: `bench-job-${index}`,
    key_id: 'bench',
    client_id: null,
    backend: 'default',
    upstream_id: `bench-prompt-${index}`,
    status: 'success',
    admitted_at: at + index / 1e6,
    forwarded_at: at,
    started_at: at,
    finished_at: at,
    execution_seconds: 1,
    outputs: [],
    error: null,
    request: null,
    front: false,
    webhook: null,
  };
}

const name = `comfy_gate_reload_bench_${process.pid}`;
await onServer(`CREATE DATABASE ${name}`);
try {
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  const database = await PostgresDatabase.open({ url: url.href });
  // No reload of its own during the runs: each is asked for below.
  const jobs = new PostgresJobStore({ database, reloadIntervalMs: 3_600_000 });
  try {
    await jobs.open();
    const at = Date.now() / 1000;
    for (let start = 0; start < jobCount; start += BATCH) {
      const batch = Array.from({ length: Math.min(BATCH, jobCount - start) }, (_, offset) => finishedJob(start + offset, at));
      await Promise.all(batch.map((job) => jobs.create(job)));
    }
    console.log(`${checkout}: ${jobCount} jobs written by this store`);
    for (let run = 1; run <= runs; run += 1) {
      const delay = monitorEventLoopDelay({ resolution: 1 });
      delay.enable();
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      // The timer's reload, asked for now: the store's feed is not part of its interface.
      await jobs.feed.requestReload();
      const wallMs = performance.now() - started;
      const cpu = process.cpuUsage(cpuBefore);
      delay.disable();
      const cpuMs = (cpu.user + cpu.system) / 1000;
      console.log(`run ${run}: ${wallMs.toFixed(0)} ms wall, ${cpuMs.toFixed(0)} ms CPU, longest event-loop delay ${(delay.max / 1e6).toFixed(1)} ms`);
    }
  } finally {
    await jobs.close();
    await database.close();
  }
} finally {
  await onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}
