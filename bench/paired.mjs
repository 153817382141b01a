// `node bench/paired.mjs OTHER_CHECKOUT`: this checkout's gateway and another's (both built), run in turn on one case, round after round, with
// the CPU each spends per request. On a small, shared machine the same build's req/s moves by a third from one run to the next; builds run
// side by side in alternating order are what tells a change apart. `ceiling` in place of OTHER_CHECKOUT runs the ceiling (bench/bare-proxy.mjs)
// as the other side: the gateway's share of it, round by round. Options: --case off|get|prompt|runs|download|upload|view|head (default get), --rounds N (5),
// --seconds S (8), --connections C (50), --prompt-bytes B (0: prompts carry B bytes more, as an editor workflow in extra_data),
// --usage-history N (0: each gateway starts with N records of its key's past usage in api_usage.json, which every usage compaction copies). The
// download case times three 500 MB `GET /view` downloads per round (curl, an admin key) after one to warm up: CPU per download and MB/s;
// the upload case as many 90 MB multipart `POST /upload/image` with a user key (so the gateway reads and checks the form);
// the view case loads a 20 KB `GET /view` with wrk (an admin key), as a page of thumbnails does, and the head case its HEAD (a Node.js
// loop: wrk waits for a body after a HEAD answer). --stores shared puts each gateway on PostgreSQL and Redis, as replicas run (a database of its
// own on COMFY_GATE_BENCH_POSTGRES_URL's server, the Redis at COMFY_GATE_BENCH_REDIS_URL; local ones by default); --other-stores files|shared
// sets the other side's alone, so that `. --stores shared --other-stores files` compares one build's two.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCeiling } from './ceiling.mjs';
import { writeKeysFile } from './keys.mjs';
import { startUpstream } from './nginx.mjs';
import { freePort, median, round, spawnService, stopAllNow, stopService, waitForLine } from './processes.mjs';
import { curlSeconds, writeRandomFile } from './transfers.mjs';
import { runHeadLoop } from './head-loop.mjs';
import { runWrk } from './wrk.mjs';
import { writeUsageHistory } from './usage-history.mjs';
import { useSharedStores } from './shared-stores.mjs';

/** The cases: the route, whether a key is sent, and the upstream (`nginx`: fixed JSON; `comfy`: ComfyUI-like, prompts run). */
const CASES = {
  off: { path: '/features', method: 'GET', auth: false, upstream: 'nginx' },
  get: { path: '/features', method: 'GET', auth: true, upstream: 'nginx' },
  prompt: { path: '/prompt', method: 'POST', auth: true, upstream: 'nginx' },
  runs: { path: '/prompt', method: 'POST', auth: true, upstream: 'comfy', flags: ['--upstream-queue-depth', '1000'] },
  download: {
    path: '/view?filename=paired.bin&type=output',
    method: 'GET',
    auth: true,
    admin: true,
    upstream: 'files',
    file: 'paired.bin',
    transfer: 'download',
  },
  upload: { path: '/upload/image', method: 'POST', auth: true, upstream: 'files', file: 'paired-small.bin', transfer: 'upload' },
  view: { path: '/view?filename=paired-small.bin&type=output', method: 'GET', auth: true, admin: true, upstream: 'files', file: 'paired-small.bin' },
  head: { path: '/view?filename=paired-small.bin&type=output', method: 'HEAD', auth: true, admin: true, upstream: 'files', file: 'paired-small.bin' },
};
const SMALL_FILE_BYTES = 20_000;
/** The file the upload case sends, in the work directory. */
const UPLOAD_SOURCE = 'paired-upload.bin';
const DOWNLOAD_BYTES = 500_000_000;
const UPLOAD_BYTES = 90_000_000;
/** Timed transfers per round, after one to warm up. */
const TRANSFERS = 3;
const WARM_UP_S = 3;
/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ, 100 on Linux). */
const TICKS_PER_S = 100;

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? fallback : process.argv[at + 1];
}

/** CPU seconds a process has used so far (user and system, all its threads). */
function cpuSecondsOf(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
}

