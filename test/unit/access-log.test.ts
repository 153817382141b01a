// The access log's request line (the same JSON line pino itself writes, for any path, none below the level), and the logger's stdout.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import fc from 'fast-check';
import { pino } from 'pino';
import { logAccess, type AccessLogEntry } from '../../src/log/logger.js';

/** A pino logger like the gateway's (its base, a child's bindings) writing into an array of lines. */
function capturingLogger(level: string): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { log: pino({ level, base: { service: 'comfy-gate' } }, sink).child({ replica: 'r1' }), lines };
}

const withoutTime = (line: string): Record<string, unknown> => {
  const parsed = JSON.parse(line) as Record<string, unknown>;
  assert.equal(typeof parsed.time, 'number');
  delete parsed.time;
  return parsed;
};

test("a request's and a socket's line are the lines pino writes for the same fields, whatever the path holds", async () => {
  const entries: [AccessLogEntry, 'request' | 'websocket'][] = [
    [{ req_id: 'a1', method: 'GET', path: '/features', status: 200, duration_ms: 1.3, key_id: null, ip: '127.0.0.1' }, 'request'],
    [{ req_id: 'b2', method: 'POST', path: '/view/"quoted"\\back\u0001\u00e9\u{1f600}', status: 404, duration_ms: 0, key_id: 'k_1', ip: '::1' }, 'request'],
    [{ method: 'GET', path: '/ws', status: 101, duration_ms: 61_250, key_id: 'k_1', ip: '::1' }, 'websocket'],
    [{ method: 'GET', path: '/api/ws\u2028"', status: 403, duration_ms: 0, key_id: 'k_2', ip: '127.0.0.1' }, 'websocket'],
  ];
  for (const [entry, message] of entries) {
    const { log, lines } = capturingLogger('info');
    log.info(entry, message);
    logAccess(log, entry, message);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(lines.length, 2);
    assert.deepEqual(withoutTime(lines[1]!), withoutTime(lines[0]!));
    assert.deepEqual(Object.keys(JSON.parse(lines[1]!) as object), Object.keys(JSON.parse(lines[0]!) as object), 'same keys in the same order');
  }
});

