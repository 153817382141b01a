// Prints the bench's figures as tables.

import { differenceBands } from './perf.mjs';
import { round } from './processes.mjs';

const CASE_LABELS = {
  direct: '(a) direct to the upstream',
  nginx: '(b) nginx reverse proxy',
  bare_node_proxy: 'Node.js proxy, no checks (ceiling)',
  gateway_off: '(c) comfy-gate, no auth',
  gateway_auth: '(d) comfy-gate, key required (prompts held: nginx has no WebSocket)',
  gateway_auth_1m_keys: '(e) as (d), 1,000,000 keys',
  gateway_auth_plain_route: '(d) on GET /features',
  bare_node_proxy_runs: 'ceiling, ComfyUI-like upstream (prompts run)',
  gateway_auth_runs: '(f) as (d), ComfyUI-like upstream (prompts run)',
};

/** The full report of a bench run: the sections of the groups that ran. */
export function printResults(results) {
  const { machine } = results;
  console.log(`\n${machine.cores} cores (${machine.cpu}), ${machine.node}, ${machine.nginx}, ${machine.wrk}; groups: ${machine.only.join(', ')}\n`);
  if (results.cases) printProxyCases(results);
  if (results.usage_writes) printUsageWrites(results.usage_writes);
  if (results.websocket) printWebSockets(results.websocket);
  if (results.transfers) printTransfers(results.transfers);
  if (results.history) printHistory(results.history);
  if (results.shared_stores) printSharedStores(results.shared_stores);
  console.log('\ngateway event-loop delay (beyond the 10 ms sampling interval), per case:\n');
  table(
    ['case', 'p50 ms', 'p99 ms', 'max ms', ''],
    Object.entries(results.event_loop_delay).map(([name, d]) => [name, d.p50_ms, d.p99_ms, d.max_ms, d.over_limit ? 'OVER 50 ms' : '']),
  );
  console.log('');
  table(
    ['target', 'measured', 'limit', ''],
    Object.entries(results.targets).map(([name, { value, limit, met }]) => [name, value, limit, met ? 'met' : 'MISSED']),
  );
}

function printProxyCases(results) {
  const { cases, ratios, machine } = results;
  const rows = Object.entries(cases).map(([name, { c1, c50 }]) => [
    CASE_LABELS[name] ?? name,
    c1.rps,
    c1.p50_ms,
    c1.p99_ms,
    c50.rps,
    c50.p50_ms,
    c50.p99_ms,
    c50.others_busy_pct,
  ]);
  console.log(`better of ${machine.passes} passes, ${machine.run_s} s each after ${machine.warm_up_s} s warm-up\n`);
  table(['case', 'c1 req/s', 'c1 p50 ms', 'c1 p99 ms', 'c50 req/s', 'c50 p50 ms', 'c50 p99 ms', 'other CPU % (c50)'], rows);
  console.log(
    `\n(d)/(b) at 50 connections: ${ratios.auth_vs_nginx_c50}   (d)/(a): ${ratios.auth_vs_direct_c50}   (e)/(d): ${ratios.auth_1m_keys_vs_auth_c50}   ` +
      `(d) on GET /features / (b): ${ratios.auth_plain_route_vs_nginx_c50}   Node.js ceiling / (b): ${ratios.bare_node_proxy_vs_nginx_c50}   (d) / Node.js ceiling: ${ratios.auth_vs_bare_node_proxy_c50}   ` +
      `(f) / its ceiling: ${ratios.auth_runs_vs_bare_node_proxy_runs_c50}`,
  );
  console.log(`start-up with 1,000,000 keys: ${results.startup_1m_keys_s} s, RSS ${results.rss_1m_keys_mb} MB (peak ${results.peak_rss_1m_keys_mb} MB)`);
  console.log(
    "\neach case beside its ceiling at 50 connections (the 1,000,000-key case beside (d)), rounds back to back (share: req/s over the other's; median round):\n",
  );
  table(
    ['case', 'share', 'p99 / ceiling p99', 'rounds: req/s (ceiling), p99 ms (ceiling)'],
    Object.entries(results.shares).map(([name, { share, p99_vs_ceiling: p99, rounds }]) => [
      CASE_LABELS[name] ?? name,
      share,
      p99,
      rounds.map((r) => `${r.rps} (${r.ceiling_rps}), ${r.p99_ms} (${r.ceiling_p99_ms})`).join('; '),
    ]),
  );
}

