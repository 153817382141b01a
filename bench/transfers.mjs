// Big transfers: a 500 MB /view download and a 90 MB upload directly, through nginx, through the Node.js ceiling and through the keyed gateway, with the gateway's RSS; then Range and HEAD on /view.

import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readEventLoopDelay, resetEventLoopDelay, worstDelay } from './event-loop.mjs';
import { startCeiling } from './ceiling.mjs';
import { startGateway } from './gateway.mjs';
import { writeKeysFile } from './keys.mjs';
import { startProxy } from './nginx.mjs';
import { runHeadLoop } from './head-loop.mjs';
import { cpuDuring } from './machine.mjs';
import { freePort, median, memoryOf, round, spawnService, stopService, waitForLine } from './processes.mjs';
import { runWrk } from './wrk.mjs';

const MB = 1_000_000;
const DOWNLOAD_BYTES = 500 * MB;
const UPLOAD_BYTES = 90 * MB;
const OUTPUT_NAME = 'bench_00001_.bin';
const UPLOAD_NAME = 'bench-upload.bin';
/** Rounds of each transfer and of the Range and HEAD loads, every route once per round: a transfer shows its fastest run and largest RSS growth, a load its median round; ratios are the median of the rounds'. */
const RUNS = 3;
const RSS_SAMPLE_MS = 100;
const RANGE = `bytes=0-${(1 << 20) - 1}`;
const SMALL_REQUEST_CONNECTIONS = 10;
const SMALL_REQUEST_WARM_UP_S = 2;
const SMALL_REQUEST_RUN_S = 5;
const here = (name) => fileURLToPath(new URL(name, import.meta.url));

/** {download, upload, range, head}, each with its figures per route (direct, nginx, ceiling, gateway). */
export async function measureTransfers(work, log) {
  const directory = join(work, 'files');
  mkdirSync(join(directory, 'output'), { recursive: true });
  mkdirSync(join(directory, 'input'), { recursive: true });
  const uploadSource = join(work, UPLOAD_NAME);
  await writeRandomFile(join(directory, 'output', OUTPUT_NAME), DOWNLOAD_BYTES);
  await writeRandomFile(uploadSource, UPLOAD_BYTES);

  const upstreamPort = await freePort();
  const proxyPort = await freePort();
  const upstream = spawnService(process.execPath, [here('files-upstream.mjs'), String(upstreamPort), directory, OUTPUT_NAME]);
  // Waited for at once: a line printed while something else is awaited would be missed.
  await waitForLine(upstream, /ready/);
  const proxy = await startProxy(work, proxyPort, upstreamPort, { streaming: true });
  // The ceiling of one Node.js process (no checks at all) in front of the same upstream: what the gateway's own work costs beside it.
  const ceiling = await startCeiling([], upstreamPort);
  const keyDirectory = join(work, 'transfers-gateway');
  const key = await writeKeysFile(keyDirectory, 1);
  const headerFile = join(work, 'transfers-key-header');
  writeFileSync(headerFile, `X-API-Key: ${key.apiKey}\n`, { mode: 0o600 });
  try {
    const gateway = await startGateway({ directory: keyDirectory, upstreamPort, auth: true });
    try {
      // The key's own output, as a user gets one: a prompt run through the gateway whose output is the big file.
      await queuePrompt(gateway.url, key.apiKey);
      const routes = [
        { name: 'direct', url: `http://127.0.0.1:${upstreamPort}` },
        { name: 'nginx', url: `http://127.0.0.1:${proxyPort}` },
        { name: 'ceiling', url: ceiling.url },
        { name: 'gateway', url: gateway.url, headerFile, apiKey: key.apiKey, gateway },
      ];
      const viewPath = `/view?filename=${OUTPUT_NAME}&type=output`;
      const results = { download_mb: DOWNLOAD_BYTES / MB, upload_mb: UPLOAD_BYTES / MB, range: RANGE };
      log(`transfers: ${DOWNLOAD_BYTES / MB} MB downloads, ${RUNS} rounds over ${routes.map(({ name }) => name).join(', ')}`);
      results.download = await timeTransfers(routes, (route) => ['-o', '/dev/null', `${route.url}${viewPath}`], DOWNLOAD_BYTES);
      log(`transfers: ${UPLOAD_BYTES / MB} MB uploads, ${RUNS} rounds`);
      const form = (route) => [
        '-o',
        '/dev/null',
        '-F',
        `image=@${uploadSource};filename=${UPLOAD_NAME};type=application/octet-stream`,
        `${route.url}/upload/image`,
      ];
      results.upload = await timeTransfers(routes, form, UPLOAD_BYTES);
      const small = routes.filter(({ name }) => name !== 'nginx');
      log(`transfers: Range on /view, ${RUNS} rounds`);
      results.range_rps = await loadSmallRequests(small, (route, load) => runWrk(`${route.url}${viewPath}`, { ...load, method: 'GET', range: RANGE }));
      log(`transfers: HEAD on /view, ${RUNS} rounds`);
      results.head_rps = await loadSmallRequests(small, (route, load) => runHeadLoop(`${route.url}${viewPath}`, load));
      return { ...results, ratios: ratiosOf(results) };
    } finally {
      await stopService(gateway.service);
    }
  } finally {
    await stopService(proxy);
    await stopService(ceiling.service);
    await stopService(upstream);
  }
}

