// A TCP relay to a server that a test can cut, as if the server went away (connections dropped, new ones refused), and restore.

import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TcpRelay {
  /** The port it listens on, on 127.0.0.1. */
  port: number;
  /** Drops every relayed connection and refuses new ones (the port is closed) until `restore`. */
  cut(): Promise<void>;
  /** Listens on the same port again. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** Relays connections made to a free port on 127.0.0.1 to `host:port`. */
export async function startTcpRelay(host: string, port: number): Promise<TcpRelay> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  const server = createServer((client) => {
    const upstream = connect(port, host);
    track(client);
    track(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const relayPort = (server.address() as AddressInfo).port;
  let listening = true;
  const cut = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy();
    if (!listening) return;
    listening = false;
    const closed = once(server, 'close');
    server.close();
    await closed;
  };
  return {
    port: relayPort,
    cut,
    async restore() {
      if (listening) return;
      server.listen(relayPort, '127.0.0.1');
      await once(server, 'listening');
      listening = true;
    },
    close: cut,
  };
}