async function startCaseUpstream(work, { upstream: kind, file, transfer }) {
  const port = await freePort();
  if (kind === 'nginx') {
    await startUpstream(work, port);
    return port;
  }
  if (kind === 'files') {
    const files = join(work, 'files');
    for (const folder of ['input', 'output']) mkdirSync(join(files, folder), { recursive: true });
    await writeRandomFile(join(files, 'output', file), transfer === 'download' ? DOWNLOAD_BYTES : SMALL_FILE_BYTES);
    if (transfer === 'upload') await writeRandomFile(join(work, UPLOAD_SOURCE), UPLOAD_BYTES);
    const service = spawnService(process.execPath, [fileURLToPath(new URL('files-upstream.mjs', import.meta.url)), String(port), files, file]);
    await waitForLine(service, /ready/);
    return port;
  }
  const service = spawnService(process.execPath, [fileURLToPath(new URL('history-upstream.mjs', import.meta.url)), String(port), '0', '0']);
  await waitForLine(service, /ready/);
  return port;
}

/** Bytes a process has had written to storage so far (its own writes; the kernel's writeback counts them when it flushes them). */
function diskBytesOf(pid) {
  return Number(/^write_bytes: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))[1]);
}

/** The other side when it is the ceiling instead of a checkout. */
const CEILING = 'ceiling';

/** Starts one side: a checkout's gateway (its own bench/gateway.mjs) or, for CEILING, the ceiling; resolves {service, url}. */
async function startSide(checkout, { directory, upstreamPort, auth, flags }) {
  if (checkout === CEILING) return startCeiling([], upstreamPort);
  const { startGateway } = await import(join(checkout, 'bench', 'gateway.mjs'));
  return startGateway({ directory, upstreamPort, auth, flags });
}

/** One measured run of a checkout's gateway (or of the ceiling): {rps, p99_ms, cpu_us_per_request, disk_bytes_per_request}. */
async function measure(checkout, testCase, { work, upstreamPort, seconds, connections, promptBytes, usageHistory, stores }) {
  const directory = mkdtempSync(join(work, 'gateway-'));
  const key = testCase.auth ? await writeKeysFile(directory, 1, { admin: testCase.admin === true }) : null;
  const apiKey = (testCase.admin ? key.admin.apiKey : key?.apiKey) ?? '';
  const keyId = testCase.admin ? key?.admin.keyId : key?.keyId;
  if (key && usageHistory > 0) await writeUsageHistory(directory, keyId, usageHistory);
  const shared = stores === 'shared' && checkout !== CEILING ? await useSharedStores(checkout, directory, keyId ? [keyId] : []) : null;
  const gateway = await startSide(checkout, { directory, upstreamPort, auth: testCase.auth, flags: [...(testCase.flags ?? []), ...(shared?.flags ?? [])] });
  try {
    const url = `${gateway.url}${testCase.path}`;
    if (testCase.transfer) return await measureTransfers(testCase.transfer, url, apiKey, gateway.service.pid, work);
    const load = { connections, method: testCase.method, apiKey, promptBytes };
    const run = testCase.method === 'HEAD' ? runHeadLoop : runWrk;
    await run(url, { ...load, seconds: WARM_UP_S });
    const before = { cpu: cpuSecondsOf(gateway.service.pid), disk: diskBytesOf(gateway.service.pid) };
    const figures = await run(url, { ...load, seconds });
    const used = cpuSecondsOf(gateway.service.pid) - before.cpu;
    const written = diskBytesOf(gateway.service.pid) - before.disk;
    const requests = figures.rps * seconds;
    return {
      rps: figures.rps,
      p99_ms: figures.p99_ms,
      cpu_us_per_request: round((used * 1e6) / requests, 1),
      disk_bytes_per_request: Math.round(written / requests),
    };
  } finally {
    await stopService(gateway.service);
    await shared?.remove();
  }
}

/**
 * Downloads `url` (or uploads a 90 MB form to it) once to warm up, then TRANSFERS times: {mb_per_s,
 * cpu_ms_per_transfer} (medians; CPU of the gateway process).
 */
