// WebSocket client for the bench (its own process): opens many sockets, queues one prompt for each (its client_id the socket's clientId) and measures how late the progress messages and preview frames arrive.
// Usage: node bench/ws-client.mjs WS_URL SOCKETS SECONDS PREVIEW_SOCKETS [API_KEY [DIRECT_WS_URL]]; prints `recording` when its sockets are open and warm, then one JSON line.
// With DIRECT_WS_URL (the upstream's own), every MIRROR_EVERY-th index also has a socket straight to the upstream, which sends it the same
// messages in the same turn (bench/ws-upstream.mjs): those messages are timed both ways, and what the way through WS_URL adds is taken
// message by message.

import WebSocket from 'ws';
import { setTimeout as sleep } from 'node:timers/promises';
import { nowMs, previewMetadata, promptIdOf } from './ws-upstream.mjs';

const [url, socketCount, seconds, previewSockets, apiKey, directUrl] = [
  process.argv[2],
  Number(process.argv[3]),
  Number(process.argv[4]),
  Number(process.argv[5]),
  process.argv[6],
  process.argv[7],
];
const OPEN_AT_ONCE = 50;
const WARM_UP_MS = 2000;
const CLOSE_AFTER_MS = 2000;
/**
 * Indices with a direct socket too: one in 20 (50 of 1,000 sockets, 3 of the 50 with previews). Every
 * socket mirrored doubled what the upstream sends and the client reads, and on two cores that load
 * itself made the direct p99 10–22 ms (1.4–7 ms unmirrored).
 */
const MIRROR_EVERY = 20;
/** What ComfyUI's frontend says first on a socket that takes previews with metadata. */
const TAKES_PREVIEW_METADATA = JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } });

/** Opens socket `index` of `base` (with the key, when given); resolves it once open. */
function openSocket(base, index, key) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base}?clientId=bench-${index}`, { headers: key ? { 'X-API-Key': key } : {}, perMessageDeflate: false });
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

/** Delays of one kind of message, in a buffer sized for `perSecond` of them. */
function recorder(perSecond) {
  return { latencies: new Float64Array(Math.ceil(perSecond * (seconds + 1) * 1.2)), count: 0 };
}

function note(into, value) {
  if (into.count < into.latencies.length) into.latencies[into.count++] = value;
}

function summary({ latencies, count }) {
  const sorted = latencies.subarray(0, count).sort();
  const at = (p) => sorted[Math.min(count - 1, Math.floor((p / 100) * count))];
  const round3 = (value) => Math.round(value * 1000) / 1000;
  return { messages: count, msgs_per_s: Math.round(count / seconds), p50_ms: round3(at(50)), p99_ms: round3(at(99)), max_ms: round3(sorted[count - 1]) };
}

const mirrored = Math.ceil(socketCount / MIRROR_EVERY);
const mirroredPreviews = Math.ceil(previewSockets / MIRROR_EVERY);
/** Each way's delays (arrival minus send time); of the messages timed both ways, how much later each came through WS_URL than directly. */
const through = { progress: recorder(socketCount * 10), previews: recorder(previewSockets * 5) };
const direct = { progress: recorder(mirrored * 10), previews: recorder(mirroredPreviews * 5) };
const added = { progress: recorder(mirrored * 10), previews: recorder(mirroredPreviews * 5) };
/** Mirrored messages that came one way so far, by kind, prompt and seq: the arrival time, negative when it came through WS_URL. */
const firstArrivals = new Map();
let recording = false;

/** Times an arrival; once both copies of a mirrored message have come, what the way through WS_URL added. */
function arrived(isDirect, isMirrored, data, isBinary) {
  const at = nowMs();
  if (!recording) return;
  const kind = isBinary ? 'previews' : 'progress';
  const message = isBinary ? previewMetadata(data) : JSON.parse(data.toString()).data;
  note((isDirect ? direct : through)[kind], at - message.sent_ms);
  if (!isMirrored) return;
  const id = `${kind} ${message.prompt_id} ${message.seq}`;
  const first = firstArrivals.get(id);
  if (first === undefined) {
    firstArrivals.set(id, isDirect ? at : -at);
    return;
  }
  firstArrivals.delete(id);
  note(added[kind], isDirect ? -first - at : at - first);
}

/** Opens the sockets of `base` at `indices`, OPEN_AT_ONCE at a time, each timing what it gets as one way. */
async function openAll(base, indices, key, isDirect) {
  const sockets = [];
  for (let i = 0; i < indices.length; i += OPEN_AT_ONCE) {
    const batch = indices.slice(i, i + OPEN_AT_ONCE);
    const opened = await Promise.all(batch.map((index) => openSocket(base, index, key)));
    opened.forEach((ws, j) => {
      const isMirrored = directUrl !== undefined && batch[j] % MIRROR_EVERY === 0;
      ws.on('message', (data, isBinary) => arrived(isDirect, isMirrored, data, isBinary));
    });
    sockets.push(...opened);
  }
  return sockets;
}

const indices = Array.from({ length: socketCount }, (_, index) => index);
const sockets = await openAll(url, indices, apiKey, false);
const directSockets =
  directUrl === undefined
    ? []
    : await openAll(
        directUrl,
        indices.filter((index) => index % MIRROR_EVERY === 0),
        undefined,
        true,
      );
for (let i = 0; i < socketCount; i += OPEN_AT_ONCE) {
  await Promise.all(Array.from({ length: Math.min(OPEN_AT_ONCE, socketCount - i) }, (_, j) => queuePrompt(i + j)));
}
console.error(`${sockets.length} sockets open, each with its prompt queued; ${directSockets.length} of them mirrored straight to the upstream`);
await sleep(WARM_UP_MS);
console.log('recording');
recording = true;
await sleep(seconds * 1000);
recording = false;
const figures = { sockets: sockets.length, ...summary(through.progress), previews: { sockets: previewSockets, ...summary(through.previews) } };
if (directUrl !== undefined) {
  figures.direct = { sockets: directSockets.length, ...summary(direct.progress), previews: summary(direct.previews) };
  figures.added = { progress: summary(added.progress), previews: summary(added.previews) };
}
console.log(JSON.stringify(figures));
// The sockets close together after the bench has read the gateway's event-loop delay of the relaying; it reads the closing's apart.
await sleep(CLOSE_AFTER_MS);
for (const ws of [...sockets, ...directSockets]) ws.terminate();
