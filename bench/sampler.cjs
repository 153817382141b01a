// Preloaded into a process by `npm run bench -- --profile` or `--allocations`: SIGUSR2 starts V8's CPU profiler or its sampling heap
// profiler (COMFY_GATE_BENCH_SAMPLER: `cpu` or `heap`), the next SIGUSR2 stops it and writes the profile to COMFY_GATE_BENCH_PROFILE,
// then a `.done` file beside it; so the profile covers the measured run only, not start-up or warm-up. The heap profile counts the
// objects collections freed as well, so it tells what is allocated, not only what stays.

const { Session } = require('node:inspector');
const { writeFileSync } = require('node:fs');

const path = process.env.COMFY_GATE_BENCH_PROFILE;
const cpu = process.env.COMFY_GATE_BENCH_SAMPLER === 'cpu';
const session = new Session();
session.connect();
let sampling = false;

/** Writes what the profiler answered with, or the error, then the `.done` file. */
function write(error, result) {
  writeFileSync(path, JSON.stringify(error ? { error: String(error) } : result.profile));
  writeFileSync(`${path}.done`, '');
}

process.on('SIGUSR2', () => {
  sampling = !sampling;
  if (cpu) {
    if (!sampling) return session.post('Profiler.stop', write);
    session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 100 }, () => session.post('Profiler.start')));
    return;
  }
  if (!sampling) return session.post('HeapProfiler.stopSampling', write);
  session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
});
