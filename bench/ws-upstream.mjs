// WebSocket upstream for the bench (its own process): as ComfyUI does, it sends a prompt's events to the socket whose clientId is the prompt's
// client_id. Each prompt queued with POST /prompt (id bench-prompt-N) gets a progress message every 100 ms and, for N < PREVIEW_SOCKETS, a
// 100 KB binary preview frame with metadata every 200 ms, each stamped with its send time and numbered among the prompt's messages of its
// kind. Through the gateway, every prompt's client_id is the gateway's own, so all of them arrive on its one event socket and the gateway
// passes each on to its key's socket. When a socket whose clientId is bench-N is also open here directly, prompt N's events go to it as
// well, in the same turn (each message to one of the two first, in turn), so that the bench's client can time both copies.
// Usage: node bench/ws-upstream.mjs PORT [PREVIEW_SOCKETS]

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

/** The id of the prompt the bench's socket N queues (client_id bench-N). */
export const promptIdOf = (index) => `bench-prompt-${index}`;
const INTERVAL_MS = 100;
const PREVIEW_INTERVAL_MS = 200;
const PREVIEW_BYTES = 100_000;
/** ComfyUI's binary frame type of a preview whose header names its prompt (PREVIEW_IMAGE_WITH_METADATA). */
const PREVIEW_WITH_METADATA = 4;

/** Monotonic milliseconds: the same clock in every process on the machine. */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** A preview frame as ComfyUI sends it to a client that takes metadata: type, metadata length, metadata JSON (here with its send time), image bytes. */
function previewFrame(image, promptId, seq) {
  const metadata = Buffer.from(
    JSON.stringify({
      node_id: '3',
      prompt_id: promptId,
      display_node: '3',
      parent_node: null,
      real_node_id: '3',
      image_type: 'image/jpeg',
      seq,
      sent_ms: nowMs(),
    }),
  );
  const header = Buffer.alloc(8);
  header.writeUInt32BE(PREVIEW_WITH_METADATA, 0);
  header.writeUInt32BE(metadata.length, 4);
  return Buffer.concat([header, metadata, image]);
}

/** The metadata of a preview frame: its prompt_id, seq and sent_ms among them. */
export function previewMetadata(frame) {
  const length = frame.readUInt32BE(4);
  return JSON.parse(frame.subarray(8, 8 + length).toString());
}

function serve(port, previewSockets) {
  const image = randomBytes(PREVIEW_BYTES);
  /** Open sockets by clientId. */
  const sockets = new Map();
  /** Sends to the socket of the prompt's client_id, and to the direct socket of its index (bench-N) when that is another one; which goes first alternates with `seq`. */
  const send = (clientId, index, seq, data, binary) => {
    const own = sockets.get(clientId);
    const direct = sockets.get(`bench-${index}`);
    const targets = direct === undefined || direct === own ? [own] : seq % 2 === 0 ? [own, direct] : [direct, own];
    for (const socket of targets) socket?.send(data, { binary });
  };
  /**
   * Starts sending a queued prompt's events to the socket of its client_id (looked up at each send, as ComfyUI does). Prompt N's
   * progress starts N mod 100 ms after it is queued and its previews N / PREVIEW_SOCKETS of their interval after: independent prompts
   * keep phases of their own, as the prompts of separate backends do (one ComfyUI runs one prompt at a time). Started at once, the
   * clients' batches of 50 prompts would send 5 MB of previews within one millisecond every 200 ms.
   */
  function run(promptId, clientId) {
    let seq = 0;
    let previewSeq = 0;
    const index = Number(/^bench-prompt-(\d+)$/.exec(promptId)?.[1] ?? 0);
    const sendProgress = () => {
      seq += 1;
      const data = { value: (seq % 20) + 1, max: 20, prompt_id: promptId, node: '3', seq, sent_ms: nowMs() };
      send(clientId, index, seq, JSON.stringify({ type: 'progress', data }), false);
    };
    setTimeout(() => setInterval(sendProgress, INTERVAL_MS), index % INTERVAL_MS);
    if (index >= previewSockets) return;
    const sendPreview = () => {
      previewSeq += 1;
      send(clientId, index, previewSeq, previewFrame(image, promptId, previewSeq), true);
    };
    setTimeout(() => setInterval(sendPreview, PREVIEW_INTERVAL_MS), Math.floor((index * PREVIEW_INTERVAL_MS) / previewSockets));
  }
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const prompt = req.method === 'POST' && /^(\/api)?\/prompt$/.test(req.url ?? '') ? JSON.parse(body) : null;
      const promptId = typeof prompt?.prompt_id === 'string' ? prompt.prompt_id : 'bench-other';
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ prompt_id: promptId, number: 1, node_errors: {} }));
      if (prompt) run(promptId, prompt.client_id);
    });
  });
  new WebSocketServer({ server, perMessageDeflate: false }).on('connection', (ws, req) => {
    const clientId = new URL(req.url ?? '/', 'http://upstream').searchParams.get('clientId') ?? '';
    sockets.set(clientId, ws);
    ws.on('close', () => sockets.get(clientId) === ws && sockets.delete(clientId));
    ws.on('error', () => ws.terminate());
  });
  server.listen(port, '127.0.0.1', () => console.log('ready'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  serve(Number(process.argv[2]), Number(process.argv[3] ?? 0));
  process.on('SIGTERM', () => process.exit(0));
}
