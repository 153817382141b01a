// Summarises a V8 .cpuprofile (node --cpu-prof): the functions with the most self time.

import { readFileSync } from 'node:fs';

/** The `top` functions by self time, each {name, where, self_pct}, from the profile file at `path`. */
export function topSelfTime(path, top = 15) {
  const profile = JSON.parse(readFileSync(path, 'utf8'));
  const selfMs = selfTimeByNode(profile);
  const byFunction = new Map();
  let totalMs = 0;
  for (const node of profile.nodes) {
    const ms = selfMs.get(node.id) ?? 0;
    totalMs += ms;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    const where = url ? `${url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules|dist|bench)\//, '$1/')}:${lineNumber + 1}` : '';
    const label = `${name} ${where}`;
    const entry = byFunction.get(label) ?? { name, where, ms: 0 };
    entry.ms += ms;
    byFunction.set(label, entry);
  }
  return [...byFunction.values()]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, top)
    .map(({ name, where, ms }) => ({ name, where, self_pct: Math.round((1000 * ms) / totalMs) / 10 }));
}

/** Milliseconds of samples per node: each sample lasts until the next one (timeDeltas). */
function selfTimeByNode(profile) {
  const selfMs = new Map();
  profile.samples.forEach((id, i) => {
    const deltaUs = profile.timeDeltas[i + 1] ?? 0;
    selfMs.set(id, (selfMs.get(id) ?? 0) + deltaUs / 1000);
  });
  return selfMs;
}

/**
 * What a sampling heap profile (HeapProfiler.stopSampling's `profile`) says was allocated per request:
 * {bytes_per_request, top: [{name, where, bytes_per_request}]}, the `top` functions by bytes allocated in them.
 */
export function allocationsPerRequest(path, requests, top = 15) {
  const byFunction = new Map();
  let total = 0;
  const visit = (node) => {
    total += node.selfSize;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    const where = url ? `${url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules|dist|bench)\//, '$1/')}:${lineNumber + 1}` : '';
    const label = `${name} ${where}`;
    const entry = byFunction.get(label) ?? { name, where, bytes: 0 };
    entry.bytes += node.selfSize;
    byFunction.set(label, entry);
    node.children.forEach(visit);
  };
  visit(JSON.parse(readFileSync(path, 'utf8')).head);
  return {
    bytes_per_request: Math.round(total / requests),
    top: [...byFunction.values()]
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, top)
      .map(({ name, where, bytes }) => ({ name, where, bytes_per_request: Math.round(bytes / requests) })),
  };
}

/** Prints the summary as a table, when run as `node bench/profile.mjs FILE [TOP]`. */
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const { name, where, self_pct } of topSelfTime(process.argv[2], Number(process.argv[3] ?? 25))) {
    console.log(`${String(self_pct).padStart(5)} %  ${name}  ${where}`);
  }
}
