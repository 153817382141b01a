// Throwaway servers the scale suites own: a redis-server and a PostgreSQL cluster on free loopback ports, stopped and restarted at will.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A port nothing listens on right now (servers that cannot take port 0 need one). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves once `probe` resolves true, or rejects after `timeoutMs`. */
async function until(probe: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export interface PrivateRedis {
  url: string;
  port: number;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: it keeps nothing on disk). */
  start(): Promise<void>;
  /** SIGSTOP: the server keeps its connections but answers nothing, like a hung host. */
  pause(): void;
  resume(): void;
}

/** Is redis-server installed? Resolves null if so, else the reason a test must skip. */
export function redisServerMissing(): string | null {
  return spawnSync('redis-server', ['--version']).status === 0 ? null : 'redis-server is not installed';
}

/** Starts a private redis-server on a free port; the caller stops it. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const ping = (): boolean => spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG';
  const start = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
      stdio: 'ignore',
    });
    await until(ping, 5000, `redis-server on port ${port}`);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    async stop() {
      const running = child;
      child = null;
      if (!running || running.exitCode !== null) return;
      running.kill('SIGCONT');
      running.kill('SIGTERM');
      await once(running, 'exit');
    },
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
  };
}

export interface PrivatePostgres {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and deletes its data directory. */
  destroy(): Promise<void>;
}

const PG_BIN = '/usr/lib/postgresql/15/bin';

/** Is a PostgreSQL 15 server installed, and can a cluster be made (as the postgres user)? Null if so, else the reason. */
export function privatePostgresMissing(): string | null {
  if (spawnSync(join(PG_BIN, 'pg_ctl'), ['--version']).status !== 0) return `${PG_BIN}/pg_ctl is not installed`;
  if (spawnSync('runuser', ['-u', 'postgres', '--', 'true']).status !== 0) return 'cannot run commands as the postgres user (runuser)';
  return null;
}

function asPostgres(args: string[]): { status: number | null; output: string } {
  const result = spawnSync('runuser', ['-u', 'postgres', '--', ...args], { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/**
 * Creates a throwaway cluster with initdb (as the postgres user: initdb refuses root) in a temporary
 * directory, on a free port, with trust authentication on loopback, and starts it.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'comfy-gate-pg-'));
  await chmod(dir, 0o777);
  const data = join(dir, 'data');
  const init = asPostgres([join(PG_BIN, 'initdb'), '-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
  if (init.status !== 0) throw new Error(`initdb failed: ${init.output}`);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const start = async (): Promise<void> => {
    const started = asPostgres([join(PG_BIN, 'pg_ctl'), '-D', data, '-l', join(dir, 'log'), '-o', options, '-w', '-t', '30', 'start']);
    if (started.status !== 0) throw new Error(`pg_ctl start failed: ${started.output}`);
  };
  const stop = async (): Promise<void> => {
    asPostgres([join(PG_BIN, 'pg_ctl'), '-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']);
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop,
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
