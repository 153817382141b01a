// Starts comfy-gate (the built CLI) as a child process and times its start-up.

import { fileURLToPath } from 'node:url';
import { memoryOf, round, spawnService, waitForLine } from './processes.mjs';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));

/**
 * Runs `comfy-gate` on a free port in front of `upstreamPort`, with keys required when `auth` is set and
 * `/metrics` open (for its event-loop delay); `flags` are added to its command line; `cli` is another built checkout's.
 * Resolves once it prints its listening line: {service, url, startup_s, rss_mb, peak_rss_mb}.
 */
export async function startGateway({ directory, upstreamPort, auth, nodeArgs = [], flags = [], cli = CLI }) {
  const args = [...nodeArgs, cli, '--port', '0', '--upstream', `http://127.0.0.1:${upstreamPort}`, '--user-directory', directory, '--metrics-public', ...flags];
  if (auth) args.push('--require-api-auth');
  const started = performance.now();
  const service = spawnService(process.execPath, args);
  const [, url] = await waitForLine(service, /listening on (http:\/\/[^\s,]+)/, 120_000);
  const startup_s = round((performance.now() - started) / 1000, 2);
  return { service, url, startup_s, ...memoryOf(service.pid) };
}
