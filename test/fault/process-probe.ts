// What a running gateway holds, read from /proc: open file descriptors and resident memory; and a liveness check.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';

/** Number of open file descriptors of `pid`. */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Resident memory of `pid` in MiB: now (VmRSS) and its peak so far (VmHWM). */
export function memoryMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) / 1024;
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

/** The gateway's resource use at a quiet moment, to compare against later. */
export interface Baseline {
  fds: number;
  rssMiB: number;
}

/** Waits until the fd count has held still for 1.5 s (idle keep-alive sockets closed), then records it with the memory in use. */
export async function quietBaseline(gateway: GatewayProcess): Promise<Baseline> {
  let count = openFds(gateway.pid);
  let stableSince = Date.now();
  const deadline = Date.now() + 15_000;
  while (Date.now() - stableSince < 1500 && Date.now() < deadline) {
    await sleep(100);
    const now = openFds(gateway.pid);
    if (now !== count) [count, stableSince] = [now, Date.now()];
  }
  return { fds: count, rssMiB: memoryMiB(gateway.pid).rss };
}

/**
 * Polls until `pid` has at most `atMost` fds, or `timeoutMs` passes; resolves the last count.
 * Idle keep-alive sockets (5 s on the client side) need that long to close.
 */
export async function settledFds(pid: number, atMost: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let count = openFds(pid);
  while (count > atMost && Date.now() < deadline) {
    await sleep(100);
    count = openFds(pid);
  }
  return count;
}

/**
 * Asserts that the gateway survived: the process runs, /healthz answers 200, its fds return to the
 * baseline (plus `fdSlack`) within the keep-alive timeouts, and its memory grew by less than `rssSlackMiB`.
 */
export async function assertHealthy(gateway: GatewayProcess, baseline: Baseline, options: { fdSlack?: number; rssSlackMiB?: number } = {}): Promise<void> {
  const { fdSlack = 4, rssSlackMiB = 64 } = options;
  assert.equal(gateway.child.exitCode, null, `the gateway exited:\n${gateway.output().stderr}`);
  assert.equal(gateway.child.signalCode, null, 'the gateway was killed');
  assert.equal((await send(gateway.url, '/healthz')).status, 200);
  const fds = await settledFds(gateway.pid, baseline.fds + fdSlack, 12_000);
  assert.ok(fds <= baseline.fds + fdSlack, `fds leaked: ${fds} open, ${baseline.fds} at the start (slack ${fdSlack})`);
  const { rss } = memoryMiB(gateway.pid);
  assert.ok(rss < baseline.rssMiB + rssSlackMiB, `memory grew from ${baseline.rssMiB.toFixed(0)} MiB to ${rss.toFixed(0)} MiB`);
}
