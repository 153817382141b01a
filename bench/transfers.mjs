// Big transfers: a 500 MB /view download and a 90 MB upload directly, through nginx, through the Node.js ceiling and through the keyed gateway, with the gateway's RSS; then Range and HEAD on /view.

import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readEventLoopDelay, resetEventLoopDelay } from './event-loop.mjs';
import { startGateway } from './gateway.mjs';
import { writeKeysFile } from './keys.mjs';
import { startProxy } from './nginx.mjs';
import { runHeadLoop } from './head-loop.mjs';
import { cpuDuring } from './machine.mjs';
import { freePort, memoryOf, round, spawnService, stopService, waitForLine } from './processes.mjs';
import { runWrk } from './wrk.mjs';

const MB = 1_000_000;
const DOWNLOAD_BYTES = 500 * MB;
const UPLOAD_BYTES = 90 * MB;
const OUTPUT_NAME = 'bench_00001_.bin';
const UPLOAD_NAME = 'bench-upload.bin';
/** Each transfer runs this many times per route; the fastest is kept, and the largest RSS growth. */
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
  const ceilingPort = await freePort();
  const upstream = spawnService(process.execPath, [here('files-upstream.mjs'), String(upstreamPort), directory, OUTPUT_NAME]);
  const proxy = await startProxy(work, proxyPort, upstreamPort, { streaming: true });
  // The ceiling of one Node.js process (no checks at all) in front of the same upstream: what the gateway's own work costs beside it.
  const ceiling = spawnService(process.execPath, [here('bare-proxy.mjs'), String(ceilingPort), String(upstreamPort)]);
  const keyDirectory = join(work, 'transfers-gateway');
  const key = await writeKeysFile(keyDirectory, 1);
  const headerFile = join(work, 'transfers-key-header');
  writeFileSync(headerFile, `X-API-Key: ${key.apiKey}\n`, { mode: 0o600 });
  try {
    await waitForLine(upstream, /ready/);
    await waitForLine(ceiling, /listening/);
    const gateway = await startGateway({ directory: keyDirectory, upstreamPort, auth: true });
    try {
      // The key's own output, as a user gets one: a prompt run through the gateway whose output is the big file.
      await queuePrompt(gateway.url, key.apiKey);
      const routes = [
        { name: 'direct', url: `http://127.0.0.1:${upstreamPort}` },
        { name: 'nginx', url: `http://127.0.0.1:${proxyPort}` },
        { name: 'ceiling', url: `http://127.0.0.1:${ceilingPort}` },
        { name: 'gateway', url: gateway.url, headerFile, apiKey: key.apiKey, gateway },
      ];
      const viewPath = `/view?filename=${OUTPUT_NAME}&type=output`;
      const results = { download_mb: DOWNLOAD_BYTES / MB, upload_mb: UPLOAD_BYTES / MB, range: RANGE, download: {}, upload: {}, range_rps: {}, head_rps: {} };
      for (const route of routes) {
        log(`transfers: ${DOWNLOAD_BYTES / MB} MB download and ${UPLOAD_BYTES / MB} MB upload, ${route.name}`);
        results.download[route.name] = await timeTransfers(route, ['-o', '/dev/null', `${route.url}${viewPath}`], DOWNLOAD_BYTES);
        const form = ['-o', '/dev/null', '-F', `image=@${uploadSource};filename=${UPLOAD_NAME};type=application/octet-stream`, `${route.url}/upload/image`];
        results.upload[route.name] = await timeTransfers(route, form, UPLOAD_BYTES);
      }
      for (const route of routes.filter(({ name }) => name !== 'nginx')) {
        log(`transfers: Range and HEAD on /view, ${route.name}`);
        results.range_rps[route.name] = await loadSmallRequests(route, (load) => runWrk(`${route.url}${viewPath}`, { ...load, method: 'GET', range: RANGE }));
        results.head_rps[route.name] = await loadSmallRequests(route, (load) => runHeadLoop(`${route.url}${viewPath}`, load));
      }
      return { ...results, ratios: ratiosOf(results) };
    } finally {
      await stopService(gateway.service);
    }
  } finally {
    await stopService(proxy);
    await stopService(ceiling);
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
 * Runs one curl transfer RUNS times: {mb_per_s} of the fastest run; through the gateway also the RSS
 * growth (largest VmRSS sampled every 100 ms during a run, less the RSS before it; the largest of the
 * runs) and the event-loop delay over all runs.
 */
async function timeTransfers(route, curlArgs, bytes) {
  const pid = route.gateway?.service.pid;
  if (route.gateway) await resetEventLoopDelay(route.url);
  let best = Infinity;
  let growth = 0;
  for (let run = 0; run < RUNS; run += 1) {
    const before = pid ? memoryOf(pid).rss_mb : 0;
    let peak = before;
    const sampler = pid ? setInterval(() => (peak = Math.max(peak, memoryOf(pid).rss_mb)), RSS_SAMPLE_MS) : null;
    try {
      best = Math.min(best, await curlSeconds(route, curlArgs, bytes));
    } finally {
      clearInterval(sampler);
    }
    growth = Math.max(growth, round(peak - before));
  }
  const figures = { mb_per_s: round(bytes / MB / best), seconds: round(best, 3) };
  if (!route.gateway) return figures;
  return { ...figures, rss_growth_mb: growth, rss_mb: memoryOf(pid).rss_mb, event_loop_delay: await readEventLoopDelay(route.url) };
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

/** Small /view requests (`run` is wrk on a 1 MiB range, or the HEAD loop) at 10 connections after a warm-up, with what the rest of the machine did; through the gateway with the event-loop delay of the measured run. */
async function loadSmallRequests(route, run) {
  const load = { connections: SMALL_REQUEST_CONNECTIONS, apiKey: route.apiKey ?? '' };
  await run({ ...load, seconds: SMALL_REQUEST_WARM_UP_S });
  if (route.gateway) await resetEventLoopDelay(route.url);
  const [measured, cpu] = await Promise.all([run({ ...load, seconds: SMALL_REQUEST_RUN_S }), cpuDuring(SMALL_REQUEST_RUN_S)]);
  const figures = { ...measured, ...cpu };
  return route.gateway ? { ...figures, event_loop_delay: await readEventLoopDelay(route.url) } : figures;
}

function ratiosOf({ download, upload, range_rps: range, head_rps: head }) {
  const ratio = (a, b) => round(a / b, 3);
  return {
    download_gateway_vs_direct: ratio(download.gateway.mb_per_s, download.direct.mb_per_s),
    download_gateway_vs_nginx: ratio(download.gateway.mb_per_s, download.nginx.mb_per_s),
    upload_gateway_vs_direct: ratio(upload.gateway.mb_per_s, upload.direct.mb_per_s),
    upload_gateway_vs_nginx: ratio(upload.gateway.mb_per_s, upload.nginx.mb_per_s),
    range_gateway_vs_direct: ratio(range.gateway.rps, range.direct.rps),
    head_gateway_vs_direct: ratio(head.gateway.rps, head.direct.rps),
    download_gateway_vs_ceiling: ratio(download.gateway.mb_per_s, download.ceiling.mb_per_s),
    upload_gateway_vs_ceiling: ratio(upload.gateway.mb_per_s, upload.ceiling.mb_per_s),
    range_gateway_vs_ceiling: ratio(range.gateway.rps, range.ceiling.rps),
    head_gateway_vs_ceiling: ratio(head.gateway.rps, head.ceiling.rps),
  };
}
