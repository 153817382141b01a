// Runs upstream-server.ts as a child process that a test can SIGKILL and start again on the same port.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';

const SCRIPT = resolve(import.meta.dirname, 'upstream-server.js');

export interface KillableUpstream {
  url: string;
  port: number;
  /** Resolves the first line printed (from now on) that matches `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGKILLs the process and waits for it to die. */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
}

export async function startKillableUpstream(): Promise<KillableUpstream> {
  let child: ChildProcess;
  let lines: string[] = [];
  let waiters: Array<{ pattern: RegExp; resolve(line: string): void }> = [];

  async function launch(port: number): Promise<number> {
    lines = [];
    child = spawn(process.execPath, [SCRIPT, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let pending = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n')) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        lines.push(line);
        waiters = waiters.filter((waiter) => !(waiter.pattern.test(line) && (waiter.resolve(line), true)));
      }
    });
    const line = await waitFor(/^listening \d+$/, 5000);
    return Number(line.split(' ')[1]);
  }

  function waitFor(pattern: RegExp, timeoutMs = 5000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the upstream did not print ${pattern} within ${timeoutMs} ms; it printed: ${lines.join(' | ')}`)),
        timeoutMs,
      );
      waiters.push({ pattern, resolve: (line) => (clearTimeout(timer), resolve(line)) });
    });
  }

  async function kill(): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  const port = await launch(0);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    waitFor,
    kill,
    async restart() {
      await kill();
      await launch(port);
    },
  };
}
