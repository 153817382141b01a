// Latency probe for the bench (its own process): one request every few ms through the gateway, each tagged by whether a usage compaction was running.
// Usage: node bench/probe.mjs URL METHOD API_KEY USER_DIRECTORY SECONDS; prints one JSON line.

import { existsSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const [url, method, apiKey, directory, seconds] = [process.argv[2], process.argv[3], process.argv[4], process.argv[5], Number(process.argv[6])];
const INTERVAL_MS = 5;
/** Present while the gateway merges its usage journal into a rewritten api_usage.json. */
const COMPACTING = join(directory, 'api_usage.journal.compacting');
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function send() {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers: { 'X-API-Key': apiKey } }, (res) => {
      res.resume();
      res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
    });
    req.once('error', reject);
    req.end();
  });
}

const samples = { steady: [], compacting: [] };
let compactions = 0;
let wasCompacting = false;
const end = performance.now() + seconds * 1000;
while (performance.now() < end) {
  const compactingBefore = existsSync(COMPACTING);
  const started = performance.now();
  await send();
  const latency = performance.now() - started;
  const compacting = compactingBefore || existsSync(COMPACTING);
  if (compacting && !wasCompacting) compactions += 1;
  wasCompacting = compacting;
  samples[compacting ? 'compacting' : 'steady'].push(latency);
  await sleep(Math.max(0, INTERVAL_MS - latency));
}
agent.destroy();

function summary(values) {
  const sorted = values.sort((a, b) => a - b);
  const at = (p) => Math.round(1000 * (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN)) / 1000;
  return { requests: sorted.length, p50_ms: at(50), p99_ms: at(99), max_ms: at(100) };
}
console.log(JSON.stringify({ compactions, steady: summary(samples.steady), compacting: summary(samples.compacting) }));
