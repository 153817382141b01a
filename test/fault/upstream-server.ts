// A scripted upstream run as its own process, so a test can SIGKILL it mid-transfer; prints what happens on stdout.
//
//   GET  /ok                  200 {"ok":true}
//   GET  /stall               never answers
//   GET  /download?bytes=N    200 with N bytes, written as fast as the reader takes them
//   GET  /trickle[?length=N]  200, 1 KiB, then nothing more (announcing a length of N bytes when given)
//   GET  /chunked?bytes=N     200 with N bytes, chunked (no length)
//   GET  /view?filename=NAME&…  what /NAME does: a file download, which the gateway streams over a connection of its own
//   POST /upload              reads the whole body, then 200 {"bytes":N}
//   WS   /ws                  sends "hello", echoes every message
//   WS   /ws-stall            never answers the upgrade
//   WS   /ws-deaf             accepts, then never reads what it is sent
//   WS   /ws-flood            sends 1 MiB binary messages, each once the previous one went out, 512 in all
//   WS   /ws-big?bytes=N      sends one binary message of N bytes
//
// Lines printed: `listening PORT`, `stall`, `download`, `chunked CONNECTION` (the request's Connection header, `-` without one),
// `upload BYTES` (each MiB), and `closed PATH` when a
// client (the gateway) hangs up before the answer finished; for a WebSocket, `closed PATH CODE` when it
// closes, and for /ws-flood `flood stalled MIB` when a message waited 1 s to go out and `flood done`.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

const port = Number(process.argv[2] ?? 0);
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
const say = (line: string): void => void process.stdout.write(`${line}\n`);

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://upstream');
  res.on('close', () => {
    if (!res.writableFinished) say(`closed ${url.pathname}`);
  });
  const route = url.pathname === '/view' ? `/${url.searchParams.get('filename')}` : url.pathname;
  if (route === '/ok') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  } else if (route === '/stall') {
    say('stall');
  } else if (route === '/download' || route === '/chunked') {
    const total = Number(url.searchParams.get('bytes'));
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(route === '/download' ? { 'content-length': total } : {}) });
    say(route === '/chunked' ? `chunked ${req.headers.connection ?? '-'}` : 'download');
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const chunk = CHUNK.subarray(0, Math.min(CHUNK.length, total - sent));
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  } else if (route === '/trickle') {
    const length = url.searchParams.get('length');
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(length ? { 'content-length': Number(length) } : {}) });
    res.write(CHUNK.subarray(0, 1024));
  } else if (route === '/upload' && req.method === 'POST') {
    let bytes = 0;
    let reported = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes - reported >= 1 << 20) say(`upload ${(reported = bytes)}`);
    });
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ bytes })));
  } else {
    res.writeHead(404).end();
  }
});
// Idle keep-alive connections close after 2 s (the gateway's pool then drops them after 1 s).
server.keepAliveTimeout = 2000;

const FLOOD_MESSAGE = Buffer.alloc(1 << 20, 0x62);
const FLOOD_MESSAGES = 512;

/** Sends FLOOD_MESSAGES messages one after the other, each as soon as the previous one was written out. */
function flood(ws: WebSocket, sent = 0): void {
  if (sent === FLOOD_MESSAGES) return say('flood done');
  if (ws.readyState !== WebSocket.OPEN) return;
  const stalled = setTimeout(() => say(`flood stalled ${sent}`), 1000);
  ws.send(FLOOD_MESSAGE, { binary: true }, (error) => {
    clearTimeout(stalled);
    if (!error) flood(ws, sent + 1);
  });
}

const sockets = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  if (req.url?.startsWith('/ws-stall')) return;
  sockets.handleUpgrade(req, socket, head, (ws) => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    ws.on('close', (code) => say(`closed ${url.pathname} ${code}`));
    if (url.pathname === '/ws-deaf') return ws.pause();
    if (url.pathname === '/ws-flood') return flood(ws);
    if (url.pathname === '/ws-big') return ws.send(Buffer.alloc(Number(url.searchParams.get('bytes'))), { binary: true });
    ws.send('hello');
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
});

server.listen(port, '127.0.0.1', () => say(`listening ${(server.address() as AddressInfo).port}`));
