// `npm run bench`: comfy-gate against nginx on loopback (throughput and latency, 1M-key start-up, usage writes, WebSocket relay, big transfers, the history window, the scale-out mode on PostgreSQL and Redis; the gateway's event-loop delay in each); writes bench/results.json.
// `npm run bench -- --only ws,transfers` runs only those groups of cases (see GROUPS).
// `npm run bench -- --profile` instead profiles the keyed gateway and the ceiling (V8 CPU profiler) at 50 connections on POST /prompt where prompts run and on a plain route; `--allocations` samples what each allocates per request there; `--perf` records both with Linux perf (kernel included).

import { once } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCeiling } from './ceiling.mjs';
import { ensureTools } from './tools.mjs';
import { MAX_DELAY_LIMIT_MS, readEventLoopDelay, resetEventLoopDelay, worstDelay } from './event-loop.mjs';
import { startGateway } from './gateway.mjs';
import { measureHistory } from './history.mjs';
import { writeKeysFile } from './keys.mjs';
import { cpuDuring, describeMachine } from './machine.mjs';
import { startProxy, startUpstream } from './nginx.mjs';
import { freePort, median, memoryOf, round, spawnService, stopAllNow, stopService, waitForLine } from './processes.mjs';
import { perfPerRequest, recordPerf } from './perf.mjs';
import { allocationsPerRequest, cpuPerRequest, topSelfTime } from './profile.mjs';
import { printAllocations, printCpuBesideCeiling, printPerfBesideCeiling, printProfile, printResults } from './report.mjs';
import { measureSharedStores } from './scale-out.mjs';
import { measureTransfers } from './transfers.mjs';
import { writeUsageHistory } from './usage-history.mjs';
import { measureLoad, runWrk } from './wrk.mjs';

const WARM_UP_S = 3;
const RUN_S = 10;
const PASSES = 2;
const CONNECTIONS = [1, 50];
/**
 * Rounds in which each gateway case and its ceiling run back to back (alternating which goes first), SHARE_RUN_S each at 50
 * connections: the share of the ceiling is the median of the rounds' shares. The ceiling alone moves by half from one run to the
 * next on this machine, so a share of two runs minutes apart says more about the machine than about the gateway.
 */
const SHARE_ROUNDS = 3;
const SHARE_RUN_S = 5;
/**
 * The cases measured as a share of another in rounds, each with the case it runs beside: its ceiling, or for the 1,000,000-key
 * gateway the same gateway with one key (target (e): within 5 % of (d)), which passes minutes apart could not tell from the machine.
 */
const SHARED_CASES = [
  { name: 'gateway_off', ceiling: 'bare_node_proxy' },
  { name: 'gateway_auth_plain_route', ceiling: 'bare_node_proxy' },
  { name: 'gateway_auth_runs', ceiling: 'bare_node_proxy_runs' },
  { name: 'gateway_auth_1m_keys', ceiling: 'gateway_auth' },
];
const LARGE_KEY_COUNT = 1_000_000;
const USAGE_HISTORY_RECORDS = 100_000;
const WS_SOCKETS = 1000;
const WS_SECONDS = 10;
/** Alternating runs of the WebSocket case, direct and through the gateway: one run's p99 moves by several ms with the machine. */
const WS_ROUNDS = 5;
/** Sockets of the WebSocket case that also get binary preview frames (100 KB, 5 a second). */
const WS_PREVIEW_SOCKETS = 50;
/** Sockets one key may hold open: all of the WebSocket case's on one key. */
const WS_MAX_PER_KEY = 2000;
/** How long the gateway is given, after the client has exited, to take its sockets' ends before the closing delay is read. */
const WS_CLOSE_SETTLE_MS = 1500;
/** How long the client may take to close its sockets and exit before the closing delay is read anyway. */
const WS_CLIENT_EXIT_MS = 30_000;
/** The groups of cases `--only` can name, in the order they run. */
const GROUPS = ['proxy', 'usage', 'ws', 'transfers', 'history', 'shared'];
/**
 * Jobs the gateway may keep in ComfyUI at once in the cases where prompts run: far more than the connections (with the prompts whose
 * events are still on their way), so that every prompt is sent as it arrives instead of waiting in the fair queue for one to end.
 */
const RUNS_QUEUE_DEPTH = 1000;
/** A keyed route the gateway forwards as it is (POST /prompt also claims the prompt for the key, durably, before ComfyUI sees it). */
const PLAIN_ROUTE = { path: '/features', method: 'GET' };
const here = (name) => fileURLToPath(new URL(name, import.meta.url));
const log = (message) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

