// Unit tests of UpstreamSocket against real servers on loopback: a ws server over plain TCP and TLS, and raw servers that answer the handshake wrongly.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { FrameError } from '../../src/events/frame-reader.js';
import { UpstreamSocket } from '../../src/events/upstream-socket.js';

const run = promisify(execFile);
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const BINARY_MESSAGE = randomBytes(300 * 1024);

/** How an UpstreamSocket ended. */
interface Closed {
  code: number;
  error: Error | null;
}

/** An UpstreamSocket whose events are emitted again ('open', 'text', 'binary', 'pong') and whose end is a promise. */
class Client extends EventEmitter {
  readonly socket: UpstreamSocket;
  opened = false;
  readonly closed: Promise<Closed>;

  constructor(url: string, handshakeTimeoutMs = 5000) {
    super();
    let settle: (closed: Closed) => void = () => undefined;
    this.closed = new Promise((resolve) => (settle = resolve));
    this.socket = new UpstreamSocket(
      new URL(url),
      { handshakeTimeoutMs, maxMessageBytes: 1 << 20 },
      {
        open: () => {
          this.opened = true;
          this.emit('open');
        },
        text: (text) => this.emit('text', text),
        binary: (message) => this.emit('binary', message),
        pong: () => this.emit('pong'),
        closed: (code, error) => settle({ code, error }),
      },
    );
  }
}

