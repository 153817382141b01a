// Unit tests of the proxy's buffered answers (`fetch`) against a real HTTP server on loopback: the whole answer, its limits and its failures.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { GatewayError } from '../../src/errors.js';
import { createHttpProxy, type HttpProxy } from '../../src/proxy/http.js';

/** What the test server does for each path; `/stall` sends its headers and part of a body, then nothing. */
function answer(req: IncomingMessage, res: ServerResponse): void {
  if (req.url === '/json') {
    res
      .writeHead(200, { 'content-type': 'application/json', 'x-powered-by': 'test' })
      .end(JSON.stringify({ ok: true, encoding: req.headers['accept-encoding'] }));
  } else if (req.url === '/echo') {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => res.writeHead(201, { 'content-type': 'text/plain' }).end(`${req.method} ${body}`));
  } else if (req.url === '/big') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(Buffer.alloc(300_000, 7));
  } else if (req.url === '/stall') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"partial": ');
  } else if (req.url === '/silent') {
    // Never answers.
  } else {
    res.writeHead(404).end();
  }
}

describe('HttpProxy.fetch', () => {
  let server: Server;
  const sockets = new Set<Socket>();
  let proxy: HttpProxy;

  before(async () => {
    server = createServer(answer);
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    proxy = createHttpProxy({ upstream: new URL(`http://127.0.0.1:${port}`), headersTimeoutMs: 400 });
  });

  after(async () => {
    await proxy.close().catch(() => undefined);
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  test('reads the whole answer, asks for it uncompressed and filters its headers as forwarded answers are', async () => {
    const answer = await proxy.fetch(null, { method: 'GET', path: '/json' });
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.body.toString()), { ok: true, encoding: 'identity' });
    assert.equal(answer.headers['content-type'], 'application/json');
    assert.equal(answer.headers['x-powered-by'], 'test');
  });

  test('sends a replacement body with its length', async () => {
    const answer = await proxy.fetch(null, { method: 'POST', path: '/echo', body: '{"a":1}', headers: { 'content-type': 'application/json' } });
    assert.equal(answer.status, 201);
    assert.equal(answer.body.toString(), 'POST {"a":1}');
  });

  test('an answer over maxBytes is refused with 502, and the connection is usable again', async () => {
    await assert.rejects(proxy.fetch(null, { method: 'GET', path: '/big', maxBytes: 100_000 }), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.status, 502);
      assert.equal(error.code, 'UPSTREAM_UNAVAILABLE');
      return true;
    });
    const whole = await proxy.fetch(null, { method: 'GET', path: '/big' });
    assert.equal(whole.body.length, 300_000);
  });

  test('an answer that stops mid-body is refused with 504 once its time is up', async () => {
    const started = Date.now();
    await assert.rejects(proxy.fetch(null, { method: 'GET', path: '/stall', timeoutMs: 300 }), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.status, 504);
      return true;
    });
    assert.ok(Date.now() - started >= 250, 'refused before its time was up');
  });

  test('no answer at all is refused with 504 (the headers timeout)', async () => {
    await assert.rejects(proxy.fetch(null, { method: 'GET', path: '/silent' }), (error: unknown) => error instanceof GatewayError && error.status === 504);
  });

  test('a ComfyUI that is not there is 502', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const gone = createHttpProxy({ upstream: new URL(`http://127.0.0.1:${port}`), headersTimeoutMs: 400 });
    try {
      await assert.rejects(gone.fetch(null, { method: 'GET', path: '/json' }), (error: unknown) => error instanceof GatewayError && error.status === 502);
    } finally {
      await gone.close();
    }
  });
});
