// `node bench/instructions.mjs [OTHER]`: instructions per request (or per start) under valgrind's callgrind, this checkout's gateway beside the ceiling
// (OTHER `ceiling`, the default) or another built checkout. A count of instructions does not move with how busy the machine is, as req/s
// and CPU time do: it tells a change of a few per cent apart on a shared machine. It leaves out the kernel, and memory waits cost
// nothing in it. Options: --case off|get|prompt|runs|view|head|startup (get), --requests N (2000 measured), --warm-up N (8000, under valgrind
// without counting: V8 compiles the hot functions meanwhile), --runs R (3 per side, the median kept), --top K (30 functions printed),
// --windows W (the request cases: W windows of --requests each counted one after another in every run, the run's figure the median
// window's, so that a snapshot rewrite or a major collection falling in one window does not move it; 1 by default),
// --keep (the request cases: each side's callgrind files and V8 perf map left in the printed folder, for callgrind_annotate --inclusive=yes),
// --keys N (startup: the keys of the store each start reads, 1000000; the ceiling has none, so name another checkout).

import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { ensureTools } from './tools.mjs';
import { writeKeysFile } from './keys.mjs';
import { writeRandomFile } from './transfers.mjs';
import { startUpstream } from './nginx.mjs';
import { freePort, median, spawnService, stopAllNow, stopService, waitForLine } from './processes.mjs';

/** The file the view and head cases ask for, in the files upstream's output folder. */
const SMALL_FILE = 'small.bin';
const SMALL_FILE_BYTES = 20_000;
/** The cases, as bench/paired.mjs names them: the route, whether a key is sent, the upstream (`comfy`: prompts run) and the gateway's flags. */
const CASES = {
  off: { path: '/features', method: 'GET', auth: false, upstream: 'nginx' },
  get: { path: '/features', method: 'GET', auth: true, upstream: 'nginx' },
  prompt: { path: '/prompt', method: 'POST', auth: true, upstream: 'nginx' },
  runs: { path: '/prompt', method: 'POST', auth: true, upstream: 'comfy', flags: ['--upstream-queue-depth', '1000'] },
  // A 20 KB output from bench/files-upstream.mjs with an admin key, its GET and its HEAD.
  view: { path: `/view?filename=${SMALL_FILE}&type=output`, method: 'GET', auth: true, admin: true, upstream: 'files' },
  head: { path: `/view?filename=${SMALL_FILE}&type=output`, method: 'HEAD', auth: true, admin: true, upstream: 'files' },
  // The gateway's start, counted from its first instruction until it prints that it listens, every thread, on a copy of one large key store.
  startup: { auth: true, upstream: 'nginx', startup: true },
};
/** The prompt every POST sends (bench/wrk.lua's). */
const PROMPT = '{"prompt":{"3":{"class_type":"KSampler","inputs":{"seed":42,"steps":20}}},"client_id":"bench"}';
const CONNECTIONS = 10;
const CEILING = 'ceiling';
const BARE_PROXY = fileURLToPath(new URL('bare-proxy.mjs', import.meta.url));
/** Callgrind with each thread in a file of its own, compiled JavaScript checked for changes; counting from the start or once told to. */
const CALLGRIND = ['--tool=callgrind', '--separate-threads=yes', '--smc-check=all-non-file', '--dump-instr=no'];
/** How long a side may take to print that it listens: under valgrind a start with 1,000,000 keys takes minutes on a busy machine. */
const START_TIMEOUT_MS = 1_800_000;

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? fallback : process.argv[at + 1];
}

/** Starts the case's upstream on a free port: nginx's fixed answer, bench/files-upstream.mjs serving SMALL_FILE, or bench/history-upstream.mjs where prompts run. */
async function startCaseUpstream(work, testCase) {
  const port = await freePort();
  if (testCase.upstream === 'nginx') return { port, service: await startUpstream(work, port) };
  if (testCase.upstream === 'files') {
    const files = join(work, 'files');
    for (const folder of ['input', 'output']) mkdirSync(join(files, folder), { recursive: true });
    await writeRandomFile(join(files, 'output', SMALL_FILE), SMALL_FILE_BYTES);
    const service = spawnService(process.execPath, [fileURLToPath(new URL('files-upstream.mjs', import.meta.url)), String(port), files, SMALL_FILE]);
    await waitForLine(service, /ready/);
    return { port, service };
  }
  const service = spawnService(process.execPath, [fileURLToPath(new URL('history-upstream.mjs', import.meta.url)), String(port), '0', '0']);
  await waitForLine(service, /ready/);
  return { port, service };
}

