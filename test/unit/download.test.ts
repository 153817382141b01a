// Unit tests of the proxy's downloads (`download`) between real sockets on loopback: bytes intact through reused buffers, heads as sent.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer, request, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MAX_OPEN_DOWNLOADS } from '../../src/proxy/download.js';
import { createHttpProxy, type HttpProxy } from '../../src/proxy/http.js';

const FILE = randomBytes(24 * 1024 * 1024 + 13);
const FILE_SHA = createHash('sha256').update(FILE).digest('hex');

/** A raw upstream: it records each request head (several per connection) and answers what `answer` writes for it. */
interface RawUpstream {
  port: number;
  heads: string[];
  /** Connections accepted so far. */
  connections: number;
  answer: (head: string, socket: Socket) => void;
}

function startRawUpstream(): Promise<{ upstream: RawUpstream; server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const upstream: RawUpstream = { port: 0, heads: [], connections: 0, answer: () => undefined };
  const server = createServer((socket) => {
    upstream.connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      for (let end = received.indexOf('\r\n\r\n'); end >= 0; end = received.indexOf('\r\n\r\n')) {
        const head = received.slice(0, end + 4);
        received = received.slice(end + 4);
        upstream.heads.push(head);
        upstream.answer(head, socket);
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      upstream.port = (server.address() as AddressInfo).port;
      resolve({ upstream, server, sockets });
    }),
  );
}

/** Writes `bytes` to `socket` as fast as it takes them, then leaves it open. */
function pump(socket: Socket, bytes: Buffer, from = 0): void {
  const CHUNK = 1 << 20;
  while (from < bytes.length) {
    const end = Math.min(from + CHUNK, bytes.length);
    const more = socket.write(bytes.subarray(from, end));
    from = end;
    if (!more) return void socket.once('drain', () => pump(socket, bytes, from));
  }
}

