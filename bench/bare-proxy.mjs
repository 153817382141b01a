// The ceiling of one Node.js process on this workload: a node:http server streaming every request through an undici pool, with no checks at all.
// Run as `node bench/bare-proxy.mjs PORT UPSTREAM_PORT [pipe]`; prints "listening" once it serves. It streams the way the gateway
// does (undici's dispatch API straight into the response); with `pipe`, the way it did before: `pool.request` and `body.pipe(res)`.

import { createServer } from 'node:http';
import { Pool } from 'undici';

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const piped = process.argv[4] === 'pipe';
const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: 256 });

/** Writes undici's answer straight into the response, pausing the upstream while the client is slow. */
class Streamer {
  constructor(res) {
    this.res = res;
  }
  onRequestStart(controller) {
    this.controller = controller;
  }
  onResponseStart(_controller, statusCode, headers) {
    this.res.writeHead(statusCode, headers);
  }
  onResponseData(controller, chunk) {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }
  onResponseEnd() {
    this.res.end();
  }
  onResponseError() {
    if (this.res.headersSent) this.res.destroy();
    else this.res.writeHead(502).end();
  }
}

createServer((req, res) => {
  const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
  // Like the gateway, it keeps the upstream connection after a HEAD (undici would close it).
  const reset = req.method === 'HEAD' ? { reset: false } : {};
  if (!piped) return pool.dispatch({ path: req.url, method: req.method, headers: req.headers, body, ...reset }, new Streamer(res));
  pool.request({ path: req.url, method: req.method, headers: req.headers, body }).then(
    ({ statusCode, headers, body: answer }) => {
      res.writeHead(statusCode, headers);
      answer.pipe(res);
    },
    () => {
      res.writeHead(502);
      res.end();
    },
  );
}).listen(port, '127.0.0.1', () => console.log('listening'));
