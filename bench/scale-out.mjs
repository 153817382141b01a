// The scale-out mode: the keyed gateway on PostgreSQL and Redis (a database of its own, as replicas run) beside the same gateway on its JSON files, in rounds; then one run of prompts long enough to hold a pass of the replica's safety-net reload.

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGateway } from './gateway.mjs';
import { writeKeysFile } from './keys.mjs';
import { median, round, stopService } from './processes.mjs';
import { sharedStoresUnavailable, useSharedStores } from './shared-stores.mjs';
import { measureLoad } from './wrk.mjs';

const ROUNDS = 3;
const RUN_S = 5;
const WARM_UP_S = 3;
const CONNECTIONS = 50;
/** Past the first pass of the safety-net reload (every 30 s from start), which re-reads the rows of the last 90 s. */
const LONG_RUN_S = 40;
/** As the proxy cases where prompts run: every prompt is sent as it arrives. */
const RUNS_QUEUE_DEPTH = 1000;
const CHECKOUT = fileURLToPath(new URL('..', import.meta.url));

/**
 * {plain_route, runs, long_runs} or {skipped}: each case's req/s on shared stores over the same case on
 * files, round by round (alternating which goes first) with both runs' figures and event-loop delays, the
 * median round's share; and one LONG_RUN_S run of prompts that run on shared stores.
 */
export async function measureSharedStores(work, log, { upstreamPort, comfyPort }) {
  const unavailable = await sharedStoresUnavailable();
  if (unavailable) {
    log(`scale-out: skipped (${unavailable})`);
    return { skipped: unavailable };
  }
  const cases = {
    plain_route: { upstreamPort, path: '/features', method: 'GET', flags: [] },
    runs: { upstreamPort: comfyPort, path: '/prompt', method: 'POST', flags: ['--upstream-queue-depth', String(RUNS_QUEUE_DEPTH)] },
  };
  const results = {};
  for (const [name, testCase] of Object.entries(cases)) {
    const rounds = [];
    for (let index = 1; index <= ROUNDS; index += 1) {
      const order = index % 2 === 1 ? ['shared', 'files'] : ['files', 'shared'];
      log(`scale-out ${name} round ${index}/${ROUNDS}: ${order.join(' then ')}`);
      const figures = {};
      for (const stores of order) figures[stores] = await runOnStores(work, testCase, stores, RUN_S);
      rounds.push({ share: round(figures.shared.rps / figures.files.rps, 3), shared: figures.shared, files: figures.files });
    }
    results[name] = { share: median(rounds.map((r) => r.share)), rounds };
  }
  log(`scale-out: prompts that run on shared stores for ${LONG_RUN_S} s`);
  results.long_runs = { seconds: LONG_RUN_S, ...(await runOnStores(work, cases.runs, 'shared', LONG_RUN_S)) };
  return results;
}

/** One measured run of the keyed gateway on `stores` (files or shared), in a directory of its own. */
async function runOnStores(work, { upstreamPort, path, method, flags }, stores, seconds) {
  const directory = join(work, `scale-out-${stores}-${Date.now()}`);
  const key = await writeKeysFile(directory, 1);
  const shared = stores === 'shared' ? await useSharedStores(CHECKOUT, directory, [key.keyId]) : null;
  const gateway = await startGateway({ directory, upstreamPort, auth: true, flags: [...flags, ...(shared?.flags ?? [])] });
  try {
    return await measureLoad(
      `${gateway.url}${path}`,
      { connections: CONNECTIONS, apiKey: key.apiKey, method },
      { warmUpS: WARM_UP_S, seconds, gatewayUrl: gateway.url },
    );
  } finally {
    await stopService(gateway.service);
    await shared?.remove();
  }
}
