// Preloaded into the gateway by `npm run bench -- --allocations`: SIGUSR2 starts V8's sampling heap profiler, the next SIGUSR2 writes its profile.
// The profile counts the objects collections freed as well, so it tells what is allocated, not only what stays; written to
// COMFY_GATE_BENCH_HEAP_PROFILE, then a `.done` file beside it.

const { Session } = require('node:inspector');
const { writeFileSync } = require('node:fs');

const path = process.env.COMFY_GATE_BENCH_HEAP_PROFILE;
const session = new Session();
session.connect();
let sampling = false;

process.on('SIGUSR2', () => {
  if (!sampling) {
    sampling = true;
    session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    return;
  }
  sampling = false;
  session.post('HeapProfiler.stopSampling', (error, result) => {
    writeFileSync(path, JSON.stringify(error ? { error: String(error) } : result.profile));
    writeFileSync(`${path}.done`, '');
  });
});
