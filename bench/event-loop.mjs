// The gateway's event-loop delay over one case, read from its /metrics (prom-client's monitorEventLoopDelay histogram).

import { round } from './processes.mjs';

/** prom-client samples the loop every 10 ms, and each sample it records includes that interval. */
const SAMPLING_INTERVAL_MS = 10;
/** A case whose longest delay is above this is flagged in the results. */
export const MAX_DELAY_LIMIT_MS = 50;

/** Scrapes the gateway's /metrics and discards it: prom-client resets its delay histogram on every scrape, so a case starts from empty. */
export async function resetEventLoopDelay(gatewayUrl) {
  await scrape(gatewayUrl);
}

/**
 * The delay since the last reset: {p50_ms, p99_ms, max_ms, over_limit}, each the time the loop came
 * back late beyond the 10 ms sampling interval (the histogram's value less that interval, at least 0).
 */
export async function readEventLoopDelay(gatewayUrl) {
  const text = await scrape(gatewayUrl);
  const delayMs = (name) => {
    const match = new RegExp(`^comfy_gate_nodejs_eventloop_lag_${name}_seconds(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    if (!match) throw new Error(`the gateway's /metrics has no comfy_gate_nodejs_eventloop_lag_${name}_seconds`);
    return round(Math.max(0, Number(match[1]) * 1000 - SAMPLING_INTERVAL_MS), 2);
  };
  const delay = { p50_ms: delayMs('p50'), p99_ms: delayMs('p99'), max_ms: delayMs('max') };
  return { ...delay, over_limit: delay.max_ms > MAX_DELAY_LIMIT_MS };
}

/** The worst of several readings, figure by figure. */
export function worstDelay(delays) {
  const worst = (field) => Math.max(...delays.map((delay) => delay[field]));
  return { p50_ms: worst('p50_ms'), p99_ms: worst('p99_ms'), max_ms: worst('max_ms'), over_limit: delays.some((delay) => delay.over_limit) };
}

async function scrape(gatewayUrl) {
  const response = await fetch(`${gatewayUrl}/metrics`);
  if (!response.ok) throw new Error(`GET /metrics answered ${response.status}`);
  return response.text();
}