async function measureTransfers(kind, url, apiKey, pid, work) {
  const headerFile = join(tmpdir(), `comfy-gate-paired-key-${process.pid}`);
  writeFileSync(headerFile, `X-API-Key: ${apiKey}\n`, { mode: 0o600 });
  try {
    const route = { name: 'gateway', headerFile };
    const bytes = kind === 'download' ? DOWNLOAD_BYTES : UPLOAD_BYTES;
    const form = ['-F', `image=@${join(work, UPLOAD_SOURCE)};filename=${UPLOAD_SOURCE};type=application/octet-stream`];
    const transfer = () => curlSeconds(route, ['-o', '/dev/null', ...(kind === 'upload' ? form : []), url], bytes);
    await transfer();
    const speeds = [];
    const cpus = [];
    for (let run = 0; run < TRANSFERS; run += 1) {
      const before = cpuSecondsOf(pid);
      speeds.push(bytes / 1e6 / (await transfer()));
      cpus.push((cpuSecondsOf(pid) - before) * 1000);
    }
    return { mb_per_s: round(median(speeds)), cpu_ms_per_transfer: round(median(cpus)) };
  } finally {
    rmSync(headerFile, { force: true });
  }
}

async function main() {
  const other = process.argv[2];
  const caseName = option('case', 'get');
  const testCase = CASES[caseName];
  const stores = { this: option('stores', 'files') };
  stores.other = option('other-stores', stores.this);
  if (!other || other.startsWith('--') || !testCase || ![stores.this, stores.other].every((kind) => kind === 'files' || kind === 'shared')) {
    throw new Error(
      `usage: node bench/paired.mjs OTHER_CHECKOUT|${CEILING} [--case ${Object.keys(CASES).join('|')}] [--rounds N] [--seconds S] [--connections C] [--prompt-bytes B] [--usage-history N] [--stores files|shared] [--other-stores files|shared]`,
    );
  }
  const builds = { this: fileURLToPath(new URL('..', import.meta.url)), other: other === CEILING ? CEILING : resolve(other) };
  const rounds = Number(option('rounds', '5'));
  const settings = {
    seconds: Number(option('seconds', '8')),
    connections: Number(option('connections', '50')),
    promptBytes: Number(option('prompt-bytes', '0')),
    usageHistory: Number(option('usage-history', '0')),
  };
  const work = mkdtempSync(join(tmpdir(), 'comfy-gate-paired-'));
  process.once('exit', () => {
    stopAllNow();
    rmSync(work, { recursive: true, force: true });
  });
  const upstreamPort = await startCaseUpstream(work, testCase);
  const results = { this: [], other: [] };
  for (let roundNumber = 1; roundNumber <= rounds; roundNumber += 1) {
    // Alternating which build goes first, so that neither always runs on a warmer or a busier machine.
    const order = roundNumber % 2 === 1 ? ['this', 'other'] : ['other', 'this'];
    for (const name of order) {
      const figures = await measure(builds[name], testCase, { work, upstreamPort, ...settings, stores: stores[name] });
      results[name].push(figures);
      console.log(`round ${roundNumber} ${name.padEnd(5)} ${JSON.stringify(figures)}`);
    }
  }
  for (const name of ['this', 'other']) {
    const of = (field) => median(results[name].map((figures) => figures[field]));
    const figures = testCase.transfer
      ? `${of('cpu_ms_per_transfer')} ms CPU per ${testCase.transfer === 'download' ? '500 MB download' : '90 MB upload'}, ${of('mb_per_s')} MB/s`
      : `${of('cpu_us_per_request')} µs CPU per request, ${of('disk_bytes_per_request')} bytes to disk per request, ${of('rps')} req/s, p99 ${of('p99_ms')} ms`;
    console.log(`median ${name.padEnd(5)} ${figures}  (${builds[name]}${builds[name] === CEILING ? '' : `, stores ${stores[name]}`})`);
  }
  if (!testCase.transfer) {
    // A round's two runs are seconds apart: the ratio within each round is steadier than the ratio of two medians. Its range says how
    // far one round can be trusted: on a shared machine the same build's CPU per request can double from one round to the next.
    const ratio = (field, over) => {
      const ratios = results.this.map((figures, i) => over(figures[field], results.other[i][field]));
      return `${round(median(ratios), 3)} (rounds ${round(Math.min(...ratios), 3)}–${round(Math.max(...ratios), 3)})`;
    };
    const share = ratio('rps', (mine, theirs) => mine / theirs);
    const cpu = ratio('cpu_us_per_request', (mine, theirs) => theirs / mine);
    console.log(`median of the rounds' ratios: this build's req/s ${share} × the other's; the other's CPU per request ${cpu} × this build's`);
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`paired run failed: ${error.stack ?? error}`);
    process.exit(1);
  },
);
