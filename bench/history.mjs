// The history window: a user key's GET /history?max_items=64 among 10,000 entries of 20 KB, directly and through the keyed gateway, with another key's requests beside it, the gateway's RSS and event-loop delay.

import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readEventLoopDelay, resetEventLoopDelay } from './event-loop.mjs';
import { startGateway } from './gateway.mjs';
import { paddedGraph } from './history-upstream.mjs';
import { writeKeysFile } from './keys.mjs';
import { cpuDuring } from './machine.mjs';
import { freePort, memoryOf, round, spawnService, stopService, waitForLine } from './processes.mjs';
import { runWrk } from './wrk.mjs';

/** Entries in ComfyUI's history once the key's prompts have run (its most: MAXIMUM_HISTORY_SIZE). */
const ENTRIES = 10_000;
const ENTRY_BYTES = 20 * 1024;
/** Prompts the user key queues through the gateway: its jobs, and entries among the ENTRIES. */
const OWN_PROMPTS = 200;
const MAX_ITEMS = 64;
const WINDOW_PATH = `/history?max_items=${MAX_ITEMS}`;
const OTHER_KEY_PATH = '/features';
/** Keeps every job sent to ComfyUI at once: none is held in the gateway's queue. */
const UPSTREAM_QUEUE_DEPTH = 10_000;
const CONNECTIONS = 4;
const WARM_UP_S = 2;
const RUN_S = 5;
const RSS_SAMPLE_MS = 100;
const here = (name) => fileURLToPath(new URL(name, import.meta.url));

/**
 * {direct, user_window, other_key, other_key_during_window, direct_c1, user_window_c1, ratios, rss, ...}:
 * (a) the window straight from the upstream, (b) through the gateway with the user key, (c) an admin
 * key's GET /features alone and (d) while (b) runs, each at 4 connections (and (a), (b) at 1), with
 * the CPU each process used, the gateway's event-loop delay and its RSS (sampled every 100 ms).
 */
export async function measureHistory(work, log) {
  const directory = join(work, 'history');
  const keys = await writeKeysFile(directory, 1, { admin: true });
  const upstreamPort = await freePort();
  const upstream = spawnService(process.execPath, [here('history-upstream.mjs'), String(upstreamPort), String(ENTRIES - OWN_PROMPTS), String(ENTRY_BYTES)]);
  try {
    log(`history: filling the upstream with ${(ENTRIES - OWN_PROMPTS).toLocaleString('en')} entries of ${ENTRY_BYTES / 1024} KB`);
    await waitForLine(upstream, /ready/, 120_000);
    const gateway = await startGateway({ directory, upstreamPort, auth: true, flags: ['--upstream-queue-depth', String(UPSTREAM_QUEUE_DEPTH)] });
    const rss = sampleRss(gateway.service.pid);
    try {
      log(`history: queueing ${OWN_PROMPTS} prompts of the user key through the gateway`);
      const started = performance.now();
      await queuePrompts(gateway.url, keys.apiKey);
      await waitForSuccess(gateway.url, keys.apiKey);
      const queueing = { prompts: OWN_PROMPTS, seconds_until_success: round((performance.now() - started) / 1000, 2), rss_mb: rss.phase() };
      const directUrl = `http://127.0.0.1:${upstreamPort}`;
      const window = await checkWindows(directUrl, gateway.url, keys.apiKey);

      log(`history: GET ${WINDOW_PATH} directly and through the gateway, and an admin key's GET ${OTHER_KEY_PATH} alone and beside it`);
      const processes = { gateway: gateway.service.pid, upstream: upstream.pid };
      const direct = { url: `${directUrl}${WINDOW_PATH}` };
      const userWindow = { url: `${gateway.url}${WINDOW_PATH}`, apiKey: keys.apiKey };
      const otherKey = { url: `${gateway.url}${OTHER_KEY_PATH}`, apiKey: keys.admin.apiKey };
      const through = { gatewayUrl: gateway.url, rss, processes };
      const cases = {
        direct_c1: await measureLoads([direct], { connections: 1, processes }),
        user_window_c1: await measureLoads([userWindow], { ...through, connections: 1 }),
        direct: await measureLoads([direct], { processes }),
        user_window: await measureLoads([userWindow], through),
        other_key: await measureLoads([otherKey], through),
        other_key_during_window: await measureLoads([otherKey, userWindow], through),
      };
      const ratio = (a, b) => round(a / b, 3);
      const { direct_c1: direct1, user_window_c1: user1, direct: direct4, user_window: user4, other_key: alone, other_key_during_window: during } = cases;
      return {
        entries: ENTRIES,
        entry_bytes: ENTRY_BYTES,
        max_items: MAX_ITEMS,
        connections: CONNECTIONS,
        warm_up_s: WARM_UP_S,
        run_s: RUN_S,
        answer_bytes: window,
        queueing,
        ...cases,
        ratios: {
          window_p50_vs_direct: ratio(user4.p50_ms, direct4.p50_ms),
          window_p99_vs_direct: ratio(user4.p99_ms, direct4.p99_ms),
          window_rps_vs_direct: ratio(user4.rps, direct4.rps),
          window_p50_vs_direct_c1: ratio(user1.p50_ms, direct1.p50_ms),
          window_p99_vs_direct_c1: ratio(user1.p99_ms, direct1.p99_ms),
          other_key_rps_during_vs_alone: ratio(during.rps, alone.rps),
        },
        other_key_added: { p50_ms: round(during.p50_ms - alone.p50_ms, 3), p99_ms: round(during.p99_ms - alone.p99_ms, 3) },
        rss: { idle_mb: rss.idle_mb, peak_mb: rss.peak(), kernel_peak_mb: memoryOf(gateway.service.pid).peak_rss_mb },
      };
    } finally {
      rss.stop();
      await stopService(gateway.service);
    }
  } finally {
    await stopService(upstream);
  }
}

