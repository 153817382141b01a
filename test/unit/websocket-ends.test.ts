// The WebSocket proxy takes the ends of many sockets that end at once (clients leaving, or ComfyUI stopping) a group per turn of the event loop.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { createWebSocketProxy, SOCKET_ENDS_PER_TURN, type WebSocketProxy } from '../../src/proxy/websocket.js';

const SOCKETS = 200;

/** Counts the turns of the event loop (one a check phase) and what happened in each. */
class TurnCounter {
  private turn = 0;
  private counting = true;
  readonly byTurn = new Map<number, number>();

  constructor() {
    const next = (): void => {
      this.turn += 1;
      if (this.counting) setImmediate(next);
    };
    setImmediate(next);
  }

  count(): void {
    this.byTurn.set(this.turn, (this.byTurn.get(this.turn) ?? 0) + 1);
  }

  stop(): void {
    this.counting = false;
  }
}

/** A group taken at a turn's check phase closes in that turn's close phase, beside the group its poll phase took. */
function assertSpread(counter: TurnCounter): void {
  const mostInOneTurn = Math.max(...counter.byTurn.values());
  assert.ok(mostInOneTurn <= 2 * SOCKET_ENDS_PER_TURN, `${mostInOneTurn} sockets closed in one turn`);
  assert.ok(counter.byTurn.size >= SOCKETS / (2 * SOCKET_ENDS_PER_TURN), `the ends took ${counter.byTurn.size} turns`);
}

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function openClients(url: string): Promise<WebSocket[]> {
  return Promise.all(
    Array.from({ length: SOCKETS }, async () => {
      const client = new WebSocket(url);
      await once(client, 'open');
      return client;
    }),
  );
}

function proxyTo(upstream: string): WebSocketProxy {
  return createWebSocketProxy({ upstream: new URL(`http://${upstream}`), handshakeTimeoutMs: 5000, pingIntervalMs: 60_000 });
}

test(`${SOCKETS} clients that close their sockets at once are closed a group per turn, each with the status 101`, async () => {
  // No socket is relayed here: the upstream is never dialled.
  const proxy = proxyTo('127.0.0.1:9');
  const gateway = createServer();
  const statuses: number[] = [];
  let counter: TurnCounter | null = null;
  let allEnded: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => (allEnded = resolve));
  gateway.on('upgrade', (req, socket, head) =>
    proxy.accept(req, socket, head, {
      onOpen: () => undefined,
      onMessage: () => undefined,
      onEnd: ({ status }) => {
        statuses.push(status);
        counter?.count();
        if (statuses.length === SOCKETS) allEnded();
      },
    }),
  );
  try {
    const clients = await openClients(`ws://${await listen(gateway)}/ws`);
    counter = new TurnCounter();
    // Each client's FIN reaches the gateway's side in the same turn, as when a client process exits.
    for (const client of clients) client.terminate();
    await ended;
    counter.stop();

    assert.deepEqual(statuses, Array<number>(SOCKETS).fill(101));
    assertSpread(counter);
  } finally {
    proxy.close();
    gateway.close();
  }
});

test(`${SOCKETS} relayed sockets whose ComfyUI stops at once are closed a group per turn`, async () => {
  const comfy = createServer();
  const comfySockets = new WebSocketServer({ server: comfy });
  const proxy = proxyTo(await listen(comfy));
  const gateway = createServer();
  let relaysEnded = 0;
  let allRelaysEnded: () => void = () => undefined;
  const relaysOver = new Promise<void>((resolve) => (allRelaysEnded = resolve));
  gateway.on('upgrade', (req, socket, head) =>
    proxy.relay(req, socket, head, {
      onEnd: () => {
        relaysEnded += 1;
        if (relaysEnded === SOCKETS) allRelaysEnded();
      },
    }),
  );
  try {
    const clients = await openClients(`ws://${await listen(gateway)}/ws`);
    assert.equal(comfySockets.clients.size, SOCKETS);
    const counter = new TurnCounter();
    const codes = Promise.all(
      clients.map(async (client) => {
        const [code] = (await once(client, 'close')) as [number];
        counter.count();
        return code;
      }),
    );
    // Each socket's FIN reaches the gateway's side in the same turn, as when ComfyUI's process stops.
    for (const socket of comfySockets.clients) socket.terminate();

    // A socket to ComfyUI that ended without a close frame ends its client's the same way (1006).
    assert.deepEqual(await codes, Array<number>(SOCKETS).fill(1006));
    counter.stop();
    assertSpread(counter);
    // Every relay's end is told (the gateway's accounting).
    await relaysOver;
    assert.equal(relaysEnded, SOCKETS);
  } finally {
    proxy.close();
    comfySockets.close();
    comfy.close();
    gateway.close();
  }
});
