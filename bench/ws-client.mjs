// WebSocket client for the bench (its own process): queues the prompt the upstream reports on, opens many sockets and measures how late the progress messages arrive.
// Usage: node bench/ws-client.mjs WS_URL SOCKETS SECONDS [API_KEY]; prints one JSON line.

import WebSocket from 'ws';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROMPT_ID } from './ws-upstream.mjs';

const [url, socketCount, seconds, apiKey] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5]];
const OPEN_AT_ONCE = 50;
const WARM_UP_MS = 2000;
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Opens one socket; resolves it once open. */
function openSocket(index) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}?clientId=bench-${index}`, { headers: apiKey ? { 'X-API-Key': apiKey } : {}, perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
  });
}

/** Queues the prompt with a fixed id, so that through the gateway it is the key's own and its progress reaches the key's sockets. */
async function queuePrompt() {
  const origin = new URL(url.replace(/^ws/, 'http')).origin;
  const headers = { 'content-type': 'application/json', ...(apiKey ? { 'x-api-key': apiKey } : {}) };
  const response = await fetch(`${origin}/prompt`, { method: 'POST', headers, body: JSON.stringify({ prompt: {}, prompt_id: PROMPT_ID, client_id: 'bench-0' }) });
  if (!response.ok) throw new Error(`POST /prompt answered ${response.status}: ${await response.text()}`);
}

await queuePrompt();
const latencies = new Float64Array(socketCount * (seconds + 1) * 12);
let count = 0;
let recording = false;
const sockets = [];
for (let i = 0; i < socketCount; i += OPEN_AT_ONCE) {
  const batch = await Promise.all(Array.from({ length: Math.min(OPEN_AT_ONCE, socketCount - i) }, (_, j) => openSocket(i + j)));
  for (const ws of batch) {
    ws.on('message', (data) => {
      const arrived = nowMs();
      if (recording && count < latencies.length) latencies[count++] = arrived - JSON.parse(data.toString()).data.sent_ms;
    });
    sockets.push(ws);
  }
}
console.error(`${sockets.length} sockets open`);
await sleep(WARM_UP_MS);
recording = true;
await sleep(seconds * 1000);
recording = false;
for (const ws of sockets) ws.terminate();

const sorted = latencies.subarray(0, count).sort();
const at = (p) => sorted[Math.min(count - 1, Math.floor((p / 100) * count))];
const round3 = (value) => Math.round(value * 1000) / 1000;
console.log(JSON.stringify({ sockets: sockets.length, messages: count, msgs_per_s: Math.round(count / seconds), p50_ms: round3(at(50)), p99_ms: round3(at(99)), max_ms: round3(sorted[count - 1]) }));