function printUsageWrites(usage) {
  const { steady, compacting } = usage.probe;
  console.log(
    `usage writes, keyed ${usage.route} at 50 connections: ${usage.wrk_c50.rps} req/s, p99 ${usage.wrk_c50.p99_ms} ms; probe p99 ${steady.p99_ms} ms between compactions (${steady.requests} requests), ` +
      `${compacting.p99_ms} ms during ${usage.probe.compactions} compactions (${compacting.requests} requests, max ${compacting.max_ms} ms)`,
  );
}

function printWebSockets(ws) {
  const { direct, gateway, added_by_gateway: added } = ws;
  console.log(
    `websockets, ${ws.sockets} sockets x 1 message / ${ws.message_interval_ms} ms, ${ws.preview_sockets} of them also a ${ws.preview_bytes / 1000} KB preview / ${ws.preview_interval_ms} ms; median of ${ws.rounds.length} rounds:\n` +
      `  progress p99 of each round, direct / through comfy-gate (added per message): ${roundsOf(ws.rounds)}\n` +
      `  progress: direct (${direct.sockets} sockets) p50 ${direct.p50_ms} ms p99 ${direct.p99_ms} ms; through comfy-gate p50 ${gateway.p50_ms} ms p99 ${gateway.p99_ms} ms (${gateway.msgs_per_s} msg/s); added per message (median round) p50 ${added.progress.p50_ms} ms p99 ${added.progress.p99_ms} ms\n` +
      `  previews: direct p50 ${direct.previews.p50_ms} ms p99 ${direct.previews.p99_ms} ms; through comfy-gate p50 ${gateway.previews.p50_ms} ms p99 ${gateway.previews.p99_ms} ms (${gateway.previews.msgs_per_s} frames/s); added p50 ${added.previews.p50_ms} ms p99 ${added.previews.p99_ms} ms\n` +
      `  gateway RSS ${gateway.rss_mb} MB (idle ${gateway.rss_idle_mb} MB); other CPU ${gateway.others_busy_pct} % while relaying\n` +
      `  without previews, progress p99 of each round: ${roundsOf(ws.progress_only.rounds)}; ` +
      `added p50 ${ws.progress_only.added_by_gateway.progress.p50_ms} ms p99 ${ws.progress_only.added_by_gateway.progress.p99_ms} ms`,
  );
}

/** Each round's progress p99, direct / through the gateway, with the p99 of what the gateway added to each message. */
function roundsOf(rounds) {
  return rounds.map((r) => `${r.direct_p99_ms} / ${r.gateway_p99_ms} ms (${r.added_p99_ms})`).join(', ');
}

function printTransfers(transfers) {
  console.log(
    `\nbig transfers (${transfers.download_mb} MB GET /view, ${transfers.upload_mb} MB POST /upload/image; fastest of 3 rounds over the routes), and /view with Range (${transfers.range}) and HEAD at 10 connections (median of 3 rounds); each ratio is the median of the rounds' ratios:\n`,
  );
  const routes = ['direct', 'nginx', 'ceiling', 'gateway'];
  const cell = (figures, field) => figures?.[field] ?? '';
  table(
    ['route', 'download MB/s', 'upload MB/s', 'RSS growth MB (down/up)', 'Range req/s', 'HEAD req/s'],
    routes.map((route) => [
      route,
      transfers.download[route].mb_per_s,
      transfers.upload[route].mb_per_s,
      route === 'gateway' ? `${transfers.download[route].rss_growth_mb} / ${transfers.upload[route].rss_growth_mb}` : '',
      cell(transfers.range_rps[route], 'rps'),
      cell(transfers.head_rps[route], 'rps'),
    ]),
  );
  const r = transfers.ratios;
  console.log(
    `\ngateway/direct: download ${r.download_gateway_vs_direct}, upload ${r.upload_gateway_vs_direct}, Range ${r.range_gateway_vs_direct}, HEAD ${r.head_gateway_vs_direct}; gateway/nginx: download ${r.download_gateway_vs_nginx}, upload ${r.upload_gateway_vs_nginx}; ` +
      `gateway/Node.js ceiling: download ${r.download_gateway_vs_ceiling}, upload ${r.upload_gateway_vs_ceiling}, Range ${r.range_gateway_vs_ceiling}, HEAD ${r.head_gateway_vs_ceiling}`,
  );
}

