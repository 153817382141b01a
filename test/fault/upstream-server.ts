// A scripted upstream run as its own process, so a test can SIGKILL it mid-transfer; prints what happens on stdout.
//
//   GET  /ok                  200 {"ok":true}
//   GET  /stall               never answers
//   GET  /download?bytes=N    200 with N bytes, written as fast as the reader takes them
//   GET  /trickle             200, 1 KiB, then nothing more
//   POST /upload              reads the whole body, then 200 {"bytes":N}
//   WS   /ws                  sends "hello", echoes every message
//   WS   /ws-stall            never answers the upgrade
//
// Lines printed: `listening PORT`, `stall`, `download`, `upload BYTES` (each MiB), and `closed PATH` when a
// client (the gateway) hangs up before the answer finished.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] ?? 0);
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
const say = (line: string): void => void process.stdout.write(`${line}\n`);

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://upstream');
  res.on('close', () => {
    if (!res.writableFinished) say(`closed ${url.pathname}`);
  });
  if (url.pathname === '/ok') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  } else if (url.pathname === '/stall') {
    say('stall');
  } else if (url.pathname === '/download') {
    const total = Number(url.searchParams.get('bytes'));
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    say('download');
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
  } else if (url.pathname === '/trickle') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.write(CHUNK.subarray(0, 1024));
  } else if (url.pathname === '/upload' && req.method === 'POST') {
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

const sockets = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  if (req.url?.startsWith('/ws-stall')) return;
  sockets.handleUpgrade(req, socket, head, (ws) => {
    ws.send('hello');
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('close', () => say('closed /ws'));
  });
});

server.listen(port, '127.0.0.1', () => say(`listening ${(server.address() as AddressInfo).port}`));