/**
 * Starts one side under callgrind (its files `cg.out*` in `directory`), counting from the start in the startup case only,
 * with V8's perf map for the names of compiled functions; resolves {service, url}.
 */
async function startSide(side, testCase, directory, upstreamPort) {
  const counting = `--instr-atstart=${testCase.startup ? 'yes' : 'no'}`;
  const wrapper = [
    'valgrind',
    ...CALLGRIND,
    counting,
    `--callgrind-out-file=${join(directory, 'cg.out')}`,
    process.execPath,
    '--perf-basic-prof-only-functions',
  ];
  if (side === CEILING) {
    const port = await freePort();
    const service = spawnService(wrapper[0], [...wrapper.slice(1), BARE_PROXY, String(port), String(upstreamPort)]);
    await waitForLine(service, /listening/, START_TIMEOUT_MS);
    return { service, url: `http://127.0.0.1:${port}` };
  }
  const cli = join(side, 'dist', 'src', 'cli', 'main.js');
  const args = [cli, '--port', '0', '--upstream', `http://127.0.0.1:${upstreamPort}`, '--user-directory', directory, ...(testCase.flags ?? [])];
  if (testCase.auth) args.push('--require-api-auth');
  const service = spawnService(wrapper[0], [...wrapper.slice(1), ...args]);
  const [, url] = await waitForLine(service, /listening on (http:\/\/[^\s,]+)/, START_TIMEOUT_MS);
  return { service, url };
}

/** Sends `count` requests of the case over CONNECTIONS keep-alive connections; rejects on any answer but 200. */
async function send(pool, testCase, apiKey, count) {
  const headers = { ...(apiKey ? { 'x-api-key': apiKey } : {}), ...(testCase.method === 'POST' ? { 'content-type': 'application/json' } : {}) };
  const body = testCase.method === 'POST' ? PROMPT : null;
  let sent = 0;
  const connection = async () => {
    while (sent < count) {
      sent += 1;
      // A HEAD keeps its connection, as a browser's or node's keep-alive agent does: undici's default closes it after each
      // HEAD (it sends `Connection: close`), which the ceiling passes on to the upstream, reconnecting for every request.
      const answer = await pool.request({
        path: testCase.path,
        method: testCase.method,
        headers,
        body,
        ...(testCase.method === 'HEAD' ? { reset: false } : {}),
      });
      const text = await answer.body.text();
      if (answer.statusCode !== 200) throw new Error(`${testCase.method} ${testCase.path} answered ${answer.statusCode}: ${text.slice(0, 200)}`);
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, connection));
}

/** Instructions counted in one callgrind file (its `totals:` or `summary:` line). */
function instructionsIn(file) {
  return Number(/^(?:totals|summary): (\d+)/m.exec(readFileSync(file, 'utf8'))?.[1] ?? 0);
}

/**
 * The main thread's instructions by function, from callgrind_annotate, compiled JavaScript named from V8's perf map
 * (with `checkout` written `.`, so that both sides name their own files alike).
 */