test("a line's duration and time are written as JSON.stringify writes them, whatever the number", async () => {
  const durations = fc.oneof(
    fc.integer({ min: 0, max: 2 ** 36 }).map((tenths) => tenths / 10),
    fc.double({ noNaN: false }),
    fc.constantFrom(-0, 0.1, 0.05, 1e21, 2 ** 30 / 10, (2 ** 30 - 1) / 10, -1.5, Infinity),
  );
  await fc.assert(
    fc.asyncProperty(durations, async (duration) => {
      const { log, lines } = capturingLogger('info');
      const before = Date.now();
      logAccess(log, { req_id: 'a', method: 'GET', path: '/', status: 200, duration_ms: duration, key_id: null, ip: '::1' });
      await new Promise((resolve) => setImmediate(resolve));
      const after = Date.now();
      const [, time, written] = /^\{"level":30,"time":(\d+),.*"duration_ms":([^,]+),/.exec(lines[0]!)!;
      assert.equal(written, JSON.stringify(duration));
      assert.ok(Number(time) >= before && Number(time) <= after, `time ${time} within ${before}..${after}`);
    }),
    { numRuns: 2000 },
  );
});

test('no request line below the level the logger writes', async () => {
  const { log, lines } = capturingLogger('warn');
  logAccess(log, { req_id: 'a', method: 'GET', path: '/', status: 200, duration_ms: 1, key_id: null, ip: '127.0.0.1' });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(lines, []);
});

test("the gateway's logger writes every line whole to stdout, UTF-8 intact and in order, even when the process exits at once", () => {
  const logger = new URL('../../src/log/logger.js', import.meta.url).href;
  const script = `
    const { createLogger, logAccess } = await import(${JSON.stringify(logger)});
    const log = createLogger('info');
    for (let i = 0; i < 5000; i += 1) {
      if (i % 2 === 0) log.info({ i, text: 'é✓\u{1f600}' }, 'line');
      else logAccess(log, { req_id: String(i), method: 'GET', path: '/é✓', status: 200, duration_ms: 1, key_id: null, ip: '::1' });
    }
    process.exit(0);`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.equal(child.status, 0, child.stderr);
  const lines = child.stdout.split('\n').filter(Boolean);
  assert.equal(lines.length, 5000);
  lines.forEach((line, i) => {
    const parsed = JSON.parse(line) as { i?: number; text?: string; req_id?: string; path?: string };
    if (i % 2 === 0) assert.deepEqual([parsed.i, parsed.text], [i, 'é✓\u{1f600}']);
    else assert.deepEqual([parsed.req_id, parsed.path], [String(i), '/é✓']);
  });
});

/**
 * Runs `body` (a module script with `log`, the gateway's logger, and `logAccess`) in a child that then
 * stays up, and resolves the lines it has written to stdout once `expected` have arrived, or after 3 s;
 * the child is killed with SIGKILL then, so nothing is written on its exit.
 */
async function linesWrittenWhileUp(body: string, expected: number): Promise<string[]> {
  const logger = new URL('../../src/log/logger.js', import.meta.url).href;
  const script = `
    const { createLogger, logAccess } = await import(${JSON.stringify(logger)});
    const log = createLogger('info');
    ${body}
    setTimeout(() => {}, 60_000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let text = '';
    const arrived = new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.split('\n').filter(Boolean).length >= expected) resolve();
      });
    });
    await Promise.race([arrived, delay(3000)]);
    return text.split('\n').filter(Boolean);
  } finally {
    child.kill('SIGKILL');
  }
}

const REQUEST_LINE = `{ req_id: String(i), method: 'GET', path: '/', status: 200, duration_ms: 1, key_id: null, ip: '::1' }`;

test('an access-log line that waits for others to share its write is written soon, while the gateway is up', async () => {
  const lines = await linesWrittenWhileUp(`const i = 0; logAccess(log, ${REQUEST_LINE});`, 1);
  assert.equal(lines.length, 1);
  assert.equal((JSON.parse(lines[0]!) as { req_id: string }).req_id, '0');
});

test('any other line is written at once, with the access-log lines waiting before it, in order', async () => {
  // The event loop is then blocked for longer than the test waits: no timer could write them.
  const lines = await linesWrittenWhileUp(
    `for (let i = 0; i < 3; i += 1) logAccess(log, ${REQUEST_LINE});
    log.warn({ event: 'something' }, 'a warning');
    const until = Date.now() + 5000;
    while (Date.now() < until);`,
    4,
  );
  const said = lines.map((line) => {
    const { req_id, msg } = JSON.parse(line) as { req_id?: string; msg: string };
    return req_id ?? msg;
  });
  assert.deepEqual(said, ['0', '1', '2', 'a warning']);
});

test('lines left waiting behind a write that outlasts their wait are written soon too', async () => {
  // The first write (of the first 16 KB) takes 300 ms, as to a slow reader; the rest waits behind it.
  const lines = await linesWrittenWhileUp(
    `const fs = (await import('node:fs')).default;
    const write = fs.write;
    let slowed = false;
    fs.write = (...args) => (slowed ? write(...args) : ((slowed = true), setTimeout(() => write(...args), 300)));
    for (let i = 0; i < 160; i += 1) logAccess(log, ${REQUEST_LINE});`,
    160,
  );
  assert.equal(lines.length, 160);
  assert.equal((JSON.parse(lines.at(-1)!) as { req_id: string }).req_id, '159');
});

test('while standard output takes nothing, waiting lines stay bounded: the rest are dropped, and counted once output flows again', async () => {
  const logger = new URL('../../src/log/logger.js', import.meta.url).href;
  const count = 120_000;
  // About 28 MB of access-log lines, logged while the parent reads nothing; then the child says so on stderr and stays up.
  const script = `
    const { createLogger, logAccess } = await import(${JSON.stringify(logger)});
    const log = createLogger('info');
    const path = '/' + 'p'.repeat(160);
    for (let i = 0; i < ${count}; i += 1) logAccess(log, { req_id: String(i), method: 'GET', path, status: 200, duration_ms: 1, key_id: null, ip: '::1' });
    process.stderr.write('logged\\n');
    setTimeout(() => {}, 60_000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const [logged] = (await once(child.stderr, 'data')) as [Buffer];
    assert.equal(logged.toString(), 'logged\n');
    const chunks: Buffer[] = [];
    const warned = new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        // The warning is a short line: whole in one read, or split over two.
        if (Buffer.concat(chunks.slice(-2)).includes('"log_lines_dropped"')) resolve();
      });
    });
    await Promise.race([warned, delay(20_000, undefined, { ref: false })]);
    await delay(200);
    const lines = Buffer.concat(chunks)
      .toString()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { req_id?: string; event?: string; lines?: number });
    const requests = lines.filter((line) => line.req_id !== undefined);
    const warning = lines.find((line) => line.event === 'log_lines_dropped');
    assert.ok(warning, `no warning after ${requests.length} request lines`);
    // What waited was at most the bound (16 MiB), so most of the burst was dropped, and every line is either written or counted.
    assert.ok(requests.length < count / 2, `${requests.length} of ${count} lines kept`);
    assert.equal(requests.length + warning.lines!, count);
    // Written in order, from the first; the last few may follow the gap: they waited for their write until output flowed again.
    const written = requests.map((line) => Number(line.req_id));
    assert.equal(written[0], 0);
    assert.ok(
      written.every((id, i) => i === 0 || id > written[i - 1]!),
      'request lines in the order they were logged',
    );
  } finally {
    child.kill('SIGKILL');
  }
});

test('on exit, lines that standard output does not take are given up once it has taken nothing for a while, and the exit goes on', async () => {
  const logger = new URL('../../src/log/logger.js', import.meta.url).href;
  // About 9 MB of lines (under the bound, so none is dropped) wait while the parent reads nothing; then the child exits.
  const script = `
    const { createLogger, logAccess } = await import(${JSON.stringify(logger)});
    const log = createLogger('info');
    const path = '/' + 'p'.repeat(160);
    for (let i = 0; i < 40000; i += 1) logAccess(log, { req_id: String(i), method: 'GET', path, status: 200, duration_ms: 1, key_id: null, ip: '::1' });
    setTimeout(() => process.exit(3), 500);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: Buffer[] = [];
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  try {
    child.stdout.pause();
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    const outcome = await Promise.race([exited, delay(15_000, 'still running', { ref: false })]);
    assert.notEqual(outcome, 'still running', 'the exit waited for standard output for 15 s');
    assert.deepEqual(outcome, [3, null]);
    assert.equal(Buffer.concat(stderr).toString(), '');
  } finally {
    child.kill('SIGKILL');
  }
});