function printHistory(history) {
  const { ratios, other_key_added: added, rss, queueing } = history;
  console.log(
    `\nhistory window: GET /history?max_items=${history.max_items} among ${history.entries.toLocaleString('en')} entries of ${history.entry_bytes / 1024} KB ` +
      `(${queueing.prompts} of them the user key's jobs, all success ${queueing.seconds_until_success} s after the first was queued); ${history.run_s} s after ${history.warm_up_s} s warm-up:\n`,
  );
  const during = history.other_key_during_window;
  const cpu = (f, name) => f.cpu_pct_of_core?.[name] ?? '';
  table(
    ['case', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'gateway CPU %', 'upstream CPU %', 'RSS peak MB', 'other CPU %'],
    [
      ['(a) direct to the upstream', history.direct_c1],
      ['(b) user key through comfy-gate', history.user_window_c1],
      ['(a) direct to the upstream', history.direct],
      ['(b) user key through comfy-gate', history.user_window],
      ['(c) admin GET /features', history.other_key],
      ['(d) (c) while (b) runs', during],
      ['    (b) beside (d)', { ...during.beside, connections: during.connections }],
    ].map(([label, f]) => [
      label,
      f.connections,
      f.rps,
      f.p50_ms,
      f.p99_ms,
      cpu(f, 'gateway'),
      cpu(f, 'upstream'),
      f.rss_peak_mb ?? '',
      f.others_busy_pct ?? '',
    ]),
  );
  console.log(
    `\n(b)/(a) at ${history.connections} connections: p50 ${ratios.window_p50_vs_direct}, p99 ${ratios.window_p99_vs_direct}, req/s ${ratios.window_rps_vs_direct}; ` +
      `at 1: p50 ${ratios.window_p50_vs_direct_c1}, p99 ${ratios.window_p99_vs_direct_c1}\n` +
      `(d) - (c): p50 +${added.p50_ms} ms, p99 +${added.p99_ms} ms, req/s x ${ratios.other_key_rps_during_vs_alone}\n` +
      `answers: ${history.answer_bytes.direct} bytes direct, ${history.answer_bytes.gateway} through comfy-gate; ` +
      `gateway RSS idle ${rss.idle_mb} MB, peak ${rss.peak_mb} MB (kernel's high-water mark ${rss.kernel_peak_mb} MB)`,
  );
}

/** The profiling mode's report. */
export function printProfile(route, figures, top, file) {
  console.log(`\nkeyed ${route}, 50 connections, under the CPU profiler: ${figures.rps} req/s, p99 ${figures.p99_ms} ms; profile: ${file}\n`);
  table(
    ['self %', 'function', 'where'],
    top.map(({ self_pct, name, where }) => [self_pct, name, where]),
  );
}

/**
 * Prints CPU per request of the gateway and of the ceiling on one route, in total and for the `top`
 * functions whose time differs most between them (profiler overhead included in both).
 */
export function printCpuBesideCeiling(route, gateway, ceiling, top) {
  console.log(
    `\nkeyed ${route} beside the ceiling, under the CPU profiler: ${round(gateway.total_us)} against ${round(ceiling.total_us)} µs of CPU per request over the profiled run (idle left out)\n`,
  );
  const key = ({ name, where }) => `${name} ${where}`;
  const ceilingUs = new Map(ceiling.functions.map((f) => [key(f), f.us]));
  const gatewayUs = new Map(gateway.functions.map((f) => [key(f), f.us]));
  const all = new Map([...ceiling.functions, ...gateway.functions].map((f) => [key(f), f]));
  const rows = [...all.entries()]
    .map(([label, { name, where }]) => ({ name, where, gateway: gatewayUs.get(label) ?? 0, ceiling: ceilingUs.get(label) ?? 0 }))
    .sort((a, b) => Math.abs(b.gateway - b.ceiling) - Math.abs(a.gateway - a.ceiling))
    .slice(0, top);
  table(
    ['gateway µs', 'ceiling µs', 'function', 'where'],
    rows.map(({ gateway: g, ceiling: c, name, where }) => [round(g), round(c), name, where]),
  );
}

