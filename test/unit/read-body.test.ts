// readBody on a real loopback server: the whole body in order, the cap enforced with or without a length, and a client that goes away mid-body.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { readBody } from '../../src/server/body.js';

const MAX_BYTES = 1000;

class TooLarge extends Error {}

describe('readBody', { timeout: 10_000 }, () => {
  let server: Server;
  let port: number;
  /** What the handler's readBody settled with, by request path. */
  const settled = new Map<string, Promise<Buffer | Error>>();

  before(async () => {
    server = createServer((req, res) => {
      const outcome = readBody(req, MAX_BYTES, () => new TooLarge()).catch((error: Error) => error);
      settled.set(req.url!, outcome);
      void outcome.then((outcome) => {
        if (res.destroyed) return;
        if (outcome instanceof Error) res.writeHead(outcome instanceof TooLarge ? 413 : 400).end();
        else res.writeHead(200).end(outcome);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  /** Sends `chunks` to `path` one after another (chunked unless `length` is given) and resolves the answer's status and body. */
  async function send(path: string, chunks: Buffer[], length?: number): Promise<{ status: number; body: Buffer }> {
    const headers = length === undefined ? {} : { 'content-length': String(length) };
    const req = request({ port, host: '127.0.0.1', method: 'POST', path, headers, agent: false });
    const answered = once(req, 'response') as Promise<[IncomingMessage]>;
    for (const chunk of chunks) {
      req.write(chunk);
      await new Promise((resolve) => setImmediate(resolve));
    }
    req.end();
    const [res] = await answered;
    const parts: Buffer[] = [];
    for await (const part of res) parts.push(part as Buffer);
    return { status: res.statusCode!, body: Buffer.concat(parts) };
  }

  test('gives the whole body, in order, from many chunks', async () => {
    const chunks = Array.from({ length: 20 }, (_, index) => Buffer.from(`chunk ${index};`));
    const { status, body } = await send('/many', chunks);
    assert.equal(status, 200);
    assert.deepEqual(body, Buffer.concat(chunks));
  });

  test('an empty body is an empty buffer', async () => {
    const { status, body } = await send('/empty', []);
    assert.equal(status, 200);
    assert.equal(body.length, 0);
  });

  test('a body of exactly the cap is read; one byte more is refused, with a length or without', async () => {
    assert.equal((await send('/at-cap', [Buffer.alloc(MAX_BYTES, 97)])).status, 200);
    assert.ok((await settled.get('/at-cap')) instanceof Buffer);
    const over = [Buffer.alloc(600, 97), Buffer.alloc(401, 97)];
    const chunked = await send('/over', over).catch((error: Error) => error);
    // The answer may be cut by the connection closing on the unread rest; readBody refused either way.
    if (!(chunked instanceof Error)) assert.equal(chunked.status, 413);
    assert.ok((await settled.get('/over')) instanceof TooLarge);
    const declared = await send('/declared', [Buffer.alloc(10, 97)], MAX_BYTES + 1).catch((error: Error) => error);
    if (!(declared instanceof Error)) assert.equal(declared.status, 413);
    assert.ok((await settled.get('/declared')) instanceof TooLarge, 'a declared length over the cap is refused before anything is read');
  });

  test('a client that goes away mid-body makes it reject, not hang', async () => {
    const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/gone', headers: { 'content-length': '500' }, agent: false });
    req.on('error', () => undefined);
    req.write(Buffer.alloc(100, 97));
    while (!settled.has('/gone')) await new Promise((resolve) => setTimeout(resolve, 10));
    req.destroy();
    const outcome = await settled.get('/gone');
    assert.ok(outcome instanceof Error && !(outcome instanceof TooLarge), `rejected with the stream's error, not ${String(outcome)}`);
  });
});