function listen(server: HttpServer | Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** Ends every socket of a ws server and closes it with its HTTP server. */
async function closeWebSocketServer(wss: WebSocketServer, server: HttpServer): Promise<void> {
  for (const peer of wss.clients) peer.terminate();
  wss.close();
  server.close();
  await once(server, 'close');
}

/** Opens a Client to the ws server at `url` and resolves it with the server's side of the socket. */
async function connectPair(wss: WebSocketServer, url: string): Promise<{ client: Client; peer: WebSocket }> {
  const connection = once(wss, 'connection');
  const client = new Client(url);
  const [[peer]] = (await Promise.all([connection, once(client, 'open')])) as [[WebSocket], unknown[]];
  return { client, peer };
}

describe('UpstreamSocket against a ws server', () => {
  const server = createHttpServer();
  const wss = new WebSocketServer({ server });
  let url = '';

  before(async () => {
    url = `ws://127.0.0.1:${await listen(server)}/ws?clientId=abc`;
  });

  after(() => closeWebSocketServer(wss, server));

  test('opens; texts of every length form go to the server; a text and a 300 KB binary message come back intact', async () => {
    const { client, peer } = await connectPair(wss, url);
    assert.equal(client.socket.open, true);
    const sent = ['hello ✓', 'x'.repeat(200), 'y'.repeat(70_000)];
    const received: string[] = [];
    const allReceived = new Promise<void>((resolve) =>
      peer.on('message', (data: RawData, isBinary) => {
        assert.equal(isBinary, false);
        received.push(data.toString());
        if (received.length === sent.length) resolve();
      }),
    );
    for (const text of sent) client.socket.sendText(text);
    await allReceived;
    assert.deepEqual(received, sent);

    const text = once(client, 'text');
    const binary = once(client, 'binary');
    peer.send('from ComfyUI ✓');
    peer.send(BINARY_MESSAGE);
    assert.deepEqual(await text, ['from ComfyUI ✓']);
    assert.deepEqual(await binary, [BINARY_MESSAGE]);
    client.socket.terminate();
    await client.closed;
  });

  test('a backlog of 2 MB is read 64 KiB a turn of the event loop, every message kept and in order', async () => {
    const { client, peer } = await connectPair(wss, url);
    // 20,000 frames of 102 bytes (2-byte head, 100 of text), sent in one turn: the kernel holds what the client has not read.
    const count = 20_000;
    const texts = Array.from({ length: count }, (_, i) => String(i).padStart(100, '.'));
    const received: string[] = [];
    /** Messages read in each turn of the event loop (counted at its check phase). */
    const perTurn: number[] = [];
    let countedThrough = 0;
    const allReceived = new Promise<void>((resolve) =>
      client.on('text', (text: string) => {
        if (received.length === countedThrough)
          setImmediate(() => {
            perTurn.push(received.length - countedThrough);
            countedThrough = received.length;
          });
        received.push(text);
        if (received.length === count) setImmediate(resolve);
      }),
    );
    for (const text of texts) peer.send(text);
    await allReceived;
    assert.deepEqual(received, texts);
    // One 64 KiB read holds at most 643 whole frames, and ends one begun in the read before it.
    assert.ok(Math.max(...perTurn) <= 644, `at most one read a turn: ${Math.max(...perTurn)} messages in one turn`);
    client.socket.terminate();
    await client.closed;
  });

  test("the server's ping gets a pong with its payload; the client's ping gets the server's pong", async () => {
    const { client, peer } = await connectPair(wss, url);
    const serverPong = once(peer, 'pong');
    peer.ping(Buffer.from('are you there'));
    assert.equal(String((await serverPong)[0]), 'are you there');
    const clientPong = once(client, 'pong');
    client.socket.ping();
    await clientPong;
    client.socket.terminate();
    await client.closed;
  });

  test("the server's close with 4001 is echoed and gives closed(4001, null)", async () => {
    const { client, peer } = await connectPair(wss, url);
    const peerClosed = once(peer, 'close');
    peer.close(4001, 'job over');
    assert.deepEqual(await client.closed, { code: 4001, error: null });
    assert.equal(client.socket.open, false);
    // ws reports the code of the close frame it got back: the client's echo.
    assert.equal((await peerClosed)[0], 4001);
  });

  test('close sends a close frame with 1000: the server sees a normal close, and closed(1000, null) follows', async () => {
    const { client, peer } = await connectPair(wss, url);
    const peerClosed = once(peer, 'close');
    client.socket.close();
    assert.equal(client.socket.open, false);
    assert.deepEqual(await client.closed, { code: 1000, error: null });
    assert.equal((await peerClosed)[0], 1000);
  });

  test('terminate cuts the connection: closed(1006, null), and the server sees it end without a close frame', async () => {
    const { client, peer } = await connectPair(wss, url);
    const peerClosed = once(peer, 'close');
    client.socket.terminate();
    assert.deepEqual(await client.closed, { code: 1006, error: null });
    assert.equal(client.socket.open, false);
    assert.equal((await peerClosed)[0], 1006);
  });
});

describe('UpstreamSocket over TLS', () => {
  let directory = '';
  let certificatePath = '';
  let url = '';
  let server: HttpServer;
  let wss: WebSocketServer;
  let connections = 0;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), 'upstream-socket-'));
    certificatePath = join(directory, 'c.pem');
    const command = 'req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -days 1 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1';
    await run('openssl', command.split(' '), { cwd: directory });
    server = createHttpsServer({ key: await readFile(join(directory, 'k.pem')), cert: await readFile(certificatePath) });
    wss = new WebSocketServer({ server });
    // On the client's 'ready': a binary message, then a text one.
    wss.on('connection', (peer) => {
      connections += 1;
      peer.on('message', () => {
        peer.send(BINARY_MESSAGE);
        peer.send('done ✓');
      });
    });
    url = `wss://127.0.0.1:${await listen(server)}/ws`;
  });

  after(async () => {
    await closeWebSocketServer(wss, server);
    await rm(directory, { recursive: true, force: true });
  });

  test('the certificate is verified: one the process does not trust fails the connection before it opens', async () => {
    const client = new Client(url);
    const { code, error } = await client.closed;
    assert.equal(code, 1006);
    assert.equal((error as NodeJS.ErrnoException | null)?.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
    assert.equal(client.opened, false);
    assert.equal(connections, 0);
  });

  test('a process that trusts the certificate (NODE_EXTRA_CA_CERTS) opens, sends, and reads a binary and a text message intact', async () => {
    const script = join(directory, 'client.mjs');
    const moduleUrl = new URL('../../src/events/upstream-socket.js', import.meta.url).href;
    await writeFile(
      script,
      `import { createHash } from 'node:crypto';
import { UpstreamSocket } from ${JSON.stringify(moduleUrl)};
const result = { opened: false, binary: null, text: null };
const socket = new UpstreamSocket(new URL(process.argv[2]), { handshakeTimeoutMs: 5000, maxMessageBytes: 1 << 20 }, {
  open: () => {
    result.opened = true;
    socket.sendText('ready');
  },
  text: (text) => {
    result.text = text;
    socket.terminate();
  },
  binary: (message) => (result.binary = { length: message.length, sha256: createHash('sha256').update(message).digest('hex') }),
  pong: () => undefined,
  closed: (code, error) => console.log(JSON.stringify({ ...result, code, error: error?.message ?? null })),
});
`,
    );
    const { stdout } = await run(process.execPath, [script, url], { env: { ...process.env, NODE_EXTRA_CA_CERTS: certificatePath }, timeout: 8000 });
    assert.deepEqual(JSON.parse(stdout), {
      opened: true,
      binary: { length: BINARY_MESSAGE.length, sha256: createHash('sha256').update(BINARY_MESSAGE).digest('hex') },
      text: 'done ✓',
      code: 1006,
      error: null,
    });
    assert.equal(connections, 1);
  });
});

