// The ceiling of one Node.js process on this workload: a node:http server piping every request through an undici pool, with no checks at all.
// Run as `node bench/bare-proxy.mjs PORT UPSTREAM_PORT`; prints "listening" once it serves.

import { createServer } from 'node:http';
import { Pool } from 'undici';

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: 256 });

createServer((req, res) => {
  pool.request({ path: req.url, method: req.method, headers: req.headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req }).then(
    ({ statusCode, headers, body }) => {
      res.writeHead(statusCode, headers);
      body.pipe(res);
    },
    () => {
      res.writeHead(502);
      res.end();
    },
  );
}).listen(port, '127.0.0.1', () => console.log('listening'));
