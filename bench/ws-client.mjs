// WebSocket client for the bench (its own process): opens many sockets, queues one prompt for each (its client_id the socket's clientId) and measures how late the progress messages and preview frames arrive.
// Usage: node bench/ws-client.mjs WS_URL SOCKETS SECONDS PREVIEW_SOCKETS [API_KEY]; prints `recording` when its sockets are open and warm, then one JSON line.

import WebSocket from 'ws';
import { setTimeout as sleep } from 'node:timers/promises';
import { nowMs, previewSentMs, promptIdOf } from './ws-upstream.mjs';

const [url, socketCount, seconds, previewSockets, apiKey] = [
  process.argv[2],
  Number(process.argv[3]),
  Number(process.argv[4]),
  Number(process.argv[5]),
  process.argv[6],
];
const OPEN_AT_ONCE = 50;
const WARM_UP_MS = 2000;
const CLOSE_AFTER_MS = 2000;
/** What ComfyUI's frontend says first on a socket that takes previews with metadata. */
const TAKES_PREVIEW_METADATA = JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } });

/** Opens one socket; resolves it once open. */
function openSocket(index) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}?clientId=bench-${index}`, { headers: apiKey ? { 'X-API-Key': apiKey } : {}, perMessageDeflate: false });
    ws.once('open', () => {
      if (index < previewSockets) ws.send(TAKES_PREVIEW_METADATA);
      resolve(ws);
    });
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
  });
}

/** Queues socket `index`'s prompt: its events go to the socket whose clientId is bench-`index` (through the gateway: the key's socket of that clientId). */
async function queuePrompt(index) {
  const origin = new URL(url.replace(/^ws/, 'http')).origin;
  const headers = { 'content-type': 'application/json', ...(apiKey ? { 'x-api-key': apiKey } : {}) };
  const response = await fetch(`${origin}/prompt`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ prompt: {}, prompt_id: promptIdOf(index), client_id: `bench-${index}` }),
  });
  if (!response.ok) throw new Error(`POST /prompt answered ${response.status}: ${await response.text()}`);
}

/** Arrival delays of one kind of message, in a buffer sized for the run. */
function recorder(perSecond) {
  return { latencies: new Float64Array(Math.ceil(perSecond * (seconds + 1) * 1.2)), count: 0 };
}

function summary({ latencies, count }) {
  const sorted = latencies.subarray(0, count).sort();
  const at = (p) => sorted[Math.min(count - 1, Math.floor((p / 100) * count))];
  const round3 = (value) => Math.round(value * 1000) / 1000;
  return { messages: count, msgs_per_s: Math.round(count / seconds), p50_ms: round3(at(50)), p99_ms: round3(at(99)), max_ms: round3(sorted[count - 1]) };
}

const progress = recorder(socketCount * 10);
const previews = recorder(previewSockets * 5);
let recording = false;
const sockets = [];
for (let i = 0; i < socketCount; i += OPEN_AT_ONCE) {
  const batch = await Promise.all(Array.from({ length: Math.min(OPEN_AT_ONCE, socketCount - i) }, (_, j) => openSocket(i + j)));
  for (const ws of batch) {
    ws.on('message', (data, isBinary) => {
      const arrived = nowMs();
      if (!recording) return;
      const into = isBinary ? previews : progress;
      if (into.count < into.latencies.length)
        into.latencies[into.count++] = arrived - (isBinary ? previewSentMs(data) : JSON.parse(data.toString()).data.sent_ms);
    });
    sockets.push(ws);
  }
}
for (let i = 0; i < socketCount; i += OPEN_AT_ONCE) {
  await Promise.all(Array.from({ length: Math.min(OPEN_AT_ONCE, socketCount - i) }, (_, j) => queuePrompt(i + j)));
}
console.error(`${sockets.length} sockets open, each with its prompt queued`);
await sleep(WARM_UP_MS);
console.log('recording');
recording = true;
await sleep(seconds * 1000);
recording = false;
console.log(JSON.stringify({ sockets: sockets.length, ...summary(progress), previews: { sockets: previewSockets, ...summary(previews) } }));
// The sockets close after the bench has read the gateway's event-loop delay of the relaying (closing 1,000 at once is not relaying).
await sleep(CLOSE_AFTER_MS);
for (const ws of sockets) ws.terminate();