async function main() {
  const only = selectedGroups();
  ensureTools(['nginx', 'wrk', 'curl']);
  const work = mkdtempSync(join(tmpdir(), 'comfy-gate-bench-'));
  process.once('exit', () => {
    stopAllNow();
    rmSync(work, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130));

  const machine = describeMachine();
  const upstreamPort = await freePort();
  const proxyPort = await freePort();
  const bareProxyPort = await freePort();
  await startUpstream(work, upstreamPort);
  await startProxy(work, proxyPort, upstreamPort);
  const comfyPort = await freePort();
  await startComfyLikeUpstream(comfyPort);
  const oneKey = await writeKeysFile(join(work, 'auth'), 1);
  const sampled = { upstreamPort, comfyPort, oneKey };
  if (process.argv.includes('--profile')) return profileKeyedCase(work, sampled);
  if (process.argv.includes('--allocations')) return measureAllocations(work, sampled);
  if (process.argv.includes('--perf')) return recordKernelAndUser(work, sampled);

  const parts = { machine: { ...machine, only: [...only] } };
  if (only.has('proxy')) parts.proxy = await measureProxyCases(work, { upstreamPort, proxyPort, bareProxyPort, comfyPort, oneKey });
  if (only.has('usage')) parts.usageWrites = await measureUsageWrites(work, upstreamPort);
  if (only.has('ws')) parts.websocket = await measureWebSockets(work);
  if (only.has('transfers')) parts.transfers = await measureTransfers(work, log);
  if (only.has('history')) parts.history = await measureHistory(work, log);
  if (only.has('shared')) parts.shared = await measureSharedStores(work, log, { upstreamPort, comfyPort });
  const results = assemble(parts);
  writeFileSync(here('results.json'), `${JSON.stringify(results, null, 2)}\n`);
  printResults(results);
}

/** The groups of cases to run: all, or those `--only a,b` names. */
function selectedGroups() {
  const at = process.argv.indexOf('--only');
  if (at < 0) return new Set(GROUPS);
  const names = (process.argv[at + 1] ?? '').split(',').filter(Boolean);
  const unknown = names.filter((name) => !GROUPS.includes(name));
  if (names.length === 0 || unknown.length > 0)
    throw new Error(`--only takes a comma-separated list of ${GROUPS.join(', ')}${unknown.length > 0 ? `, not ${unknown.join(', ')}` : ''}`);
  return new Set(names);
}

/**
 * Starts the upstream of the cases where prompts run: a ComfyUI-like Node.js server (bench/history-upstream.mjs, its history empty) that
 * answers POST /prompt with the prompt's id and runs it at once, sending its events over the WebSocket of its client_id. nginx cannot:
 * the gateway sends a prompt only once its event socket to the backend is open, and tracks each job by the id ComfyUI answered.
 */
async function startComfyLikeUpstream(port) {
  const service = spawnService(process.execPath, [here('history-upstream.mjs'), String(port), '0', '0']);
  await waitForLine(service, /ready/);
  return service;
}

/** The throughput and latency cases, PASSES times each, and the gateway's start-up with 1,000,000 keys. */
async function measureProxyCases(work, { upstreamPort, proxyPort, bareProxyPort, comfyPort, oneKey }) {
  log(`writing ${LARGE_KEY_COUNT.toLocaleString('en')} keys`);
  const manyKeys = await writeKeysFile(join(work, 'keys-1m'), LARGE_KEY_COUNT);
  const runsKey = await writeKeysFile(join(work, 'runs'), 1);
  const cases = [
    { name: 'direct', url: `http://127.0.0.1:${upstreamPort}` },
    { name: 'nginx', url: `http://127.0.0.1:${proxyPort}` },
    { name: 'bare_node_proxy', service: { script: 'bare-proxy.mjs', port: bareProxyPort, upstreamPort }, url: `http://127.0.0.1:${bareProxyPort}` },
    { name: 'gateway_off', gateway: { directory: join(work, 'off'), upstreamPort, auth: false } },
    { name: 'gateway_auth', gateway: { directory: join(work, 'auth'), upstreamPort, auth: true }, apiKey: oneKey.apiKey },
    { name: 'gateway_auth_1m_keys', gateway: { directory: join(work, 'keys-1m'), upstreamPort, auth: true }, apiKey: manyKeys.apiKey },
    { name: 'gateway_auth_plain_route', gateway: { directory: join(work, 'auth'), upstreamPort, auth: true }, apiKey: oneKey.apiKey, ...PLAIN_ROUTE },
    // POST /prompt where the prompts run: the ceiling and the keyed gateway in front of the ComfyUI-like upstream.
    {
      name: 'bare_node_proxy_runs',
      service: { script: 'bare-proxy.mjs', port: bareProxyPort, upstreamPort: comfyPort },
      url: `http://127.0.0.1:${bareProxyPort}`,
    },
    {
      name: 'gateway_auth_runs',
      gateway: { directory: join(work, 'runs'), upstreamPort: comfyPort, auth: true, flags: ['--upstream-queue-depth', String(RUNS_QUEUE_DEPTH)] },
      apiKey: runsKey.apiKey,
    },
  ];
  const passes = [];
  for (let pass = 1; pass <= PASSES; pass += 1) passes.push(await runPass(cases, pass));
  const startups = passes.map((results) => results.gateway_auth_1m_keys.startup);
  const startup = startups.reduce((best, next) => (next.startup_s < best.startup_s ? next : best));
  return { passes, startup, startups, shares: await measureShares(cases) };
}

/** Each of SHARED_CASES beside its ceiling, SHARE_ROUNDS times: {case: {ceiling, share, p99_vs_ceiling, rounds}}, each the median round's. */
async function measureShares(cases) {
  const byName = new Map(cases.map((testCase) => [testCase.name, testCase]));
  const shares = {};
  for (const { name, ceiling } of SHARED_CASES) {
    const rounds = [];
    for (let index = 1; index <= SHARE_ROUNDS; index += 1) {
      const order = index % 2 === 1 ? [ceiling, name] : [name, ceiling];
      log(`shares round ${index}/${SHARE_ROUNDS}: ${order.join(' then ')}`);
      const figures = {};
      for (const which of order) figures[which] = (await runCase(byName.get(which), { connectionCounts: [50], seconds: SHARE_RUN_S })).c50;
      const [measured, bound] = [figures[name], figures[ceiling]];
      rounds.push({
        share: round(measured.rps / bound.rps, 3),
        p99_vs_ceiling: round(measured.p99_ms / bound.p99_ms, 3),
        rps: measured.rps,
        p99_ms: measured.p99_ms,
        ceiling_rps: bound.rps,
        ceiling_p99_ms: bound.p99_ms,
      });
    }
    const medianOf = (field) => median(rounds.map((r) => r[field]));
    shares[name] = { ceiling, share: medianOf('share'), p99_vs_ceiling: medianOf('p99_vs_ceiling'), rounds };
  }
  return shares;
}

/** One pass over every case: {case: {c1, c50, startup?}}. */
async function runPass(cases, pass) {
  const results = {};
  for (const testCase of cases) {
    log(`pass ${pass}/${PASSES}: ${testCase.name}`);
    results[testCase.name] = await runCase(testCase);
  }
  return results;
}

/**
 * The job registry's files in a gateway's directory. Each run of a case starts without them: the prompts a run leaves
 * held (tens of thousands, never sent on) would otherwise be restored by every later run of that directory, so that
 * its start-up and its requests would be measured beside more held jobs in each pass and round than in the one before.
 */
const JOB_REGISTRY_FILES = ['jobs.json', 'jobs.journal'];

/** Starts the case's gateway or Node.js service if it has one, then loads it at each connection count (`seconds` each). */
async function runCase({ url, gateway, service, apiKey = '', path = '/prompt', method = 'POST' }, { connectionCounts = CONNECTIONS, seconds = RUN_S } = {}) {
  if (gateway) for (const name of JOB_REGISTRY_FILES) rmSync(join(gateway.directory, name), { force: true });
  const started = gateway ? await startGateway(gateway) : null;
  const helper = service ? spawnService(process.execPath, [here(service.script), String(service.port), String(service.upstreamPort)]) : null;
  if (helper) await waitForLine(helper, /listening/);
  const result = started ? { startup: { startup_s: started.startup_s, rss_mb: started.rss_mb, peak_rss_mb: started.peak_rss_mb } } : {};
  try {
    for (const connections of connectionCounts)
      result[`c${connections}`] = await measureLoad(
        `${started?.url ?? url}${path}`,
        { connections, apiKey, method },
        { warmUpS: WARM_UP_S, seconds, gatewayUrl: started?.url },
      );
  } finally {
    if (started) await stopService(started.service);
    if (helper) await stopService(helper);
  }
  return result;
}

/**
 * The keyed gateway at 50 connections, its usage file already holding a day of records: a latency probe
 * (one request every 5 ms) runs beside wrk and tells apart the requests served while the usage journal
 * was being compacted into a rewritten api_usage.json. On the plain route, which the gateway serves fast
 * enough to write a compaction's worth of records (4 MiB) within the run.
 */
async function measureUsageWrites(work, upstreamPort) {
  log(`usage writes: keyed ${PLAIN_ROUTE.method} ${PLAIN_ROUTE.path} at 50 connections, with usage compactions`);
  const directory = join(work, 'usage');
  const key = await writeKeysFile(directory, 1);
  await writeUsageHistory(directory, key.keyId, USAGE_HISTORY_RECORDS);
  const gateway = await startGateway({ directory, upstreamPort, auth: true });
  try {
    const url = `${gateway.url}${PLAIN_ROUTE.path}`;
    const load = { connections: 50, apiKey: key.apiKey, method: PLAIN_ROUTE.method };
    await runWrk(url, { ...load, seconds: WARM_UP_S });
    await resetEventLoopDelay(gateway.url);
    const probe = runNodeJson([here('probe.mjs'), url, PLAIN_ROUTE.method, key.apiKey, directory, String(RUN_S + 5)]);
    const wrk = await runWrk(url, { ...load, seconds: RUN_S + 5 });
    const figures = { route: `${PLAIN_ROUTE.method} ${PLAIN_ROUTE.path}`, usage_history_records: USAGE_HISTORY_RECORDS, wrk_c50: wrk, probe: await probe };
    return { ...figures, event_loop_delay: await readEventLoopDelay(gateway.url) };
  } finally {
    await stopService(gateway.service);
  }
}

/**
 * 1,000 WebSockets relayed by the gateway (one user key, its event filter on) receiving a progress
 * message every 100 ms, 50 of them also a 100 KB preview frame every 200 ms, in WS_ROUNDS rounds; then
 * the same without previews (`progress_only`), which tells the gateway's own cost per message apart
 * from the previews' bytes that every prompt's events queue behind on the gateway's one event socket.
 * Beside one in 20 of the sockets (bench/ws-client.mjs) a socket straight to the upstream gets the same
 * messages, sent in the same turn: what the gateway adds is taken message by message (its arrival
 * through the gateway minus its arrival direct), so a busy moment of the machine delays both copies
 * instead of one side's run. Each run has an upstream of its own: the upstream's prompts never end, and
 * a shared one would still send the earlier run's events. Each side's figures, and what the gateway
 * adds, are their median round (by p99); the event-loop delays and RSS the worst of every round.
 */
async function measureWebSockets(work) {
  const key = await writeKeysFile(join(work, 'ws'), 1);
  const withPreviews = await webSocketRounds(work, key, WS_PREVIEW_SOCKETS);
  const progressOnly = await webSocketRounds(work, key, 0);
  return {
    sockets: WS_SOCKETS,
    message_interval_ms: 100,
    preview_sockets: WS_PREVIEW_SOCKETS,
    preview_interval_ms: 200,
    preview_bytes: 100_000,
    ...withPreviews,
    progress_only: { rounds: progressOnly.rounds, added_by_gateway: { progress: progressOnly.added_by_gateway.progress } },
  };
}

/** WS_ROUNDS rounds of the WebSocket case with `previewSockets` of its sockets taking previews: {rounds, direct, gateway, added_by_gateway}. */
async function webSocketRounds(work, key, previewSockets) {
  log(`websockets: ${WS_SOCKETS} sockets (${previewSockets} with previews) through the gateway, some also direct, ${WS_ROUNDS} rounds`);
  const rounds = [];
  for (let index = 1; index <= WS_ROUNDS; index += 1) {
    const run = await withWebSocketUpstream(previewSockets, (port) =>
      relayWebSockets(join(work, 'ws'), join(work, `ws-${previewSockets}-${index}`), port, key, previewSockets),
    );
    log(`websockets round ${index}: progress p99 ${run.direct.p99_ms} ms direct, ${run.p99_ms} ms through the gateway, ${run.added.progress.p99_ms} ms added`);
    rounds.push(run);
  }
  /** The figures from the median round by p99 of what `figuresOf` takes from a round. */
  const medianRound = (figuresOf) => rounds.map(figuresOf).sort((x, y) => x.p99_ms - y.p99_ms)[Math.floor(rounds.length / 2)];
  const progressOf = ({ previews: _previews, ...figures }) => figures;
  const worstReading = (field) => rounds.map((r) => r[field]).reduce((a, b) => (b.max_ms > a.max_ms ? b : a));
  const {
    previews: _previews,
    direct: _direct,
    added: _added,
    event_loop_delay: _relaying,
    event_loop_delay_opening: _opening,
    event_loop_delay_closing: _closing,
    ...gateway
  } = medianRound((r) => r);
  return {
    rounds: rounds.map((r) => ({ direct_p99_ms: r.direct.p99_ms, gateway_p99_ms: r.p99_ms, added_p99_ms: r.added.progress.p99_ms })),
    direct: { ...progressOf(medianRound((r) => r.direct)), previews: medianRound((r) => r.direct.previews) },
    gateway: {
      ...gateway,
      previews: medianRound((r) => r.previews),
      rss_mb: Math.max(...rounds.map((r) => r.rss_mb)),
      event_loop_delay: worstReading('event_loop_delay'),
      event_loop_delay_opening: worstReading('event_loop_delay_opening'),
      event_loop_delay_closing: worstReading('event_loop_delay_closing'),
    },
    added_by_gateway: {
      progress: medianRound((r) => r.added.progress),
      ...(previewSockets > 0 ? { previews: medianRound((r) => r.added.previews) } : {}),
    },
  };
}

const webSocketClientArgs = (url, previewSockets, apiKey, directUrl) => [
  here('ws-client.mjs'),
  url,
  String(WS_SOCKETS),
  String(WS_SECONDS),
  String(previewSockets),
  apiKey,
  directUrl,
];

/** Runs `measure` with a WebSocket upstream of its own (its port), then stops it. */
async function withWebSocketUpstream(previewSockets, measure) {
  const port = await freePort();
  const upstream = spawnService(process.execPath, [here('ws-upstream.mjs'), String(port), String(previewSockets)]);
  try {
    await waitForLine(upstream, /ready/);
    return await measure(port);
  } finally {
    await stopService(upstream);
  }
}

/** One run of the bench's sockets through a new gateway (in `directory`, with the keys of `keysDirectory`) and one user key, some mirrored straight to the upstream: their figures (with `direct` and, per message, what the gateway `added`), the gateway's CPU, RSS (sampled every 500 ms) and event-loop delay while the sockets open, while the messages are timed, and from then until the client's sockets have closed (together, once it has printed its figures). */
async function relayWebSockets(keysDirectory, directory, upstreamPort, key, previewSockets) {
  // Every socket's prompt is sent on at once (none held back in the gateway's queue).
  const flags = ['--ws-max-per-key', String(WS_MAX_PER_KEY), '--upstream-queue-depth', String(WS_SOCKETS)];
  // A user directory of its own: the prompt ids of an earlier round are taken in that one's job registry.
  mkdirSync(directory, { recursive: true });
  copyFileSync(join(keysDirectory, 'api_keys.json'), join(directory, 'api_keys.json'));
  const gateway = await startGateway({ directory, upstreamPort, auth: true, flags });
  try {
    const idle = memoryOf(gateway.service.pid);
    const peak = { rss_mb: 0 };
    const sampler = setInterval(() => (peak.rss_mb = Math.max(peak.rss_mb, memoryOf(gateway.service.pid).rss_mb)), 500);
    await resetEventLoopDelay(gateway.url);
    const client = spawnService(
      process.execPath,
      webSocketClientArgs(`${gateway.url.replace('http', 'ws')}/ws`, previewSockets, key.apiKey, `ws://127.0.0.1:${upstreamPort}/ws`),
    );
    await waitForLine(client, /^recording$/m, 120_000);
    const opening = await readEventLoopDelay(gateway.url);
    const [[, line], cpu] = await Promise.all([waitForLine(client, /^(\{.*\})\n/m, 120_000), cpuDuring(WS_SECONDS)]);
    const relaying = await readEventLoopDelay(gateway.url);
    clearInterval(sampler);
    // The client closes its sockets together once it has printed its figures, then exits: every socket's end arrives in one turn.
    if (!client.exited) await Promise.race([once(client.child, 'exit'), sleep(WS_CLIENT_EXIT_MS)]);
    await sleep(WS_CLOSE_SETTLE_MS);
    const closing = await readEventLoopDelay(gateway.url);
    return {
      ...JSON.parse(line),
      ...cpu,
      rss_mb: peak.rss_mb,
      rss_idle_mb: idle.rss_mb,
      event_loop_delay: relaying,
      event_loop_delay_opening: opening,
      event_loop_delay_closing: closing,
    };
  } finally {
    await stopService(gateway.service);
  }
}

/** Runs a node script of the bench as its own process and resolves the JSON line it prints. */
async function runNodeJson(args) {
  const service = spawnService(process.execPath, args);
  const [, line] = await waitForLine(service, /^(\{.*\})\n/m, 120_000);
  return JSON.parse(line);
}

/**
 * The routes the profiling and allocations modes sample, each with the keyed gateway's setup: POST
 * /prompt where prompts run (in front of the ComfyUI-like upstream, as in the shares' runs case) and
 * the plain route in front of nginx's upstream.
 */
async function sampledRoutes(work, { upstreamPort, comfyPort, oneKey }) {
  const runsKey = await writeKeysFile(join(work, 'runs'), 1);
  return [
    {
      name: 'runs',
      path: '/prompt',
      method: 'POST',
      upstreamPort: comfyPort,
      gateway: { directory: join(work, 'runs'), flags: ['--upstream-queue-depth', String(RUNS_QUEUE_DEPTH)] },
      apiKey: runsKey.apiKey,
    },
    { name: 'plain-route', ...PLAIN_ROUTE, upstreamPort, gateway: { directory: join(work, 'auth') }, apiKey: oneKey.apiKey },
  ];
}

/**
 * Samples one route with `kind` of profile (cpu, heap): the keyed gateway, then the ceiling in front of
 * the same upstream, each over one run at 50 connections after the warm-up (bench/sampler.cjs).
 * Resolves {gateway, ceiling}, each {figures (wrk's), kept (the profile's file beside the bench)}.
 */
async function sampleRouteBesideCeiling(work, route, kind) {
  const load = { connections: 50, method: route.method };
  const described = `${route.method} ${route.path}`;
  const extension = kind === 'cpu' ? 'cpuprofile' : 'heapprofile';
  const gatewayProfile = join(work, `gateway-${route.name}.${extension}`);
  const gatewayArgs = samplerArgs(kind, gatewayProfile);
  const gateway = await startGateway({ ...route.gateway, upstreamPort: route.upstreamPort, auth: true, nodeArgs: gatewayArgs });
  log(`sampling (${kind}) the keyed gateway on ${described} at 50 connections for ${RUN_S} s after the warm-up`);
  const gatewayKept = here(`gateway-auth-${route.name}-c50.${extension}`);
  const gatewayFigures = await sampleRun(gateway.service, `${gateway.url}${route.path}`, { ...load, apiKey: route.apiKey }, gatewayProfile, gatewayKept);

  const ceilingProfile = join(work, `ceiling-${route.name}.${extension}`);
  const ceiling = await startCeiling(samplerArgs(kind, ceilingProfile), route.upstreamPort);
  log(`sampling (${kind}) the ceiling on ${described} at 50 connections for ${RUN_S} s after the warm-up`);
  const ceilingKept = here(`ceiling-${route.name}-c50.${extension}`);
  const ceilingFigures = await sampleRun(ceiling.service, `${ceiling.url}${route.path}`, load, ceilingProfile, ceilingKept);
  return { gateway: { figures: gatewayFigures, kept: gatewayKept }, ceiling: { figures: ceilingFigures, kept: ceilingKept } };
}

/**
 * The profiling mode: each sampled route under V8's CPU profiler, the keyed gateway then the ceiling.
 * Prints the gateway's functions with the most self time, then CPU per request function by function
 * beside the ceiling's, largest difference first.
 */
async function profileKeyedCase(work, ports) {
  for (const route of await sampledRoutes(work, ports)) {
    const described = `${route.method} ${route.path}`;
    const { gateway, ceiling } = await sampleRouteBesideCeiling(work, route, 'cpu');
    printProfile(described, gateway.figures, topSelfTime(gateway.kept, 20), gateway.kept);
    printCpuBesideCeiling(described, cpuPerRequest(gateway.kept, gateway.figures.requests), cpuPerRequest(ceiling.kept, ceiling.figures.requests), 25);
  }
}

/**
 * The perf mode: each sampled route under Linux perf (every thread of the process, kernel included),
 * the keyed gateway then the ceiling, one run each at 50 connections after the warm-up. Prints CPU per
 * request of the main thread in the kernel, in native code and in JavaScript, and of the other threads,
 * and the functions where they differ, the kernel's included: what V8's profiler shows only as time inside a system call.
 */
async function recordKernelAndUser(work, ports) {
  ensureTools(['perf'], { perf: 'linux-perf' });
  const load = { connections: 50, seconds: RUN_S };
  for (const route of await sampledRoutes(work, ports)) {
    const described = `${route.method} ${route.path}`;
    const gateway = await startGateway({ ...route.gateway, upstreamPort: route.upstreamPort, auth: true, nodeArgs: PERF_NODE_ARGS });
    log(`recording (perf) the keyed gateway on ${described} at 50 connections for ${RUN_S} s after the warm-up`);
    const gatewayRun = await perfRun(
      gateway.service,
      `${gateway.url}${route.path}`,
      { ...load, method: route.method, apiKey: route.apiKey },
      join(work, 'gateway.perf'),
    );
    const ceiling = await startCeiling(PERF_NODE_ARGS, route.upstreamPort);
    log(`recording (perf) the ceiling on ${described} at 50 connections for ${RUN_S} s after the warm-up`);
    const ceilingRun = await perfRun(ceiling.service, `${ceiling.url}${route.path}`, { ...load, method: route.method }, join(work, 'ceiling.perf'));
    printPerfBesideCeiling(described, { gateway: gatewayRun.figures, ceiling: ceilingRun.figures }, gatewayRun.perRequest, ceilingRun.perRequest, 30);
  }
}

/** Node flags of the processes the perf mode records: V8 writes a map of its compiled functions' names (see perfMapOf), so perf names them. */
const PERF_NODE_ARGS = ['--perf-basic-prof-only-functions'];

/** Where V8 writes the perf map of process `pid` under PERF_NODE_ARGS. */
function perfMapOf(pid) {
  return `/tmp/perf-${pid}.map`;
}

/** Warms `service` up on `url`, then records it with perf over one run; stops it and resolves {figures (wrk's), perRequest}. */
async function perfRun(service, url, load, file) {
  try {
    await runWrk(url, { ...load, seconds: WARM_UP_S });
    const [figures] = await Promise.all([runWrk(url, load), recordPerf(service.pid, load.seconds, file)]);
    return { figures, perRequest: perfPerRequest(file, figures.requests, service.pid) };
  } finally {
    await stopService(service);
    rmSync(perfMapOf(service.pid), { force: true });
  }
}

/**
 * The allocations mode: each sampled route with V8's sampling heap profiler, the keyed gateway then the
 * ceiling; prints the bytes each allocated per request and where. Unlike CPU time, this hardly moves
 * with how busy the machine is.
 */
async function measureAllocations(work, ports) {
  for (const route of await sampledRoutes(work, ports)) {
    const described = `${route.method} ${route.path}`;
    const { gateway, ceiling } = await sampleRouteBesideCeiling(work, route, 'heap');
    printAllocations(`keyed gateway, ${described}`, gateway.figures, allocationsPerRequest(gateway.kept, gateway.figures.requests, 20));
    printAllocations(`ceiling, ${described}`, ceiling.figures, allocationsPerRequest(ceiling.kept, ceiling.figures.requests, 10));
  }
}

/** Node flags that preload bench/sampler.cjs into the next process started: its `kind` of profile (cpu, heap), written to `profile`. */
function samplerArgs(kind, profile) {
  // The sampler reads these when its process starts.
  process.env.COMFY_GATE_BENCH_SAMPLER = kind;
  process.env.COMFY_GATE_BENCH_PROFILE = profile;
  return ['--require', here('sampler.cjs')];
}

/**
 * Warms `service` up on `url`, has its sampler profile one run (SIGUSR2 starts and stops it), stops
 * the service and keeps the profile written at `profile` as `kept`; resolves wrk's figures for the run.
 */
async function sampleRun(service, url, load, profile, kept) {
  await runWrk(url, { ...load, seconds: WARM_UP_S });
  process.kill(service.pid, 'SIGUSR2');
  const figures = await runWrk(url, { ...load, seconds: RUN_S });
  process.kill(service.pid, 'SIGUSR2');
  await waitForFile(`${profile}.done`);
  await stopService(service);
  copyFileSync(profile, kept);
  return figures;
}

/** Resolves once `path` exists (checked every 100 ms), or rejects after 30 s. */
async function waitForFile(path) {
  for (let waited = 0; !existsSync(path); waited += 100) {
    if (waited >= 30_000) throw new Error(`${path} did not appear`);
    await sleep(100);
  }
}

/** The results file: the better pass of each case (by throughput), ratios, start-up, usage writes, WebSockets, transfers, the history window, event-loop delays, and the targets of the groups that ran. */
function assemble({ machine, proxy, usageWrites, websocket, transfers, history, shared }) {
  const results = {
    machine: {
      ...machine,
      passes: PASSES,
      warm_up_s: WARM_UP_S,
      run_s: RUN_S,
      share_rounds: SHARE_ROUNDS,
      share_run_s: SHARE_RUN_S,
      load_generator: 'wrk, 1 thread; POST /prompt unless the case names another route',
    },
  };
  if (proxy) Object.assign(results, proxyResults(proxy));
  if (usageWrites) results.usage_writes = usageWrites;
  if (websocket) results.websocket = websocket;
  if (transfers) results.transfers = transfers;
  if (history) results.history = history;
  if (shared) results.shared_stores = shared;
  results.event_loop_delay = eventLoopDelays(results);
  return { ...results, targets: targets(results) };
}

function proxyResults({ passes, startup, startups, shares }) {
  const cases = {};
  for (const name of Object.keys(passes[0])) {
    cases[name] = {};
    for (const connections of CONNECTIONS) {
      const key = `c${connections}`;
      cases[name][key] = passes.map((pass) => pass[name][key]).reduce((best, next) => (next.rps > best.rps ? next : best));
    }
  }
  const ratio = (a, b) => round(a / b, 3);
  const ratios = {
    auth_vs_nginx_c50: ratio(cases.gateway_auth.c50.rps, cases.nginx.c50.rps),
    auth_vs_direct_c50: ratio(cases.gateway_auth.c50.rps, cases.direct.c50.rps),
    bare_node_proxy_vs_nginx_c50: ratio(cases.bare_node_proxy.c50.rps, cases.nginx.c50.rps),
    auth_vs_bare_node_proxy_c50: ratio(cases.gateway_auth.c50.rps, cases.bare_node_proxy.c50.rps),
    auth_1m_keys_vs_auth_c50: ratio(cases.gateway_auth_1m_keys.c50.rps, cases.gateway_auth.c50.rps),
    auth_plain_route_vs_nginx_c50: ratio(cases.gateway_auth_plain_route.c50.rps, cases.nginx.c50.rps),
    auth_runs_vs_bare_node_proxy_runs_c50: ratio(cases.gateway_auth_runs.c50.rps, cases.bare_node_proxy_runs.c50.rps),
  };
  return {
    cases,
    ratios,
    shares,
    startup_1m_keys_s: startup.startup_s,
    rss_1m_keys_mb: startup.rss_mb,
    peak_rss_1m_keys_mb: startup.peak_rss_mb,
    startups_1m_keys: startups,
  };
}

/** The gateway's event-loop delay in every case run through it: {case: {p50_ms, p99_ms, max_ms, over_limit}}. */
function eventLoopDelays({ cases = {}, usage_writes: usage, websocket, transfers, history, shared_stores: shared }) {
  const delays = {};
  for (const [name, byConnections] of Object.entries(cases)) {
    for (const [connections, figures] of Object.entries(byConnections))
      if (figures.event_loop_delay) delays[`${name} ${connections}`] = figures.event_loop_delay;
  }
  if (usage) delays['usage_writes c50'] = usage.event_loop_delay;
  if (websocket) {
    delays['websocket opening'] = websocket.gateway.event_loop_delay_opening;
    delays['websocket relay'] = websocket.gateway.event_loop_delay;
    delays['websocket closing'] = websocket.gateway.event_loop_delay_closing;
  }
  if (transfers) {
    for (const kind of ['download', 'upload', 'range_rps', 'head_rps'])
      delays[`transfers ${kind.replace('_rps', '')}`] = transfers[kind].gateway.event_loop_delay;
  }
  if (history) {
    delays['history user window c1'] = history.user_window_c1.event_loop_delay;
    delays['history user window'] = history.user_window.event_loop_delay;
    delays['history other key'] = history.other_key.event_loop_delay;
    delays['history other key during window'] = history.other_key_during_window.event_loop_delay;
  }
  if (shared && !shared.skipped) {
    for (const name of ['plain_route', 'runs']) {
      for (const stores of ['shared', 'files']) delays[`${stores} stores ${name}`] = worstDelay(shared[name].rounds.map((r) => r[stores].event_loop_delay));
    }
    delays[`shared stores runs ${shared.long_runs.seconds} s`] = shared.long_runs.event_loop_delay;
  }
  return delays;
}

/** Each target of the issue with the measured value and whether it is met, for the groups that ran. */
function targets({ cases, ratios, shares, startup_1m_keys_s, rss_1m_keys_mb, usage_writes, websocket, transfers, history, event_loop_delay }) {
  const target = (value, limit, met) => ({ value, limit, met });
  const all = {};
  if (cases) {
    Object.assign(all, {
      auth_c50_throughput_vs_nginx: target(ratios.auth_vs_nginx_c50, '>= 0.5', ratios.auth_vs_nginx_c50 >= 0.5),
      auth_c50_p99_ms: target(
        cases.gateway_auth.c50.p99_ms,
        `<= ${round(cases.nginx.c50.p99_ms + 1, 3)} (nginx p99 + 1 ms)`,
        cases.gateway_auth.c50.p99_ms <= cases.nginx.c50.p99_ms + 1,
      ),
      auth_1m_keys_c50_throughput_vs_auth: target(
        shares.gateway_auth_1m_keys.share,
        '>= 0.95 (median round beside (d))',
        shares.gateway_auth_1m_keys.share >= 0.95,
      ),
      startup_1m_keys_s: target(startup_1m_keys_s, '< 3', startup_1m_keys_s < 3),
      rss_1m_keys_mb: target(rss_1m_keys_mb, '< 600', rss_1m_keys_mb < 600),
    });
    // Against the ceiling of one Node.js process (bench/bare-proxy.mjs), run beside each case (see measureShares).
    const share = (name, limit) => target(shares[name].share, `>= ${limit}`, shares[name].share >= limit);
    const p99 = (name, ceiling) => target(shares[name].p99_vs_ceiling, `<= 1.5 (p99 over ${ceiling}'s p99)`, shares[name].p99_vs_ceiling <= 1.5);
    Object.assign(all, {
      plain_route_c50_vs_ceiling: share('gateway_auth_plain_route', 0.85),
      no_auth_c50_vs_ceiling: share('gateway_off', 0.9),
      prompt_c50_vs_ceiling: share('gateway_auth_runs', 0.6),
      plain_route_c50_p99_vs_ceiling: p99('gateway_auth_plain_route', 'the ceiling'),
      prompt_c50_p99_vs_ceiling: p99('gateway_auth_runs', 'the ceiling in front of the same upstream'),
    });
  }
  if (usage_writes) {
    const { steady, compacting } = usage_writes.probe;
    all.p99_during_usage_compaction_ms = target(
      compacting.p99_ms,
      `<= ${round(steady.p99_ms + 1, 3)} (p99 between compactions + 1 ms)`,
      compacting.requests > 0 && compacting.p99_ms <= steady.p99_ms + 1,
    );
  }
  if (websocket) {
    const added = websocket.added_by_gateway.progress.p99_ms;
    all.ws_p99_added_ms = target(added, '<= 1.5', added <= 1.5);
  }
  if (transfers) {
    const { ratios: transferRatios, download, upload } = transfers;
    all.download_vs_direct = target(transferRatios.download_gateway_vs_direct, '>= 0.8', transferRatios.download_gateway_vs_direct >= 0.8);
    all.upload_vs_direct = target(transferRatios.upload_gateway_vs_direct, '>= 0.8', transferRatios.upload_gateway_vs_direct >= 0.8);
    // Range and HEAD pass through as cheaply as any forwarded request: the same share of the ceiling as a keyed GET.
    all.range_vs_ceiling = target(transferRatios.range_gateway_vs_ceiling, '>= 0.85', transferRatios.range_gateway_vs_ceiling >= 0.85);
    all.head_vs_ceiling = target(transferRatios.head_gateway_vs_ceiling, '>= 0.85', transferRatios.head_gateway_vs_ceiling >= 0.85);
    const growth = Math.max(download.gateway.rss_growth_mb, upload.gateway.rss_growth_mb);
    all.transfer_rss_growth_mb = target(growth, '< 50', growth < 50);
  }
  if (history) {
    const { ratios: historyRatios, other_key_added: added, rss } = history;
    all.history_window_p50_vs_direct = target(historyRatios.window_p50_vs_direct, '<= 3', historyRatios.window_p50_vs_direct <= 3);
    all.history_other_key_p99_added_ms = target(added.p99_ms, `<= ${MAX_DELAY_LIMIT_MS}`, added.p99_ms <= MAX_DELAY_LIMIT_MS);
    all.history_rss_peak_mb = target(rss.peak_mb, '< 300', rss.peak_mb < 300);
    const worst = Math.max(...['user_window_c1', 'user_window', 'other_key', 'other_key_during_window'].map((name) => history[name].event_loop_delay.max_ms));
    all.history_event_loop_max_delay_ms = target(worst, `<= ${MAX_DELAY_LIMIT_MS}`, worst <= MAX_DELAY_LIMIT_MS);
  }
  const worst = Object.entries(event_loop_delay).reduce((most, next) => (next[1].max_ms > (most?.[1].max_ms ?? -1) ? next : most), null);
  if (worst)
    all.event_loop_max_delay_ms = target(worst[1].max_ms, `<= ${MAX_DELAY_LIMIT_MS} in every case (worst: ${worst[0]})`, worst[1].max_ms <= MAX_DELAY_LIMIT_MS);
  return all;
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`bench failed: ${error.stack ?? error}`);
    process.exit(1);
  },
);