/**
 * Samples the process's VmRSS every 100 ms: `peak()` over the whole run, `phase()` the peak since the
 * previous call to `phase()` (and starts the next).
 */
function sampleRss(pid) {
  const idle_mb = memoryOf(pid).rss_mb;
  let peak = idle_mb;
  let phasePeak = idle_mb;
  const timer = setInterval(() => {
    const now = memoryOf(pid).rss_mb;
    peak = Math.max(peak, now);
    phasePeak = Math.max(phasePeak, now);
  }, RSS_SAMPLE_MS);
  return {
    idle_mb,
    peak: () => peak,
    phase: () => {
      const value = phasePeak;
      phasePeak = memoryOf(pid).rss_mb;
      return value;
    },
    stop: () => clearInterval(timer),
  };
}

/**
 * Queues OWN_PROMPTS prompts of about ENTRY_BYTES with the user key, one after another: the gateway
 * orders a key's window by when it admitted each job and ComfyUI by when each ended, and prompts
 * queued together may end in another order than they were admitted.
 */
async function queuePrompts(gatewayUrl, apiKey) {
  for (let queued = 0; queued < OWN_PROMPTS; queued += 1) {
    const body = JSON.stringify({ prompt: paddedGraph(ENTRY_BYTES), prompt_id: randomUUID(), client_id: 'bench-history' });
    const response = await fetch(`${gatewayUrl}/prompt`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': apiKey }, body });
    if (!response.ok) throw new Error(`POST /prompt answered ${response.status}: ${await response.text()}`);
    await response.arrayBuffer();
  }
}

/** Resolves once the gateway lists all the key's prompts as `success` jobs; rejects after 120 s. */
async function waitForSuccess(gatewayUrl, apiKey) {
  const deadline = Date.now() + 120_000;
  let total = 0;
  while (Date.now() < deadline) {
    const response = await fetch(`${gatewayUrl}/api/gateway/jobs?status=success&limit=500`, { headers: { 'x-api-key': apiKey } });
    if (!response.ok) throw new Error(`GET /api/gateway/jobs answered ${response.status}: ${await response.text()}`);
    total = (await response.json()).pagination.total;
    if (total >= OWN_PROMPTS) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`only ${total} of ${OWN_PROMPTS} jobs reached success within 120 s`);
}

/**
 * Checks that both windows hold the same MAX_ITEMS entries in the same order (the newest of the upstream
 * are the key's own prompts, whose job ids are their prompt ids); resolves the size of each answer.
 */
async function checkWindows(directUrl, gatewayUrl, apiKey) {
  const read = async (url, headers) => {
    const response = await fetch(`${url}${WINDOW_PATH}`, { headers });
    if (!response.ok) throw new Error(`${url}${WINDOW_PATH} answered ${response.status}`);
    const text = await response.text();
    return { ids: Object.keys(JSON.parse(text)), bytes: Buffer.byteLength(text) };
  };
  const direct = await read(directUrl, {});
  const gateway = await read(gatewayUrl, { 'x-api-key': apiKey });
  if (direct.ids.length !== MAX_ITEMS || gateway.ids.join() !== direct.ids.join()) {
    const shared = gateway.ids.filter((id) => direct.ids.includes(id)).length;
    throw new Error(
      `the gateway's window (${gateway.ids.length} entries, ${shared} of them the upstream's) is not the upstream's newest ${MAX_ITEMS} (${direct.ids.length}) in the same order`,
    );
  }
  return { direct: direct.bytes, gateway: gateway.bytes };
}

/**
 * Runs wrk on each of `loads` ({url, apiKey?}) at once, at `connections` (default CONNECTIONS) each, after
 * a warm-up: the first load's {rps, p50_ms, p99_ms} (and the second's as `beside`), with the machine's
 * CPU use and that of each of `processes`; through the gateway also its event-loop delay and RSS peak
 * over the measured run.
 */
async function measureLoads(loads, { connections = CONNECTIONS, processes, gatewayUrl, rss }) {
  const run = (seconds) => Promise.all(loads.map(({ url, apiKey = '' }) => runWrk(url, { connections, seconds, apiKey, method: 'GET' })));
  await run(WARM_UP_S);
  if (gatewayUrl) {
    await resetEventLoopDelay(gatewayUrl);
    rss.phase();
  }
  const [[first, beside], cpu] = await Promise.all([run(RUN_S), cpuDuring(RUN_S, processes)]);
  const figures = { connections, ...first, ...(beside ? { beside } : {}), ...cpu };
  if (!gatewayUrl) return figures;
  return { ...figures, rss_peak_mb: rss.phase(), event_loop_delay: await readEventLoopDelay(gatewayUrl) };
}
