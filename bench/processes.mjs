// Child processes of the bench: start them, wait until they serve, read their memory, and always stop them.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const running = new Set();

/** Starts a long-running child; its output is kept for error messages; it is stopped when the bench exits. */
export function spawnService(command, args) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const service = { child, pid: child.pid, output: '', exited: false };
  const keep = (chunk) => {
    service.output = (service.output + chunk).slice(-8192);
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  child.once('exit', () => {
    service.exited = true;
    running.delete(service);
  });
  child.once('error', (error) => {
    service.exited = true;
    service.output += String(error);
  });
  running.add(service);
  return service;
}

/** Resolves the first line of the child's stdout that matches `pattern` (its match), or rejects if it exits first. */
export function waitForLine(service, pattern, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => finish(new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${service.output}`)), timeoutMs);
    const onData = (chunk) => {
      buffered += chunk;
      const match = pattern.exec(buffered);
      if (match) finish(null, match);
    };
    const onExit = () => finish(new Error(`${service.child.spawnfile} exited before it was ready:\n${service.output}`));
    function finish(error, match) {
      clearTimeout(timer);
      service.child.stdout.off('data', onData);
      service.child.off('exit', onExit);
      if (error) reject(error);
      else resolve(match);
    }
    service.child.stdout.on('data', onData);
    service.child.once('exit', onExit);
  });
}

/** Resolves once 127.0.0.1:port accepts connections; rejects if the service exits or 10 s pass. */
export async function waitForPort(port, service) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (service.exited) throw new Error(`${service.child.spawnfile} exited:\n${service.output}`);
    if (await accepts(port)) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on port ${port}:\n${service.output}`);
}

function accepts(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Stops a child with SIGTERM (SIGKILL after 10 s) and resolves when it has exited. */
export async function stopService(service) {
  if (service.exited) return;
  const exited = new Promise((resolve) => service.child.once('exit', resolve));
  service.child.kill('SIGTERM');
  const timer = setTimeout(() => service.child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Asks every child still running to stop (SIGTERM lets nginx's master take its worker down too); for the bench's exit paths. */
export function stopAllNow() {
  for (const service of running) service.child.kill('SIGTERM');
}

/** Current and peak resident memory of a process, in MB, from /proc/PID/status. */
export function memoryOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss_mb: round(kb('VmRSS') / 1024), peak_rss_mb: round(kb('VmHWM') / 1024) };
}

/** Rounds to one decimal place. */
export function round(value, places = 1) {
  const factor = 10 ** places;
  return Math.round(value * factor) / factor;
}

/** The median of the values (the upper one of an even count). */
export function median(values) {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}