/** Writes `bytes` of random data (one random MiB repeated) to `path`. */
export async function writeRandomFile(path, bytes) {
  const block = randomBytes(1 << 20);
  const out = createWriteStream(path);
  for (let written = 0; written < bytes; written += block.length) {
    if (!out.write(block.subarray(0, Math.min(block.length, bytes - written)))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** Queues a prompt through the gateway and waits until its job has ended with the big file as its output (at most 30 s). */
async function queuePrompt(gatewayUrl, apiKey) {
  const promptId = randomUUID();
  const body = JSON.stringify({ prompt: {}, prompt_id: promptId, client_id: 'bench' });
  const headers = { 'content-type': 'application/json', 'x-api-key': apiKey };
  const response = await fetch(`${gatewayUrl}/prompt`, { method: 'POST', headers, body });
  if (!response.ok) throw new Error(`POST /prompt answered ${response.status}: ${await response.text()}`);
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 100))) {
    const job = await (await fetch(`${gatewayUrl}/api/gateway/jobs/${promptId}`, { headers })).json();
    if (job.status === 'success') return;
  }
  throw new Error('the prompt queued through the gateway did not end within 30 s');
}

/**
 * Times one curl transfer (`curlArgs` of a route) RUNS times on every route, in rounds: each round runs
 * every route once, the order turned by one each round, so the machine's changes of speed fall on every
 * route alike. Per route {mb_per_s, seconds} of its fastest run and each round's MB/s in `rounds`
 * (ratios between routes are taken round by round); through the gateway also the RSS growth
 * (largest VmRSS sampled every 100 ms during a run, less the RSS before it; the largest of the runs)
 * and the event-loop delay (the worst of its runs).
 */
async function timeTransfers(routes, curlArgs, bytes) {
  const runs = new Map(routes.map((route) => [route.name, { seconds: [], growth: 0, delays: [] }]));
  for (let turn = 0; turn < RUNS; turn += 1) {
    for (const route of turned(routes, turn)) {
      const figures = runs.get(route.name);
      const pid = route.gateway?.service.pid;
      if (pid) await resetEventLoopDelay(route.url);
      const before = pid ? memoryOf(pid).rss_mb : 0;
      let peak = before;
      const sampler = pid ? setInterval(() => (peak = Math.max(peak, memoryOf(pid).rss_mb)), RSS_SAMPLE_MS) : null;
      try {
        figures.seconds.push(await curlSeconds(route, curlArgs(route), bytes));
      } finally {
        clearInterval(sampler);
      }
      figures.growth = Math.max(figures.growth, round(peak - before));
      if (pid) figures.delays.push(await readEventLoopDelay(route.url));
    }
  }
  return Object.fromEntries(
    routes.map((route) => {
      const { seconds, growth, delays } = runs.get(route.name);
      const best = Math.min(...seconds);
      const figures = { mb_per_s: round(bytes / MB / best), seconds: round(best, 3), rounds: seconds.map((run) => round(bytes / MB / run)) };
      if (!route.gateway) return [route.name, figures];
      return [route.name, { ...figures, rss_growth_mb: growth, rss_mb: memoryOf(route.gateway.service.pid).rss_mb, event_loop_delay: worstDelay(delays) }];
    }),
  );
}

