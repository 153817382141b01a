// Starts comfy-gate (the built CLI) as a child process and times its start-up.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { memoryOf, round, spawnService, waitForLine } from './processes.mjs';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
/** The V8 flags the command runs with, from its first line (`#!/usr/bin/env -S node FLAGS`): the bench runs it as `comfy-gate` does. */
const CLI_NODE_FLAGS = /^#!.*\bnode\b(.*)$/m.exec(readFileSync(CLI, 'utf8').split('\n', 1)[0])[1].trim().split(/\s+/).filter(Boolean);

/**
 * Runs `comfy-gate` on a free port in front of `upstreamPort`, with keys required when `auth` is set and
 * `/metrics` open (for its event-loop delay); `flags` are added to its command line.
 * Resolves once it prints its listening line: {service, url, startup_s, rss_mb, peak_rss_mb}.
 */
export async function startGateway({ directory, upstreamPort, auth, nodeArgs = [], flags = [] }) {
  const args = [
    ...CLI_NODE_FLAGS,
    ...nodeArgs,
    CLI,
    '--port',
    '0',
    '--upstream',
    `http://127.0.0.1:${upstreamPort}`,
    '--user-directory',
    directory,
    '--metrics-public',
    ...flags,
  ];
  if (auth) args.push('--require-api-auth');
  const started = performance.now();
  const service = spawnService(process.execPath, args);
  const [, url] = await waitForLine(service, /listening on (http:\/\/[^\s,]+)/, 120_000);
  const startup_s = round((performance.now() - started) / 1000, 2);
  return { service, url, startup_s, ...memoryOf(service.pid) };
}
