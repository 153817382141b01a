// Gives each ComfyUI child its port: a free loopback port, put where its command says `{port}`, becomes that backend's URL.

import { createServer } from 'node:net';
import type { BackendConfig, GatewayConfig } from '../config/schema.js';

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
 * The config with a free loopback port for each child backend: in place of each `{port}` of its
 * command, and as its URL `http://127.0.0.1:PORT`. Backends without a child are kept as they are.
 * @example await withChildPorts(loadServeConfig(['--', 'python', 'main.py', '--port', '{port}'], {}))
 */
export async function withChildPorts(config: GatewayConfig): Promise<GatewayConfig> {
  const backends = await Promise.all(config.backends.map(withChildPort));
  return { ...config, backends };
}

async function withChildPort(backend: BackendConfig): Promise<BackendConfig> {
  if (!backend.child) return backend;
  const port = String(await freeLoopbackPort());
  return {
    ...backend,
    url: new URL(`http://127.0.0.1:${port}`),
    child: { command: backend.child.command, args: backend.child.args.map((arg) => arg.replaceAll('{port}', port)) },
  };
}
