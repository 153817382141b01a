// Gives a ComfyUI child its port: a free loopback port, put where its command says `{port}`, becomes the gateway's upstream.

import { createServer } from 'node:net';
import type { GatewayConfig } from '../config/schema.js';

/** A TCP port on 127.0.0.1 that nothing listens on: the system picks it for a moment's listener, which is closed again. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * The config with a free loopback port in place of each `{port}` of its child's arguments, and
 * `http://127.0.0.1:PORT` as its upstream. A config without a child is returned unchanged.
 * @example await withChildPort(loadServeConfig(['--', 'python', 'main.py', '--port', '{port}'], {}))
 */
export async function withChildPort(config: GatewayConfig): Promise<GatewayConfig> {
  if (!config.child) return config;
  const port = String(await freeLoopbackPort());
  return {
    ...config,
    upstream: new URL(`http://127.0.0.1:${port}`),
    child: { command: config.child.command, args: config.child.args.map((arg) => arg.replaceAll('{port}', port)) },
  };
}
