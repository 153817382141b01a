// `comfy-gate serve`: runs the gateway (and the ComfyUI child given after `--`) until SIGTERM, SIGINT or SIGHUP, then stops the child, persists everything and exits.

import { createGateway } from '../../index.js';
import { loadServeConfig } from '../../config/load.js';
import type { BackendConfig } from '../../config/schema.js';

const VERSION = '0.1.0';

/** `upstream URL` for one backend, `upstreams NAME URL, NAME URL` for several, each child with its command. */
function describeBackends(backends: readonly BackendConfig[]): string {
  const one = (backend: BackendConfig): string => `${backend.url.origin}${backend.child ? ` (started by the gateway: ${backend.child.command})` : ''}`;
  if (backends.length === 1) return `upstream ${one(backends[0]!)}`;
  return `upstreams ${backends.map((backend) => `${backend.name} ${one(backend)}${backend.weight === 1 ? '' : ` weight ${backend.weight}`}`).join(', ')}`;
}

/** Starts the gateway and prints one line saying how it runs. Resolves once it is listening. */
export async function serve(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const config = loadServeConfig(args, env);
  const gateway = await createGateway(config);
  const address = await gateway.listen();
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const keyCount = gateway.keyCount();
  console.log(
    `comfy-gate ${VERSION}: mode ${config.mode}, listening on http://${host}:${address.port}, ` +
      `${describeBackends(gateway.backends)}, store ${gateway.storeLocation} (${keyCount} key${keyCount === 1 ? '' : 's'})`,
  );
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(1);
    stopping = true;
    gateway.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`comfy-gate: error while stopping on ${signal}: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // A closed terminal: stop as on SIGTERM, so the child ComfyUI is not left running.
  process.on('SIGHUP', stop);
}
