// `node bench/upstream-stop.mjs [CHECKOUT] [--sockets N] [--rounds R]`: N WebSockets (1000) relayed by the gateway without keys, each
// with its own socket to the ComfyUI-like upstream (bench/ws-upstream.mjs), which is then killed, so that every one of those sockets
// ends in the same moment (as when ComfyUI's process stops); prints the gateway's event-loop delay (from its /metrics) while the ends
// arrive and the clients are closed, R times (3), each round with a new gateway and upstream. CHECKOUT is a built checkout (this one
// by default), so that two builds can be set side by side.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { checkoutArgs } from './checkout-args.mjs';
import { readEventLoopDelay, resetEventLoopDelay } from './event-loop.mjs';
import { startGateway } from './gateway.mjs';
import { freePort, spawnService, stopService, waitForPort } from './processes.mjs';

/** Sockets opened at once. */
const OPEN_AT_ONCE = 50;
/** How long the relayed sockets run before the upstream is killed, and how long the gateway then has to take their ends. */
const SETTLE_MS = 3000;

const {
  checkout,
  sockets: socketCount,
  rounds,
} = checkoutArgs('node bench/upstream-stop.mjs [CHECKOUT] [--sockets N] [--rounds R]', {
  '--sockets': 1000,
  '--rounds': 3,
});

/** Opens `count` WebSockets to `url`, OPEN_AT_ONCE at a time; each resolves its `closed` promise when it closes. */
async function openSockets(url, count) {
  const sockets = [];
  for (let first = 0; first < count; first += OPEN_AT_ONCE) {
    const group = Array.from({ length: Math.min(OPEN_AT_ONCE, count - first) }, (_, i) => {
      const socket = new WebSocket(`${url}?clientId=stop-${first + i}`);
      const closed = new Promise((resolveClosed) => socket.once('close', resolveClosed));
      return new Promise((resolveOpen, reject) => {
        socket.once('open', () => resolveOpen({ socket, closed }));
        socket.once('error', reject);
      });
    });
    sockets.push(...(await Promise.all(group)));
  }
  return sockets;
}

console.log(`${checkout}: ${socketCount} relayed WebSockets, the upstream killed`);
for (let round = 1; round <= rounds; round += 1) {
  const directory = await mkdtemp(join(tmpdir(), 'comfy-gate-upstream-stop-'));
  const port = await freePort();
  const upstream = spawnService(process.execPath, [fileURLToPath(new URL('ws-upstream.mjs', import.meta.url)), String(port)]);
  try {
    await waitForPort(port, upstream);
    const gateway = await startGateway({ directory, upstreamPort: port, auth: false, cli: join(checkout, 'dist/src/cli/main.js') });
    try {
      const sockets = await openSockets(`${gateway.url.replace(/^http/, 'ws')}/ws`, socketCount);
      await sleep(SETTLE_MS);
      await resetEventLoopDelay(gateway.url);
      upstream.child.kill('SIGKILL');
      const allClosed = Promise.all(sockets.map(({ closed }) => closed)).then(() => 'every client socket closed');
      await sleep(SETTLE_MS);
      const delay = await readEventLoopDelay(gateway.url);
      const closed = await Promise.race([allClosed, sleep(SETTLE_MS).then(() => 'NOT every client socket closed')]);
      console.log(`round ${round}: event loop p50 ${delay.p50_ms} ms, p99 ${delay.p99_ms} ms, max ${delay.max_ms} ms late; ${closed}`);
    } finally {
      await stopService(gateway.service);
    }
  } finally {
    await stopService(upstream);
    await rm(directory, { recursive: true, force: true });
  }
}
