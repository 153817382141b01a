// File upstream for the bench (its own process): ComfyUI's /prompt, /history/{id}, /view (Range, HEAD), /upload/image on real files on disk, and /ws.
// Usage: node bench/files-upstream.mjs PORT DIRECTORY OUTPUT_NAME; every prompt "runs" at once (its events go to the socket of its client_id)
// and names DIRECTORY/output/OUTPUT_NAME as its output, in its events and its history; prints "ready".

import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { basename, join } from 'node:path';
import { WebSocketServer } from 'ws';

const [port, directory, outputName] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const json = (res, status, value) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
/** The output of every run: the big file, from SaveImage node 9. */
const OUTPUT = { images: [{ filename: outputName, subfolder: '', type: 'output' }] };
/** Open sockets by clientId: a prompt's events go to the socket of its client_id, as ComfyUI sends them. */
const sockets = new Map();

function postPrompt(req, res) {
  let body = '';
  req.setEncoding('utf8').on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    const prompt = JSON.parse(body);
    json(res, 200, { prompt_id: prompt.prompt_id, number: 1, node_errors: {} });
    const send = (type, data) => sockets.get(prompt.client_id)?.send(JSON.stringify({ type, data: { ...data, prompt_id: prompt.prompt_id } }));
    setImmediate(() => {
      send('execution_start', { timestamp: Date.now() });
      send('executed', { node: '9', display_node: '9', output: OUTPUT });
      send('execution_success', { timestamp: Date.now() });
    });
  });
}

/** A completed run whose SaveImage output is the big file, as ComfyUI's history lists it. */
function getHistory(res, promptId) {
  json(res, 200, { [promptId]: { prompt: [], outputs: { 9: OUTPUT }, status: { status_str: 'success', completed: true, messages: [] }, meta: {} } });
}

/** A file of output or input, whole or one `bytes=a-b` range, as aiohttp's FileResponse serves it; HEAD gets the headers only. */
function view(req, res, query) {
  const type = query.get('type') || 'output';
  const path = join(directory, type === 'input' ? 'input' : 'output', basename(query.get('filename') ?? ''));
  let size;
  try {
    size = statSync(path).size;
  } catch {
    return res.writeHead(404).end();
  }
  const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  const [start, end] = range ? [Number(range[1]), Math.min(Number(range[2]), size - 1)] : [0, size - 1];
  const headers = { 'content-type': 'application/octet-stream', 'content-length': end - start + 1, 'accept-ranges': 'bytes' };
  if (range) headers['content-range'] = `bytes ${start}-${end}/${size}`;
  res.writeHead(range ? 206 : 200, headers);
  if (req.method === 'HEAD') return res.end();
  createReadStream(path, { start, end, highWaterMark: 1 << 20 }).pipe(res);
}

/**
 * Streams the `image` part of a multipart form into input/ as it arrives: the part's headers are read
 * from the start of the body, and the closing delimiter is held back until the end. The form is assumed
 * to hold that one part (the bench sends nothing else).
 */
function upload(req, res) {
  const boundary = /boundary=(?:"([^"]+)"|([^\s;]+))/.exec(req.headers['content-type'] ?? '');
  if (!boundary) return json(res, 400, { error: 'not multipart' });
  const closing = Buffer.byteLength(`\r\n--${boundary[1] ?? boundary[2]}--\r\n`);
  let head = Buffer.alloc(0);
  let out = null;
  let name = '';
  let tail = Buffer.alloc(0);
  req.on('data', (chunk) => {
    if (!out) {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      name = basename(/filename="([^"]+)"/.exec(head.subarray(0, end).toString())?.[1] ?? 'upload.bin');
      out = createWriteStream(join(directory, 'input', name));
      chunk = head.subarray(end + 4);
    }
    const data = Buffer.concat([tail, chunk]);
    tail = data.subarray(Math.max(0, data.length - closing));
    if (data.length > tail.length && !out.write(data.subarray(0, data.length - tail.length))) {
      req.pause();
      out.once('drain', () => req.resume());
    }
  });
  req.on('end', () => {
    if (!out) return json(res, 400, { error: 'no file part' });
    out.end(() => json(res, 200, { name, subfolder: '', type: 'input' }));
  });
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://upstream');
  // ComfyUI serves every route bare and under /api.
  const path = url.pathname.replace(/^\/api(?=\/)/, '');
  const history = /^\/history\/([^/]+)$/.exec(path);
  if (req.method === 'POST' && path === '/prompt') return postPrompt(req, res);
  if (req.method === 'GET' && history) return getHistory(res, decodeURIComponent(history[1]));
  if ((req.method === 'GET' || req.method === 'HEAD') && path === '/view') return view(req, res, url.searchParams);
  if (req.method === 'POST' && path === '/upload/image') return upload(req, res);
  req.resume();
  res.writeHead(404).end();
});
new WebSocketServer({ server, perMessageDeflate: false }).on('connection', (ws, req) => {
  const clientId = new URL(req.url, 'http://upstream').searchParams.get('clientId') ?? '';
  sockets.set(clientId, ws);
  ws.send(JSON.stringify({ type: 'status', data: { status: { exec_info: { queue_remaining: 0 } }, sid: clientId } }));
  ws.on('close', () => sockets.get(clientId) === ws && sockets.delete(clientId));
  ws.on('error', () => ws.terminate());
});
server.listen(port, '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => process.exit(0));
