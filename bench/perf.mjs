// Linux perf beside V8's profiler: where a process's CPU goes in the kernel too (socket delivery, waking the process at the other end), which --cpu-prof shows only as time spent inside writev.

import { execFileSync, spawn } from 'node:child_process';

/** Samples per second of each thread's CPU time. */
const FREQUENCY = 999;

/** Records every thread of `pid` with perf's cpu-clock for `seconds` into `file` (the kernel's part only as root, or with kernel.perf_event_paranoid below 2); resolves once perf has written it. */
export function recordPerf(pid, seconds, file) {
  const perf = spawn('perf', ['record', '-q', '-F', String(FREQUENCY), '-e', 'cpu-clock', '-o', file, '-p', String(pid), '--', 'sleep', String(seconds)], {
    stdio: 'ignore',
  });
  return new Promise((resolve, reject) => {
    perf.once('error', reject);
    perf.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`perf record exited with ${code}`))));
  });
}

/**
 * Microseconds of CPU per request from a recording of process `pid` over a run that answered `requests`:
 * {total_us, main: {kernel_us, native_us (Node.js, V8 and the C libraries), javascript_us (V8's compiled
 * code)} for the thread that runs the event loop, other_threads_us (V8's helpers, the thread pool,
 * worker threads), functions: [{name, us}] of every thread (kernel `[k] `, the rest `[.] `; compiled
 * JavaScript named `JS:` when the process wrote a perf map), largest first}.
 */
export function perfPerRequest(file, requests, pid) {
  const usPer = (samples) => (samples * 1e6) / FREQUENCY / requests;
  const main = { kernel_us: 0, native_us: 0, javascript_us: 0 };
  let otherThreads = 0;
  for (const { samples, label } of reportRows(file, 'pid,dso')) {
    // A row is `tid:command  dso` (perf's "pid" is the thread).
    const [, tid, dso] = /^(\d+):\S*\s+(.*)$/.exec(label) ?? [];
    if (Number(tid) !== pid) {
      otherThreads += usPer(samples);
      continue;
    }
    const place = dso === '[kernel.kallsyms]' ? 'kernel_us' : dso?.startsWith('[JIT]') ? 'javascript_us' : 'native_us';
    main[place] += usPer(samples);
  }
  const byName = new Map();
  for (const { samples, label } of reportRows(file, 'sym')) {
    // V8 marks a function's tier (`*` optimised, `~` not); the same function counts as one whatever its tier.
    const name = label.replace(/^\[\.\] JS:[*~^+-]?/, '[.] JS:');
    byName.set(name, (byName.get(name) ?? 0) + usPer(samples));
  }
  const functions = [...byName].map(([name, us]) => ({ name, us })).sort((a, b) => b.us - a.us);
  const total = main.kernel_us + main.native_us + main.javascript_us + otherThreads;
  return { total_us: total, main, other_threads_us: otherThreads, functions };
}

/** Upper ends of the bands `differenceBands` counts functions in, µs per request. */
const BANDS_US = [0.1, 0.5, Infinity];

/**
 * How the gateway's extra time spreads over functions: of those that took longer in the gateway than in
 * the ceiling, [{from_us, to_us, count, us}] per band of that difference (`us`: the differences added up).
 */
export function differenceBands(gatewayFunctions, ceilingFunctions) {
  const ceilingUs = new Map(ceilingFunctions.map(({ name, us }) => [name, us]));
  const bands = BANDS_US.map((to, i) => ({ from_us: i === 0 ? 0 : BANDS_US[i - 1], to_us: to, count: 0, us: 0 }));
  for (const { name, us } of gatewayFunctions) {
    const more = us - (ceilingUs.get(name) ?? 0);
    if (more <= 0) continue;
    const band = bands.find(({ to_us }) => more <= to_us);
    band.count += 1;
    band.us += more;
  }
  return bands;
}

/** perf report's sample counts by `sort` (pid,dso or sym): [{samples, label}]. */
function reportRows(file, sort) {
  const text = execFileSync('perf', ['report', '-i', file, '--no-children', '--sort', sort, '-g', 'none', '-q', '-F', `sample,${sort}`], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return text
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(.*?)\s*$/.exec(line))
    .filter(Boolean)
    .map(([, samples, label]) => ({ samples: Number(samples), label }));
}
