// Starts the ceiling: bench/bare-proxy.mjs, a Node.js proxy with no checks at all, in front of an upstream.

import { fileURLToPath } from 'node:url';
import { freePort, spawnService, waitForLine } from './processes.mjs';

const BARE_PROXY = fileURLToPath(new URL('bare-proxy.mjs', import.meta.url));

/** Starts the ceiling on a free port with `nodeArgs` in front of `upstreamPort`; resolves {service, url} once it serves. */
export async function startCeiling(nodeArgs, upstreamPort) {
  const port = await freePort();
  const service = spawnService(process.execPath, [...nodeArgs, BARE_PROXY, String(port), String(upstreamPort)]);
  await waitForLine(service, /listening/);
  return { service, url: `http://127.0.0.1:${port}` };
}
