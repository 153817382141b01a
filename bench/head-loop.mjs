// A small load loop for HEAD requests, which wrk cannot time (it waits for a body after a HEAD answer): keep-alive connections each sending one request after another.

import { Agent, request } from 'node:http';
import { round } from './processes.mjs';

/** Sends HEAD to `url` on `connections` connections for `seconds`: {rps, p50_ms, p99_ms}; rejects on any answer but 200. */
export async function runHeadLoop(url, { connections, seconds, apiKey = '' }) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const headers = apiKey ? { 'X-API-Key': apiKey } : {};
  const latencies = [];
  const started = performance.now();
  const end = started + seconds * 1000;
  const send = () =>
    new Promise((resolve, reject) => {
      const req = request(url, { method: 'HEAD', agent, headers }, (res) => {
        res.resume();
        res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HEAD ${url}: status ${res.statusCode}`))));
      });
      req.once('error', reject);
      req.end();
    });
  const connection = async () => {
    while (performance.now() < end) {
      const sent = performance.now();
      await send();
      latencies.push(performance.now() - sent);
    }
  };
  try {
    await Promise.all(Array.from({ length: connections }, connection));
  } finally {
    agent.destroy();
  }
  const elapsedS = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (p) => round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))], 3);
  return { rps: Math.round(latencies.length / elapsedS), p50_ms: at(50), p99_ms: at(99) };
}
