// Runs wrk against a URL and turns its report into {rps, p50_ms, p99_ms}; a measured run adds a warm-up, the machine's load and the gateway's event-loop delay.

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readEventLoopDelay, resetEventLoopDelay } from './event-loop.mjs';
import { cpuDuring } from './machine.mjs';
import { round } from './processes.mjs';

const SCRIPT = fileURLToPath(new URL('./wrk.lua', import.meta.url));

/**
 * Loads `url` (POST with a small prompt, `promptBytes` larger when set, or `method` without a body, with a `Range` header when `range` is set) with `connections` keep-alive connections for `seconds`, from one wrk thread (on two cores a
 * second thread only takes CPU from the servers: it lowered direct throughput by a fifth). Rejects if any
 * request failed or got a non-2xx/3xx answer.
 */
export async function runWrk(url, { connections, seconds, apiKey = '', method = 'POST', range = '', promptBytes = 0 }) {
  const args = ['-t', '1', '-c', String(connections), '-d', `${seconds}s`, '--timeout', '5s', '-s', SCRIPT, url];
  const stdout = await new Promise((resolve, reject) => {
    execFile(
      'wrk',
      args,
      { env: { ...process.env, BENCH_API_KEY: apiKey, BENCH_METHOD: method, BENCH_RANGE: range, BENCH_PROMPT_BYTES: String(promptBytes) } },
      (error, out, err) => (error ? reject(new Error(`wrk failed: ${err || error.message}`)) : resolve(out)),
    );
  });
  const line = /^BENCH_RESULT (.*)$/m.exec(stdout);
  if (!line) throw new Error(`wrk printed no result:\n${stdout}`);
  const report = JSON.parse(line[1]);
  const failed = Object.entries(report.errors).filter(([, count]) => count > 0);
  if (failed.length > 0) throw new Error(`${url}: ${failed.map(([kind, count]) => `${count} ${kind} errors`).join(', ')}`);
  return {
    requests: report.requests,
    rps: Math.round(report.requests / (report.duration_us / 1e6)),
    p50_ms: round(report.p50_us / 1000, 3),
    p99_ms: round(report.p99_us / 1000, 3),
  };
}

/**
 * A warm-up of `warmUpS`, then a measured wrk run of `seconds` (`load` as runWrk takes it) with what the
 * rest of the machine did meanwhile, and the gateway's event-loop delay over it when `gatewayUrl` is given.
 */
export async function measureLoad(url, load, { warmUpS, seconds, gatewayUrl }) {
  await runWrk(url, { ...load, seconds: warmUpS });
  if (gatewayUrl) await resetEventLoopDelay(gatewayUrl);
  const [figures, cpu] = await Promise.all([runWrk(url, { ...load, seconds }), cpuDuring(seconds)]);
  return { ...figures, ...cpu, ...(gatewayUrl ? { event_loop_delay: await readEventLoopDelay(gatewayUrl) } : {}) };
}