/** One connection to a RawServer: the client's request head, what it sent after it, and when it closed. */
interface RawConnection {
  head: string;
  after: Buffer;
  closed: Promise<void>;
}

/**
 * A TCP server that reads each upgrade request's head and lets `answer` write whatever it likes, given the request's key.
 * With `allowHalfOpen`, a connection the client ends stays open until `answer`'s code ends it (else it ends at once).
 */
class RawServer {
  readonly connections: RawConnection[] = [];
  answer: (key: string, socket: Socket) => void = () => undefined;
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;

  constructor(allowHalfOpen = false) {
    this.server = createServer({ allowHalfOpen }, (socket) => this.accept(socket));
  }

  listen(): Promise<number> {
    return listen(this.server);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.server.close();
    await once(this.server, 'close');
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    const connection: RawConnection = {
      head: '',
      after: Buffer.alloc(0),
      closed: new Promise((resolve) =>
        socket.on('close', () => {
          this.sockets.delete(socket);
          resolve();
        }),
      ),
    };
    this.connections.push(connection);
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      if (connection.head) return void (connection.after = Buffer.concat([connection.after, chunk]));
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return;
      connection.head = received.toString('latin1', 0, end);
      connection.after = received.subarray(end + 4);
      this.answer(/^sec-websocket-key: *(\S+)$/im.exec(connection.head)?.[1] ?? '', socket);
    });
  }
}

function acceptValue(key: string): string {
  return createHash('sha1')
    .update(key + ACCEPT_GUID)
    .digest('base64');
}

