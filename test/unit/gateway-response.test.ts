// The gateway's response: its own headers go out with every kind of answer, and an answer's header of the same name wins.

import assert from 'node:assert/strict';
import { createServer, IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { GatewayResponse } from '../../src/server/gateway-response.js';

let server: Server<typeof IncomingMessage, typeof GatewayResponse>;
let base = '';

before(async () => {
  server = createServer<typeof IncomingMessage, typeof GatewayResponse>({ ServerResponse: GatewayResponse }, (req, res) => {
    res.addHeaders({ 'x-request-id': 'gw-1', 'x-ratelimit-limit': '10' });
    if (req.url === '/object') res.writeHead(201, { 'content-type': 'text/plain', 'x-ratelimit-limit': 'answer' }).end('a');
    else if (req.url === '/message') res.writeHead(202, 'Taken', { 'content-type': 'text/plain' }).end('b');
    else if (req.url === '/raw') res.writeHead(203, ['content-type', 'text/plain']).end('c');
    else if (req.url === '/status-only') res.writeHead(205).end();
    else if (req.url === '/kept') {
      const headers = { 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' };
      res.writeHead(200, headers).end(JSON.stringify(headers));
    } else res.end('implicit');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

test('the gateway headers go out with writeHead of an object, with a message, of raw headers, of no headers, and with an implicit head', async () => {
  for (const [path, status, body] of [
    ['/object', 201, 'a'],
    ['/message', 202, 'b'],
    ['/raw', 203, 'c'],
    ['/status-only', 205, ''],
    ['/implicit', 200, 'implicit'],
  ] as const) {
    const res = await fetch(`${base}${path}`);
    assert.equal(res.status, status, path);
    assert.equal(await res.text(), body);
    assert.equal(res.headers.get('x-request-id'), 'gw-1', path);
  }
});

test("an answer's own header wins over the gateway's of the same name", async () => {
  const res = await fetch(`${base}/object`);
  assert.equal(res.headers.get('x-ratelimit-limit'), 'answer');
  assert.equal((await fetch(`${base}/message`)).statusText, 'Taken');
});

test('the headers object given to writeHead is left as it was, and a list value goes out as one line each', async () => {
  const res = await fetch(`${base}/kept`);
  assert.deepEqual(JSON.parse(await res.text()), { 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
  assert.deepEqual(res.headers.getSetCookie(), ['a=1', 'b=2']);
  assert.equal(res.headers.get('x-request-id'), 'gw-1');
});