function functionsOf(file, perfMap, checkout) {
  const ranges = readFileSync(perfMap, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [start, size, ...name] = line.split(' ');
      return { start: Number.parseInt(start, 16), end: Number.parseInt(start, 16) + Number.parseInt(size, 16), name: name.join(' ') };
    })
    .sort((a, b) => a.start - b.start);
  const nameAt = (address) => {
    let low = 0;
    let high = ranges.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (ranges[middle].start <= address) low = middle + 1;
      else high = middle - 1;
    }
    const range = ranges[high];
    // V8 marks a function's tier (`*` optimised, `~` not); the same function counts as one whatever its tier.
    return range && address < range.end ? range.name.replace(/^JS:[*~^+-]?/, 'JS:').replaceAll(checkout, '.') : 'unnamed compiled code';
  };
  const byName = new Map();
  const report = execFileSync('callgrind_annotate', ['--threshold=100', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  for (const line of report.split('\n')) {
    const [, count, where] = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line) ?? [];
    if (!count || where.includes('PROGRAM TOTALS')) continue;
    const address = /^\?\?\?:0x([0-9a-f]+) \[\?\?\?\]/.exec(where)?.[1];
    const name = address ? nameAt(Number.parseInt(address, 16)) : where.replace(/^[^:]*:/, '').replace(/\(.*$/, '');
    byName.set(name, (byName.get(name) ?? 0) + Number(count.replaceAll(',', '')));
  }
  return byName;
}

/**
 * What callgrind counted in a side's process `pid` (files in `directory`) since the last dump, once dumped (the
 * `dump`-th): {main, others} instructions on the thread that runs the event loop and on the rest, each divided by
 * `per`, and the functions (instructions divided by `per`) of the main thread, or of every thread when `everyThread` is set.
 */
function countedSoFar(side, pid, directory, per, everyThread, dump = 1) {
  execFileSync('callgrind_control', ['--dump', pid], { stdio: 'ignore' });
  // The map grows as V8 compiles: the copy taken at the last dump names the functions of every window.
  const perfMap = join(directory, 'perf.map');
  copyFileSync(`/tmp/perf-${pid}.map`, perfMap);
  // The N-th dump names each thread's file cg.out.N-TT; thread 01 runs the event loop.
  const dumped = readdirSync(directory)
    .filter((name) => name.startsWith(`cg.out.${dump}-`))
    .map((name) => join(directory, name));
  const mainFile = dumped.find((name) => name.endsWith('-01'));
  const all = dumped.reduce((sum, file) => sum + instructionsIn(file), 0);
  const main = instructionsIn(mainFile);
  const checkout = (side === CEILING ? fileURLToPath(new URL('..', import.meta.url)) : side).replace(/\/$/, '');
  const functions = new Map();
  for (const file of everyThread ? dumped : [mainFile])
    for (const [name, count] of functionsOf(file, perfMap, checkout)) functions.set(name, (functions.get(name) ?? 0) + count / per);
  return { main: main / per, others: (all - main) / per, functions };
}

/**
 * One run of a side, `windows` windows of `requests` counted in turn: the median window's {main, others} instructions
 * per request and its main thread's functions (instructions per request), with every window's main-thread count.
 */
async function measure(side, testCase, work, requests, warmUp, windows) {
  const directory = mkdtempSync(join(work, 'side-'));
  const upstream = await startCaseUpstream(directory, testCase);
  const key = testCase.auth ? await writeKeysFile(directory, 1, { admin: testCase.admin === true }) : null;
  const apiKey = testCase.admin ? key?.admin.apiKey : key?.apiKey;
  const started = await startSide(side, testCase, directory, upstream.port);
  const pool = new Pool(started.url, { connections: CONNECTIONS });
  try {
    await send(pool, testCase, apiKey, warmUp).catch((error) => {
      throw new Error(`${error.message}\nits last output:\n${started.service.output}`);
    });
    const pid = String(started.service.pid);
    execFileSync('callgrind_control', ['--instr=on', pid], { stdio: 'ignore' });
    execFileSync('callgrind_control', ['--zero', pid], { stdio: 'ignore' });
    const counted = [];
    for (let window = 1; window <= windows; window += 1) {
      await send(pool, testCase, apiKey, requests);
      counted.push(countedSoFar(side, pid, directory, requests, false, window));
    }
    const median = medianRun(counted, false);
    return { ...median, windows: counted.map((window) => window.main) };
  } finally {
    rmSync(`/tmp/perf-${started.service.pid}.map`, { force: true });
    await pool.close();
    await stopService(started.service);
    await stopService(upstream.service);
  }
}

/** One start of a side on a copy of the key store `keysFile`: {main, others} instructions until it listens, and every thread's functions. */
async function measureStart(side, testCase, work, keysFile) {
  const directory = mkdtempSync(join(work, 'side-'));
  copyFileSync(keysFile, join(directory, 'api_keys.json'));
  const upstream = await startCaseUpstream(directory, testCase);
  const started = await startSide(side, testCase, directory, upstream.port);
  try {
    return countedSoFar(side, String(started.service.pid), directory, 1, true);
  } finally {
    rmSync(`/tmp/perf-${started.service.pid}.map`, { force: true });
    await stopService(started.service);
    await stopService(upstream.service);
    // Each copy of a large store is removed as soon as its start is counted.
    rmSync(directory, { recursive: true, force: true });
  }
}

/** The run with the median count of a side's runs: the main thread's, or every thread's for a start. */
function medianRun(runs, everyThread) {
  const counted = (run) => (everyThread ? run.main + run.others : run.main);
  const sorted = [...runs].sort((a, b) => counted(a) - counted(b));
  return sorted[(sorted.length - 1) >> 1];
}

const thousands = (value) => `${Math.round(value / 100) / 10}k`;
const millions = (value) => `${Math.round(value / 100_000) / 10}M`;

async function main() {
  const given = process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : CEILING;
  const other = given === CEILING ? CEILING : resolve(given);
  const caseName = option('case', 'get');
  const testCase = CASES[caseName];
  if (!testCase) throw new Error(`--case must be one of ${Object.keys(CASES).join(', ')}`);
  if (testCase.startup && other === CEILING) throw new Error('--case startup compares two builds of the gateway: name the other checkout');
  const requests = Number(option('requests', '2000'));
  const warmUp = Number(option('warm-up', '8000'));
  const runs = Number(option('runs', '3'));
  const windows = Number(option('windows', '1'));
  if (!Number.isInteger(windows) || windows < 1) throw new Error('--windows must be a whole number of at least 1');
  const top = Number(option('top', '30'));
  const keys = Number(option('keys', '1000000'));
  ensureTools(['valgrind', 'nginx'], { valgrind: 'valgrind', nginx: 'nginx-light' });
  const here = fileURLToPath(new URL('..', import.meta.url));
  const work = mkdtempSync(join(tmpdir(), 'comfy-gate-instructions-'));
  const keysDirectory = join(work, 'keys');
  const sides = { [here]: [], [other]: [] };
  const unit = testCase.startup ? millions : thousands;
  const each = testCase.startup ? 'per start' : 'per request';
  try {
    if (testCase.startup) await writeKeysFile(keysDirectory, keys);
    for (let run = 0; run < runs; run += 1) {
      // Alternating which side goes first, as the paired bench does.
      for (const side of run % 2 === 0 ? [here, other] : [other, here]) {
        const figures = testCase.startup
          ? await measureStart(side, testCase, work, join(keysDirectory, 'api_keys.json'))
          : await measure(side, testCase, work, requests, warmUp, windows);
        sides[side].push(figures);
        const byWindow = windows > 1 ? ` (median window; windows ${figures.windows.map(unit).join(', ')})` : '';
        console.log(
          `[instructions] ${side === here ? 'this build' : other} run ${run + 1}: ${unit(figures.main)} on the main thread, ${unit(figures.others)} on others ${each}${byWindow}`,
        );
      }
    }
  } finally {
    if (process.argv.includes('--keep')) console.log(`[instructions] callgrind files and perf maps kept in ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  const name = other === CEILING ? 'the ceiling' : other;
  if (testCase.startup) {
    const mine = medianRun(sides[here], true);
    const theirs = medianRun(sides[other], true);
    const total = (run) => unit(run.main + run.others);
    console.log(`\nstartup: instructions until the gateway listens with ${keys} keys, every thread, median of ${runs} starts`);
    console.log(`this build: ${total(mine)} (runs ${sides[here].map(total).join(', ')}), main thread ${unit(mine.main)}`);
    console.log(`${name}: ${total(theirs)} (runs ${sides[other].map(total).join(', ')}), main thread ${unit(theirs.main)}`);
    console.log(`every thread: this build ${((mine.main + mine.others) / (theirs.main + theirs.others)).toFixed(3)} × ${name}\n`);
    printFunctions(mine, theirs, top, 'every thread, instructions per start', millions);
    return;
  }
  const mine = medianRun(sides[here], false);
  const theirs = medianRun(sides[other], false);
  const counted = windows > 1 ? `${windows} windows of ${requests} each (the median window's count)` : String(requests);
  console.log(`\n${caseName}: instructions per request, median of ${runs} runs of ${counted} after ${warmUp} to warm up (${CONNECTIONS} connections)`);
  console.log(
    `this build: main thread ${thousands(mine.main)} (runs ${sides[here].map((r) => thousands(r.main)).join(', ')}), other threads ${thousands(mine.others)}`,
  );
  console.log(
    `${name}: main thread ${thousands(theirs.main)} (runs ${sides[other].map((r) => thousands(r.main)).join(', ')}), other threads ${thousands(theirs.others)}`,
  );
  console.log(`main thread: this build ${(mine.main / theirs.main).toFixed(3)} × ${name}\n`);
  printFunctions(mine, theirs, top, 'main thread, instructions per request', (value) => String(Math.round(value)));
}

/** The `top` functions whose counts differ most between the two sides' median runs, each count written by `format`. */
function printFunctions(mine, theirs, top, what, format) {
  const names = new Set([...mine.functions.keys(), ...theirs.functions.keys()]);
  const rows = [...names].map((fn) => ({ fn, mine: mine.functions.get(fn) ?? 0, theirs: theirs.functions.get(fn) ?? 0 }));
  rows.sort((a, b) => Math.abs(b.mine - b.theirs) - Math.abs(a.mine - a.theirs));
  console.log(`this build  other  difference  function (${what})`);
  for (const { fn, mine: m, theirs: t } of rows.slice(0, top)) {
    console.log(`${format(m).padStart(10)} ${format(t).padStart(6)} ${format(m - t).padStart(11)}  ${fn.slice(0, 120)}`);
  }
}

main().catch((error) => {
  console.error(error);
  stopAllNow();
  process.exitCode = 1;
});
