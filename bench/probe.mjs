// Latency probe for the bench (its own process): requests through the gateway on a few connections, each tagged by whether a usage compaction was running.
// Usage: node bench/probe.mjs URL METHOD API_KEY USER_DIRECTORY SECONDS; prints one JSON line.

import { existsSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const [url, method, apiKey, directory, seconds] = [process.argv[2], process.argv[3], process.argv[4], process.argv[5], Number(process.argv[6])];
const INTERVAL_MS = 5;
/** Connections probing at once, each sending a request every INTERVAL_MS at most: enough samples during the short compactions. */
const CONNECTIONS = 4;
/** Present while the gateway merges its usage journal into a rewritten api_usage.json. */
const COMPACTING = join(directory, 'api_usage.journal.compacting');
const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });

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
const end = performance.now() + seconds * 1000;

/** One connection's requests until the end, each sample tagged compacting when the merge ran at its start or its end. */
async function probe() {
  while (performance.now() < end) {
    const compactingBefore = existsSync(COMPACTING);
    const started = performance.now();
    await send();
    const latency = performance.now() - started;
    samples[compactingBefore || existsSync(COMPACTING) ? 'compacting' : 'steady'].push(latency);
    await sleep(Math.max(0, INTERVAL_MS - latency));
  }
}

/** Counts the compactions: how often the journal set aside appears. */
async function watchCompactions() {
  let count = 0;
  let was = false;
  while (performance.now() < end) {
    const now = existsSync(COMPACTING);
    if (now && !was) count += 1;
    was = now;
    await sleep(2);
  }
  return count;
}

const [compactions] = await Promise.all([watchCompactions(), ...Array.from({ length: CONNECTIONS }, probe)]);
agent.destroy();

function summary(values) {
  const sorted = values.sort((a, b) => a - b);
  const at = (p) => Math.round(1000 * (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN)) / 1000;
  return { requests: sorted.length, p50_ms: at(50), p99_ms: at(99), max_ms: at(100) };
}
console.log(JSON.stringify({ compactions, steady: summary(samples.steady), compacting: summary(samples.compacting) }));