/** A 101 answer accepting `key`, with `extraFields` (whole lines) added. */
function switchingProtocols(key: string, extraFields = ''): string {
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptValue(key)}\r\n${extraFields}\r\n`;
}

describe('UpstreamSocket handshakes with a raw server', () => {
  const raw = new RawServer();
  let url = '';

  before(async () => {
    url = `ws://127.0.0.1:${await raw.listen()}/ws?clientId=abc`;
  });

  after(() => raw.close());

  /** Connects with the raw server answering as `answer` does: the socket must never open and must close with 1006 and `message`. */
  async function assertRefused(answer: RawServer['answer'], message: string, handshakeTimeoutMs?: number): Promise<void> {
    raw.answer = answer;
    const client = new Client(url, handshakeTimeoutMs);
    const { code, error } = await client.closed;
    assert.equal(code, 1006);
    assert.equal(error?.message, message);
    assert.equal(client.opened, false);
  }

  test('a good 101 answer opens the socket, and a frame in the same write is read; the request offers no extension nor subprotocol', async () => {
    raw.answer = (key, socket) => socket.write(Buffer.concat([Buffer.from(switchingProtocols(key)), Buffer.from([0x81, 5]), Buffer.from('first')]));
    const client = new Client(url);
    assert.deepEqual(await once(client, 'text'), ['first']);
    assert.equal(client.opened, true);
    const { head } = raw.connections.at(-1)!;
    assert.match(head, /^GET \/ws\?clientId=abc HTTP\/1\.1\r\n/);
    assert.match(head, new RegExp(`^Host: ${new URL(url).host}$`, 'm'));
    assert.match(head, /^Sec-WebSocket-Version: 13$/m);
    assert.match(head, /^Sec-WebSocket-Key: [A-Za-z0-9+/]{22}==$/m);
    assert.doesNotMatch(head, /^Sec-WebSocket-(Extensions|Protocol):/im);
    client.socket.terminate();
    await client.closed;
  });

  test('a 404 answer: Unexpected server response: 404', async () => {
    await assertRefused((_key, socket) => socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n'), 'Unexpected server response: 404');
  });

  test('a 101 answer with the accept value of another key: Invalid Sec-WebSocket-Accept header', async () => {
    await assertRefused((_key, socket) => socket.write(switchingProtocols('dGhlIHNhbXBsZSBub25jZQ==')), 'Invalid Sec-WebSocket-Accept header');
  });

  test('a redirect is refused like any other answer, and not followed', async () => {
    const connectionsBefore = raw.connections.length;
    await assertRefused((_key, socket) => socket.end(`HTTP/1.1 302 Found\r\nLocation: ${url}\r\nContent-Length: 0\r\n\r\n`), 'Unexpected server response: 302');
    assert.equal(raw.connections.length, connectionsBefore + 1);
  });

  test('a server that accepts the connection and says nothing: Opening handshake has timed out', async () => {
    const started = performance.now();
    await assertRefused(() => undefined, 'Opening handshake has timed out', 200);
    assert.ok(performance.now() - started >= 150);
  });

  test('a 101 answer with a Sec-WebSocket-Extensions field is refused', async () => {
    await assertRefused(
      (key, socket) => socket.write(switchingProtocols(key, 'Sec-WebSocket-Extensions: permessage-deflate\r\n')),
      'Server sent a Sec-WebSocket-Extensions header but no extension was requested',
    );
  });

  test('a 101 answer with a Sec-WebSocket-Protocol field is refused', async () => {
    await assertRefused(
      (key, socket) => socket.write(switchingProtocols(key, 'Sec-WebSocket-Protocol: chat\r\n')),
      'Server sent a subprotocol but none was requested',
    );
  });

  test('a masked frame after the handshake: the client sends a close frame with 1002, ends, and reports the FrameError', async () => {
    const serverMask = [1, 2, 3, 4];
    const maskedText = Buffer.from([0x81, 0x80 | 5, ...serverMask, ...Buffer.from('hello').map((byte, i) => byte ^ serverMask[i % 4]!)]);
    raw.answer = (key, socket) => socket.write(Buffer.concat([Buffer.from(switchingProtocols(key)), maskedText]));
    const client = new Client(url);
    const texts: string[] = [];
    client.on('text', (text: string) => texts.push(text));
    const { code, error } = await client.closed;
    assert.equal(client.opened, true);
    assert.deepEqual(texts, []);
    assert.equal(code, 1006);
    assert.ok(error instanceof FrameError);
    assert.equal(error.closeCode, 1002);

    const connection = raw.connections.at(-1)!;
    await connection.closed;
    const sent = connection.after;
    // A final close frame, masked, of 2 bytes: the status code.
    assert.deepEqual([sent[0], sent[1], sent.length], [0x88, 0x80 | 2, 8]);
    const mask = sent.subarray(2, 6);
    const payload = Buffer.from(sent.subarray(6).map((byte, i) => byte ^ mask[i]!));
    assert.equal(payload.readUInt16BE(0), 1002);
  });

  test('close waits for the server to end the connection after its answering close frame', async (t) => {
    // The server answers the close frame at once and ends the connection 300 ms later, as a handler that still has work to do.
    const halfOpen = new RawServer(true);
    t.after(() => halfOpen.close());
    const halfOpenUrl = `ws://127.0.0.1:${await halfOpen.listen()}/ws?clientId=abc`;
    const serverClose = Buffer.from([0x88, 2, 0x03, 0xe8]);
    halfOpen.answer = (key, socket) => {
      socket.write(switchingProtocols(key));
      socket.on('data', () => {
        socket.write(serverClose);
        setTimeout(() => socket.end(), 300);
      });
    };
    const client = new Client(halfOpenUrl);
    await once(client, 'open');
    const closing = Date.now();
    client.socket.close();
    assert.deepEqual(await client.closed, { code: 1000, error: null });
    const waited = Date.now() - closing;
    assert.ok(waited >= 290 && waited < 1000, `closed ${waited} ms after close(), once the server ended the connection`);
  });
});
