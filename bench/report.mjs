// Prints the bench's figures as tables.

const CASE_LABELS = {
  direct: '(a) direct to the upstream',
  nginx: '(b) nginx reverse proxy',
  bare_node_proxy: 'Node.js proxy, no checks (ceiling)',
  gateway_off: '(c) comfy-gate, no auth',
  gateway_auth: '(d) comfy-gate, key required',
  gateway_auth_1m_keys: '(e) as (d), 1,000,000 keys',
  gateway_auth_plain_route: '(d) on GET /object_info',
};

/** The full report of a bench run. */
export function printResults(results) {
  const { cases, ratios, usage_writes: usage, websocket: ws, machine } = results;
  const rows = Object.entries(cases).map(([name, { c1, c50 }]) => [CASE_LABELS[name] ?? name, c1.rps, c1.p50_ms, c1.p99_ms, c50.rps, c50.p50_ms, c50.p99_ms, c50.others_busy_pct]);
  console.log(`\n${machine.cores} cores (${machine.cpu}), ${machine.node}, ${machine.nginx}, ${machine.wrk}; better of ${machine.passes} passes, ${machine.run_s} s each after ${machine.warm_up_s} s warm-up\n`);
  table(['case', 'c1 req/s', 'c1 p50 ms', 'c1 p99 ms', 'c50 req/s', 'c50 p50 ms', 'c50 p99 ms', 'other CPU % (c50)'], rows);
  console.log(
    `\n(d)/(b) at 50 connections: ${ratios.auth_vs_nginx_c50}   (d)/(a): ${ratios.auth_vs_direct_c50}   (e)/(d): ${ratios.auth_1m_keys_vs_auth_c50}   ` +
      `(d) on GET /object_info / (b): ${ratios.auth_plain_route_vs_nginx_c50}   Node.js ceiling / (b): ${ratios.bare_node_proxy_vs_nginx_c50}   (d) / Node.js ceiling: ${ratios.auth_vs_bare_node_proxy_c50}`,
  );
  console.log(`start-up with 1,000,000 keys: ${results.startup_1m_keys_s} s, RSS ${results.rss_1m_keys_mb} MB (peak ${results.peak_rss_1m_keys_mb} MB)`);
  const { steady, compacting } = usage.probe;
  console.log(
    `usage writes, keyed ${usage.route} at 50 connections: ${usage.wrk_c50.rps} req/s, p99 ${usage.wrk_c50.p99_ms} ms; probe p99 ${steady.p99_ms} ms between compactions (${steady.requests} requests), ` +
      `${compacting.p99_ms} ms during ${usage.probe.compactions} compactions (${compacting.requests} requests, max ${compacting.max_ms} ms)`,
  );
  console.log(
    `websockets, ${ws.sockets} sockets x 1 message / ${ws.message_interval_ms} ms: direct p50 ${ws.direct.p50_ms} ms p99 ${ws.direct.p99_ms} ms; ` +
      `through comfy-gate p50 ${ws.gateway.p50_ms} ms p99 ${ws.gateway.p99_ms} ms (${ws.gateway.msgs_per_s} msg/s), gateway RSS ${ws.gateway.rss_mb} MB (idle ${ws.gateway.rss_idle_mb} MB)\n`,
  );
  table(
    ['target', 'measured', 'limit', ''],
    Object.entries(results.targets).map(([name, { value, limit, met }]) => [name, value, limit, met ? 'met' : 'MISSED']),
  );
}

/** The profiling mode's report. */
export function printProfile(route, figures, top, file) {
  console.log(`\nkeyed ${route}, 50 connections, under --cpu-prof: ${figures.rps} req/s, p99 ${figures.p99_ms} ms; profile: ${file}\n`);
  table(['self %', 'function', 'where'], top.map(({ self_pct, name, where }) => [self_pct, name, where]));
}

function table(header, rows) {
  const cells = [header, ...rows].map((row) => row.map(String));
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  for (const row of cells) console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));
}
