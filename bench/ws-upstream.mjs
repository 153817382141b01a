// WebSocket upstream for the bench (its own process): every socket gets a ComfyUI-style progress message of prompt PROMPT_ID every 100 ms, stamped with its send time; any HTTP request gets a /prompt answer.
// Usage: node bench/ws-upstream.mjs PORT

import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

export const PROMPT_ID = 'bench-ws-prompt';
const INTERVAL_MS = 100;

/** Monotonic milliseconds: the same clock in every process on the machine. */
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function serve(port) {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ prompt_id: PROMPT_ID, number: 1, node_errors: {} }));
  });
  const sockets = new WebSocketServer({ server, perMessageDeflate: false });
  sockets.on('connection', (ws) => {
    let value = 0;
    const timer = setInterval(() => {
      value = (value % 20) + 1;
      ws.send(JSON.stringify({ type: 'progress', data: { value, max: 20, prompt_id: PROMPT_ID, node: '3', sent_ms: nowMs() } }));
    }, INTERVAL_MS);
    ws.on('close', () => clearInterval(timer));
    ws.on('error', () => ws.terminate());
  });
  server.listen(port, '127.0.0.1', () => console.log('ready'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  serve(Number(process.argv[2]));
  process.on('SIGTERM', () => process.exit(0));
}
