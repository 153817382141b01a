// The WebSocket proxy takes the ends of many clients that leave at once a group per turn of the event loop, each closed as before.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import WebSocket from 'ws';
import { CLIENT_ENDS_PER_TURN, createWebSocketProxy } from '../../src/proxy/websocket.js';

const SOCKETS = 200;

test(`${SOCKETS} clients that close their sockets at once are closed a group per turn, each with the status 101`, async () => {
  // No socket is relayed here: the upstream is never dialled.
  const proxy = createWebSocketProxy({ upstream: new URL('http://127.0.0.1:9'), handshakeTimeoutMs: 1000, pingIntervalMs: 60_000 });
  const server = createServer();
  const statuses: number[] = [];
  const endsByTurn = new Map<number, number>();
  let turn = 0;
  let allEnded: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => (allEnded = resolve));
  server.on('upgrade', (req, socket, head) =>
    proxy.accept(req, socket, head, {
      onOpen: () => undefined,
      onMessage: () => undefined,
      onEnd: ({ status }) => {
        statuses.push(status);
        endsByTurn.set(turn, (endsByTurn.get(turn) ?? 0) + 1);
        if (statuses.length === SOCKETS) allEnded();
      },
    }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`;
    const clients = await Promise.all(
      Array.from({ length: SOCKETS }, async () => {
        const client = new WebSocket(url);
        await once(client, 'open');
        return client;
      }),
    );
    let counting = true;
    const countTurns = (): void => {
      turn += 1;
      if (counting) setImmediate(countTurns);
    };
    setImmediate(countTurns);
    // Each client's FIN reaches the gateway's side in the same turn, as when a client process exits.
    for (const client of clients) client.terminate();
    await ended;
    counting = false;

    assert.deepEqual(statuses, Array<number>(SOCKETS).fill(101));
    // A group taken at a turn's check phase closes in that turn's close phase, beside the group its poll phase took.
    const mostInOneTurn = Math.max(...endsByTurn.values());
    assert.ok(mostInOneTurn <= 2 * CLIENT_ENDS_PER_TURN, `${mostInOneTurn} sockets closed in one turn`);
    assert.ok(endsByTurn.size >= SOCKETS / (2 * CLIENT_ENDS_PER_TURN), `the ends took ${endsByTurn.size} turns`);
  } finally {
    proxy.close();
    server.close();
  }
});