/** The routes in the order of round `turn`: turned left by one per round. */
function turned(routes, turn) {
  const by = turn % routes.length;
  return [...routes.slice(by), ...routes.slice(0, by)];
}

/** Seconds curl took for one transfer; rejects unless it answered 200 and moved `bytes`. */
export function curlSeconds(route, args, bytes) {
  const key = route.headerFile ? ['-H', `@${route.headerFile}`] : [];
  // No `Expect: 100-continue` round trip before the upload's body.
  const curlArgs = ['-sS', '-H', 'Expect:', ...key, '-w', '%{http_code} %{size_download} %{size_upload} %{time_total}', ...args];
  return new Promise((resolve, reject) => {
    execFile('curl', curlArgs, (error, stdout, stderr) => {
      if (error) return reject(new Error(`curl failed: ${stderr || error.message}`));
      const [status, downloaded, uploaded, seconds] = stdout.trim().split(' ').map(Number);
      if (status !== 200 || Math.max(downloaded, uploaded) < bytes)
        return reject(new Error(`${route.name}: curl got ${status} after ${downloaded} bytes down, ${uploaded} up`));
      resolve(seconds);
    });
  });
}

/**
 * Small /view requests (`run` is wrk on a 1 MiB range, or the HEAD loop) at 10 connections on every
 * route, in RUNS rounds turned as the transfers' are, each route warmed up before its first: per route
 * the figures of its median round (with what the rest of the machine did) and each round's req/s in
 * `rounds`; through the gateway with the event-loop delay (the worst of its rounds).
 */
async function loadSmallRequests(routes, run) {
  const rounds = new Map(routes.map((route) => [route.name, []]));
  const delays = [];
  for (const route of routes) await run(route, { connections: SMALL_REQUEST_CONNECTIONS, apiKey: route.apiKey ?? '', seconds: SMALL_REQUEST_WARM_UP_S });
  for (let turn = 0; turn < RUNS; turn += 1) {
    for (const route of turned(routes, turn)) {
      const load = { connections: SMALL_REQUEST_CONNECTIONS, apiKey: route.apiKey ?? '', seconds: SMALL_REQUEST_RUN_S };
      if (route.gateway) await resetEventLoopDelay(route.url);
      const [measured, cpu] = await Promise.all([run(route, load), cpuDuring(SMALL_REQUEST_RUN_S)]);
      rounds.get(route.name).push({ ...measured, ...cpu });
      if (route.gateway) delays.push(await readEventLoopDelay(route.url));
    }
  }
  return Object.fromEntries(
    routes.map((route) => {
      const figures = rounds.get(route.name);
      const middle = figures.find(({ rps }) => rps === median(figures.map(({ rps }) => rps)));
      const kept = { ...middle, rounds: figures.map(({ rps }) => rps) };
      return [route.name, route.gateway ? { ...kept, event_loop_delay: worstDelay(delays) } : kept];
    }),
  );
}

/** The gateway's rounds beside each other route's: each ratio is the median of the rounds' (see roundsRatio). */
function ratiosOf({ download, upload, range_rps: range, head_rps: head }) {
  return {
    download_gateway_vs_direct: roundsRatio(download.gateway, download.direct),
    download_gateway_vs_nginx: roundsRatio(download.gateway, download.nginx),
    upload_gateway_vs_direct: roundsRatio(upload.gateway, upload.direct),
    upload_gateway_vs_nginx: roundsRatio(upload.gateway, upload.nginx),
    range_gateway_vs_direct: roundsRatio(range.gateway, range.direct),
    head_gateway_vs_direct: roundsRatio(head.gateway, head.direct),
    download_gateway_vs_ceiling: roundsRatio(download.gateway, download.ceiling),
    upload_gateway_vs_ceiling: roundsRatio(upload.gateway, upload.ceiling),
    range_gateway_vs_ceiling: roundsRatio(range.gateway, range.ceiling),
    head_gateway_vs_ceiling: roundsRatio(head.gateway, head.ceiling),
  };
}

/** The median over the rounds of one route's figure (MB/s, req/s) over another's in the same round. */
function roundsRatio(route, other) {
  return round(median(route.rounds.map((figure, i) => figure / other.rounds[i])), 3);
}
