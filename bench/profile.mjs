// Summarises V8 profiles: a .cpuprofile (node --cpu-prof) by self time per function, a sampling heap profile by bytes allocated per function.

import { readFileSync } from 'node:fs';

/** The `top` functions by self time, each {name, where, self_pct}, from the profile file at `path`. */
export function topSelfTime(path, top = 15) {
  const profile = JSON.parse(readFileSync(path, 'utf8'));
  const selfMs = selfTimeByNode(profile);
  const { total, functions } = sumByFunction(profile.nodes.map((node) => [node.callFrame, selfMs.get(node.id) ?? 0]));
  return functions.slice(0, top).map(({ name, where, amount }) => ({ name, where, self_pct: Math.round((1000 * amount) / total) / 10 }));
}

/**
 * Microseconds of CPU per request by function, from the profile at `path` of a run that answered
 * `requests`: {total_us, functions: [{name, where, us}]}, idle time left out.
 */
export function cpuPerRequest(path, requests) {
  const profile = JSON.parse(readFileSync(path, 'utf8'));
  const selfMs = selfTimeByNode(profile);
  const busy = profile.nodes.filter((node) => node.callFrame.functionName !== '(idle)');
  const { total, functions } = sumByFunction(busy.map((node) => [node.callFrame, selfMs.get(node.id) ?? 0]));
  const perRequest = (ms) => (1000 * ms) / requests;
  return { total_us: perRequest(total), functions: functions.map(({ name, where, amount }) => ({ name, where, us: perRequest(amount) })) };
}

/**
 * Adds up amounts by the function they were measured in: {total, functions: [{name, where, amount}]},
 * the functions largest first. `measured` holds [callFrame, amount] pairs.
 */
function sumByFunction(measured) {
  const byFunction = new Map();
  let total = 0;
  for (const [{ functionName, url, lineNumber }, amount] of measured) {
    total += amount;
    const name = functionName || '(anonymous)';
    const where = url ? `${url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules|dist|bench)\//, '$1/')}:${lineNumber + 1}` : '';
    const label = `${name} ${where}`;
    const entry = byFunction.get(label) ?? { name, where, amount: 0 };
    entry.amount += amount;
    byFunction.set(label, entry);
  }
  return { total, functions: [...byFunction.values()].sort((a, b) => b.amount - a.amount) };
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
  const profile = JSON.parse(readFileSync(path, 'utf8'));
  if (!profile.head) throw new Error(`no heap profile in ${path}: ${profile.error ?? 'no head node'}`);
  const measured = [];
  const visit = (node) => {
    measured.push([node.callFrame, node.selfSize]);
    node.children.forEach(visit);
  };
  visit(profile.head);
  const { total, functions } = sumByFunction(measured);
  return {
    bytes_per_request: Math.round(total / requests),
    top: functions.slice(0, top).map(({ name, where, amount }) => ({ name, where, bytes_per_request: Math.round(amount / requests) })),
  };
}

/** Prints the summary as a table, when run as `node bench/profile.mjs FILE [TOP]`. */
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const { name, where, self_pct } of topSelfTime(process.argv[2], Number(process.argv[3] ?? 25))) {
    console.log(`${String(self_pct).padStart(5)} %  ${name}  ${where}`);
  }
}
