// WebSocket upstream for the bench (its own process): every socket gets a ComfyUI-style progress message of prompt PROMPT_ID every 100 ms, and the first
// PREVIEW_SOCKETS sockets (by clientId bench-N) a 100 KB binary preview frame with metadata every 200 ms, each stamped with its send time; any HTTP request gets a /prompt answer.
// Usage: node bench/ws-upstream.mjs PORT [PREVIEW_SOCKETS]

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

export const PROMPT_ID = 'bench-ws-prompt';
const INTERVAL_MS = 100;
const PREVIEW_INTERVAL_MS = 200;
const PREVIEW_BYTES = 100_000;
/** ComfyUI's binary frame type of a preview whose header names its prompt (PREVIEW_IMAGE_WITH_METADATA). */
const PREVIEW_WITH_METADATA = 4;

/** Monotonic milliseconds: the same clock in every process on the machine. */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** A preview frame as ComfyUI sends it to a client that takes metadata: type, metadata length, metadata JSON (here with its send time), image bytes. */
function previewFrame(image) {
  const metadata = Buffer.from(
    JSON.stringify({ node_id: '3', prompt_id: PROMPT_ID, display_node: '3', parent_node: null, real_node_id: '3', image_type: 'image/jpeg', sent_ms: nowMs() }),
  );
  const header = Buffer.alloc(8);
  header.writeUInt32BE(PREVIEW_WITH_METADATA, 0);
  header.writeUInt32BE(metadata.length, 4);
  return Buffer.concat([header, metadata, image]);
}

/** The send time a preview frame carries in its metadata. */
export function previewSentMs(frame) {
  const length = frame.readUInt32BE(4);
  return JSON.parse(frame.subarray(8, 8 + length).toString()).sent_ms;
}

function serve(port, previewSockets) {
  const image = randomBytes(PREVIEW_BYTES);
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ prompt_id: PROMPT_ID, number: 1, node_errors: {} }));
  });
  const sockets = new WebSocketServer({ server, perMessageDeflate: false });
  sockets.on('connection', (ws, req) => {
    let value = 0;
    const timers = [
      setInterval(() => {
        value = (value % 20) + 1;
        ws.send(JSON.stringify({ type: 'progress', data: { value, max: 20, prompt_id: PROMPT_ID, node: '3', sent_ms: nowMs() } }));
      }, INTERVAL_MS),
    ];
    const index = Number(/clientId=bench-(\d+)/.exec(req.url ?? '')?.[1] ?? Infinity);
    if (index < previewSockets) timers.push(setInterval(() => ws.send(previewFrame(image), { binary: true }), PREVIEW_INTERVAL_MS));
    ws.on('close', () => timers.forEach(clearInterval));
    ws.on('error', () => ws.terminate());
  });
  server.listen(port, '127.0.0.1', () => console.log('ready'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  serve(Number(process.argv[2]), Number(process.argv[3] ?? 0));
  process.on('SIGTERM', () => process.exit(0));
}
