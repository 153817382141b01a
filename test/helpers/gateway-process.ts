// Starts the real comfy-gate command as a child process on a free loopback port, for integration tests.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';

export const CLI_PATH = resolve(import.meta.dirname, '../../src/cli/main.js');

export interface GatewayProcess {
  url: string;
  port: number;
  pid: number;
  userDirectory: string;
  child: ChildProcess;
  /** Everything the process printed so far. */
  output(): { stdout: string; stderr: string };
  /** Sends a signal and resolves the exit code (or the signal's name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export interface StartGatewayOptions {
  /** ComfyUI's URL; null for none, when `args` end with `-- COMMAND` (a child ComfyUI). */
  upstream: string | null;
  args?: string[];
  userDirectory?: string;
  env?: NodeJS.ProcessEnv;
}

/** A fresh temporary user directory, removed by the returned cleanup. */
export async function tempUserDirectory(): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'comfy-gate-test-'));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/**
 * Runs `comfy-gate serve --port 0` and waits for its start-up line.
 * @throws if the process exits before it listens (its output is in the message).
 */
export async function startGateway(options: StartGatewayOptions): Promise<GatewayProcess> {
  const userDirectory = options.userDirectory ?? (await tempUserDirectory()).path;
  const upstream = options.upstream === null ? [] : ['--upstream', options.upstream];
  const child = spawn(process.execPath, [CLI_PATH, '--port', '0', ...upstream, '--user-directory', userDirectory, ...(options.args ?? [])], {
    env: { ...cleanEnv(), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit');
  const port = await new Promise<number>((resolvePort, reject) => {
    const check = (): void => {
      const match = /listening on http:\/\/[^\s]+:(\d+)/.exec(stdout);
      if (!match) return;
      child.stdout.off('data', check);
      resolvePort(Number(match[1]));
    };
    child.stdout.on('data', check);
    child.once('exit', (code) => reject(new Error(`gateway exited with ${code} before listening:\n${stdout}\n${stderr}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    userDirectory,
    child,
    output: () => ({ stdout, stderr }),
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code, exitSignal] = (await exited) as [number | null, NodeJS.Signals | null];
      return code ?? exitSignal ?? 'unknown';
    },
  };
}

/** Runs the comfy-gate command to completion. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { env: { ...cleanEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'exit')) as [number];
  return { code, stdout, stderr };
}

/** The test's environment without COMFY_GATE_* settings, so a developer's shell cannot change a test. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('COMFY_GATE_')));
}
