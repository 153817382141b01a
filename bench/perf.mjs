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
 * worker threads), kernel_functions: [{name, us}] of every thread, largest first}.
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
  const kernelFunctions = reportRows(file, 'sym')
    .filter(({ label }) => label.startsWith('[k] '))
    .map(({ samples, label }) => ({ name: label.slice(4), us: usPer(samples) }))
    .sort((a, b) => b.us - a.us);
  const total = main.kernel_us + main.native_us + main.javascript_us + otherThreads;
  return { total_us: total, main, other_threads_us: otherThreads, kernel_functions: kernelFunctions };
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