/**
 * Prints what the perf mode measured on one route: CPU per request of the gateway and of the ceiling (the
 * main thread's in the kernel, in native code and in JavaScript; the other threads'), then the `top`
 * functions (kernel, native or JavaScript, every thread) whose time differs most, and how the gateway's
 * extra time spreads over functions (see differenceBands).
 */
export function printPerfBesideCeiling(route, figures, gateway, ceiling, top) {
  console.log(`\nkeyed ${route}, 50 connections, under perf (every thread, kernel included): ${figures.gateway.rps} against ${figures.ceiling.rps} req/s\n`);
  table(
    ['µs of CPU per request', 'gateway', 'ceiling'],
    [
      ['total', round(gateway.total_us), round(ceiling.total_us)],
      ['main thread: kernel', round(gateway.main.kernel_us), round(ceiling.main.kernel_us)],
      ['main thread: Node.js, V8 and C libraries', round(gateway.main.native_us), round(ceiling.main.native_us)],
      ['main thread: JavaScript (compiled)', round(gateway.main.javascript_us), round(ceiling.main.javascript_us)],
      ['other threads', round(gateway.other_threads_us), round(ceiling.other_threads_us)],
    ],
  );
  const ceilingUs = new Map(ceiling.functions.map(({ name, us }) => [name, us]));
  const gatewayUs = new Map(gateway.functions.map(({ name, us }) => [name, us]));
  const rows = [...new Set([...gatewayUs.keys(), ...ceilingUs.keys()])]
    .map((name) => ({ name, gateway: gatewayUs.get(name) ?? 0, ceiling: ceilingUs.get(name) ?? 0 }))
    .sort((a, b) => Math.abs(b.gateway - b.ceiling) - Math.abs(a.gateway - a.ceiling))
    .slice(0, top);
  console.log('');
  table(
    ['gateway µs', 'ceiling µs', 'function ([k] kernel)'],
    rows.map(({ gateway: g, ceiling: c, name }) => [round(g, 2), round(c, 2), name.slice(0, 110)]),
  );
  const bands = differenceBands(gateway.functions, ceiling.functions);
  const ownUs = gateway.functions.filter(({ name }) => name.startsWith('[.] JS:') && name.includes('/dist/src/')).reduce((sum, { us }) => sum + us, 0);
  console.log(
    `\nfunctions of every thread (kernel, native, JavaScript) that took longer in the gateway, by how much longer; the gateway's own JavaScript (dist/src) took ${round(ownUs, 1)} µs per request\n`,
  );
  table(
    ['µs more per request', 'functions', 'µs more together'],
    bands.map((band) => [band.to_us === Infinity ? `over ${band.from_us}` : `${band.from_us}–${band.to_us}`, band.count, round(band.us, 1)]),
  );
}

/** Prints what the allocations mode measured: bytes per request, and the functions that allocated most. */
export function printAllocations(what, figures, allocations) {
  console.log(`\n${what}, 50 connections, heap sampled: ${figures.requests} requests, ${allocations.bytes_per_request} bytes allocated per request\n`);
  table(
    ['bytes/request', 'function', 'where'],
    allocations.top.map(({ bytes_per_request, name, where }) => [bytes_per_request, name, where]),
  );
}

function table(header, rows) {
  const cells = [header, ...rows].map((row) => row.map(String));
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  for (const row of cells) console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));
}

function printSharedStores(shared) {
  if (shared.skipped) {
    console.log(`\nscale-out (PostgreSQL and Redis): skipped, ${shared.skipped}`);
    return;
  }
  console.log(
    "\nscale-out: the keyed gateway on PostgreSQL and Redis beside the same gateway on its files, at 50 connections, rounds back to back (share: req/s over the files' run; median round):\n",
  );
  table(
    ['case', 'share', 'rounds: req/s shared (files), p99 ms shared (files)'],
    ['plain_route', 'runs'].map((name) => [
      name === 'runs' ? 'keyed POST /prompt (prompts run)' : 'keyed GET /features',
      shared[name].share,
      shared[name].rounds.map((r) => `${r.shared.rps} (${r.files.rps}), ${r.shared.p99_ms} (${r.files.p99_ms})`).join('; '),
    ]),
  );
  const long = shared.long_runs;
  console.log(
    `\nprompts that run on PostgreSQL and Redis for ${long.seconds} s (a pass of the safety-net reload included): ${long.rps} req/s, p99 ${long.p99_ms} ms`,
  );
}