/** GETs (or `method`s) `path` from the gateway side; the client reads slowly when `slow` (a pause after every chunk), hashing the body. */
function get(
  port: number,
  path: string,
  slow = false,
  method = 'GET',
): Promise<{ status: number; headers: IncomingMessage['headers']; rawHeaders: string[]; bytes: number; sha: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      let chunks = 0;
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
        if (slow && ++chunks % 8 === 0) {
          res.pause();
          setTimeout(() => res.resume(), 2);
        }
      });
      res.on('error', () => undefined);
      res.on('close', () =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          bytes,
          sha: hash.digest('hex'),
          complete: res.complete && !res.errored,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('HttpProxy.download', () => {
  let raw: Awaited<ReturnType<typeof startRawUpstream>>;
  let proxy: HttpProxy;
  let front: HttpServer;
  let frontPort: number;

  before(async () => {
    raw = await startRawUpstream();
    proxy = createHttpProxy({ upstream: new URL(`http://127.0.0.1:${raw.upstream.port}`), headersTimeoutMs: 1000 });
    front = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
      proxy.download(req, res, { headers: { 'comfy-user': 'user-1' } }).catch((error: { status: number; code: string }) => {
        res.writeHead(error.status, { 'content-type': 'application/json' }).end(JSON.stringify({ error_code: error.code }));
      });
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    frontPort = (front.address() as AddressInfo).port;
  });

  after(async () => {
    for (const socket of raw.sockets) socket.destroy();
    await new Promise<void>((resolve) => raw.server.close(() => resolve()));
    front.closeAllConnections();
    await new Promise<void>((resolve) => front.close(() => resolve()));
    await proxy.close();
  });

  test('24 MB to a slow client arrive intact: no read buffer is used again before its bytes were sent', async () => {
    raw.upstream.answer = (_head, socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${FILE.length}\r\n\r\n`);
      pump(socket, FILE);
    };
    for (const slow of [true, false]) {
      const result = await get(frontPort, '/view?filename=big.bin', slow);
      assert.equal(result.status, 200);
      assert.equal(result.complete, true);
      assert.equal(result.bytes, FILE.length);
      assert.equal(result.sha, FILE_SHA);
    }
  });

  test('large answers (read in large buffers) beside small ones on the same connections all arrive intact', async () => {
    const small = randomBytes(300 * 1024);
    raw.upstream.answer = (head, socket) => {
      const body = head.startsWith('GET /view?filename=big') ? FILE : small;
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`);
      pump(socket, body);
    };
    const smallSha = createHash('sha256').update(small).digest('hex');
    for (let round = 0; round < 2; round += 1) {
      const results = await Promise.all([
        get(frontPort, '/view?filename=big-1.bin', true),
        get(frontPort, '/view?filename=big-2.bin'),
        ...Array.from({ length: 6 }, (_, i) => get(frontPort, `/view?filename=small-${i}.png`, i % 2 === 0)),
      ]);
      for (const [i, result] of results.entries()) {
        assert.equal(result.complete, true);
        assert.equal(result.sha, i < 2 ? FILE_SHA : smallSha, `download ${i} of round ${round} is intact`);
      }
    }
  });

  test('the request goes with Host and the overrides; the answer head comes back byte for byte', async () => {
    // A filename in UTF-8, as aiohttp writes it: the bytes must reach the client unchanged.
    const disposition = Buffer.from('attachment; filename="naïve ✓.png"', 'utf8').toString('latin1');
    raw.upstream.answer = (_head, socket) => {
      // The head arrives in pieces, one byte of the status line at a time.
      const head = `HTTP/1.1 200 OK\r\nContent-Disposition: ${disposition}\r\nX-Two: a\r\nX-Two: b\r\nContent-Length: 5\r\n\r\n`;
      void (async () => {
        for (const byte of head.slice(0, 12)) {
          socket.write(byte, 'latin1');
          await sleep(2);
        }
        socket.write(`${head.slice(12)}hello and more than announced`, 'latin1');
      })();
    };
    raw.upstream.heads.length = 0;
    const result = await get(frontPort, '/view?filename=x.png&type=output');
    assert.equal(result.status, 200);
    assert.equal(result.bytes, 5, 'only the announced length is sent');
    assert.equal(result.complete, true);
    assert.equal(result.headers['content-disposition'], disposition);
    assert.deepEqual(
      result.rawHeaders.filter((_, i) => result.rawHeaders[i - 1]?.toLowerCase() === 'x-two'),
      ['a', 'b'],
    );
    const [head] = raw.upstream.heads;
    assert.match(head!, /^GET \/view\?filename=x\.png&type=output HTTP\/1\.1\r\nhost: 127\.0\.0\.1:\d+\r\n/);
    assert.match(head!, /\r\ncomfy-user: user-1\r\n/);
    assert.doesNotMatch(head!, /\r\nconnection:/i, 'HTTP/1.1 keeps the connection open by default');
  });

  test('a client that takes nothing for the whole timeout is cut, and so is the connection to ComfyUI', async () => {
    let upstreamClosed: Promise<unknown> = Promise.resolve();
    raw.upstream.answer = (_head, socket) => {
      upstreamClosed = new Promise((resolve) => socket.on('close', resolve));
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${FILE.length}\r\n\r\n`);
      pump(socket, FILE);
    };
    const started = Date.now();
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: frontPort, path: '/view?filename=stalled.bin', agent: false }, (res) => {
        res.once('data', () => res.pause());
        res.on('error', () => undefined);
        resolve(res);
      });
      req.on('error', reject);
      req.end();
    });
    await Promise.race([upstreamClosed, sleep(5000).then(() => assert.fail("ComfyUI's connection is still open after 5 s"))]);
    assert.ok(Date.now() - started >= 900, 'not before the timeout');
    // Reading again, the client finds the answer cut short.
    let bytes = 0;
    response.on('data', (chunk: Buffer) => (bytes += chunk.length));
    await new Promise((resolve) => response.on('close', resolve).resume());
    const stalled = { bytes, complete: response.complete };
    assert.equal(stalled.complete, false);
    assert.ok(stalled.bytes < FILE.length);
  });

  test('a connection whose answer was read whole carries the next downloads', async () => {
    raw.upstream.answer = (_head, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
    const before = raw.upstream.connections;
    for (let i = 0; i < 5; i += 1) {
      const result = await get(frontPort, `/view?filename=${i}.png`);
      assert.equal(result.complete, true);
      assert.equal(result.bytes, 5);
    }
    assert.ok(raw.upstream.connections - before <= 1, `${raw.upstream.connections - before} connections for 5 downloads in a row`);
  });

  test('a kept connection that ComfyUI closed meanwhile: the request is sent again, once, on a new connection', async () => {
    const answered = new WeakSet<Socket>();
    raw.upstream.answer = (_head, socket) => {
      // Each connection answers one request; the next one on it finds it closed, as after ComfyUI's keep-alive timeout.
      if (answered.has(socket)) return void socket.destroy();
      answered.add(socket);
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    };
    for (let i = 0; i < 4; i += 1) {
      const result = await get(frontPort, `/view?filename=again-${i}.png`);
      assert.equal(result.status, 200);
      assert.equal(result.complete, true);
      assert.equal(result.bytes, 2);
    }
  });

  test('a HEAD: the head of the answer, no body whatever length it gives, and the connection carries on', async () => {
    raw.upstream.answer = (head, socket) =>
      void socket.write(head.startsWith('HEAD ') ? 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' : 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody');
    const before = raw.upstream.connections;
    raw.upstream.heads.length = 0;
    const head = await get(frontPort, '/view?filename=h.png', false, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '1000');
    assert.equal(head.complete, true);
    assert.equal(head.bytes, 0);
    const after = await get(frontPort, '/view?filename=h.png');
    assert.equal(after.bytes, 4);
    assert.deepEqual(
      raw.upstream.heads.map((sent) => sent.split(' ')[0]),
      ['HEAD', 'GET'],
    );
    assert.ok(raw.upstream.connections - before <= 1, 'the GET went on the connection the HEAD used');
  });

  test('an answer that never has a body (304) ends at once', async () => {
    raw.upstream.answer = (_head, socket) => socket.end('HTTP/1.1 304 Not Modified\r\nETag: "1"\r\n\r\n');
    const result = await get(frontPort, '/view?filename=same.png');
    assert.equal(result.status, 304);
    assert.equal(result.complete, true);
    assert.equal(result.bytes, 0);
  });

  test(`more than ${MAX_OPEN_DOWNLOADS} downloads at once: the rest go through the pool`, async () => {
    const held: Socket[] = [];
    raw.upstream.answer = (_head, socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc');
      held.push(socket);
    };
    raw.upstream.heads.length = 0;
    const downloads = Array.from({ length: MAX_OPEN_DOWNLOADS + 3 }, (_, i) => get(frontPort, `/view?filename=${i}.png`));
    while (held.length < MAX_OPEN_DOWNLOADS + 3) await sleep(10);
    // The pool says `Connection: keep-alive`; a download connection says nothing.
    const streamed = raw.upstream.heads.filter((head) => !/\r\nconnection:/i.test(head)).length;
    assert.equal(streamed, MAX_OPEN_DOWNLOADS);
    for (const socket of held) socket.destroy();
    for (const result of await Promise.all(downloads)) assert.equal(result.complete, false, 'a cut answer does not look complete');
  });

  test('ComfyUI down: 502; silent: 504 after the timeout', async () => {
    raw.upstream.answer = () => undefined;
    const started = Date.now();
    const silent = await get(frontPort, '/view?filename=silent.png');
    assert.equal(silent.status, 504);
    assert.ok(Date.now() - started >= 900);
    const down = createHttpProxy({ upstream: new URL('http://127.0.0.1:1'), headersTimeoutMs: 1000 });
    const server = createHttpServer((req, res) => {
      down.download(req, res).catch((error: { status: number }) => res.writeHead(error.status).end());
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    assert.equal((await get((server.address() as AddressInfo).port, '/view?filename=a.png')).status, 502);
    server.close();
    await down.close();
  });
});
