// The access log's request line (the same JSON line pino itself writes, for any path, none below the level), and the logger's stdout.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { logRequest, type RequestLogEntry } from '../../src/log/logger.js';

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

test('a request line is the line pino writes for the same fields, whatever the path holds', async () => {
  const entries: RequestLogEntry[] = [
    { req_id: 'a1', method: 'GET', path: '/features', status: 200, duration_ms: 1.3, key_id: null, ip: '127.0.0.1' },
    { req_id: 'b2', method: 'POST', path: '/view/"quoted"\\back\u0001\u00e9\u{1f600}', status: 404, duration_ms: 0, key_id: 'k_1', ip: '::1' },
  ];
  for (const entry of entries) {
    const { log, lines } = capturingLogger('info');
    log.info(entry, 'request');
    logRequest(log, entry);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(lines.length, 2);
    assert.deepEqual(withoutTime(lines[1]!), withoutTime(lines[0]!));
    assert.deepEqual(Object.keys(JSON.parse(lines[1]!) as object), Object.keys(JSON.parse(lines[0]!) as object), 'same keys in the same order');
  }
});

test('no request line below the level the logger writes', async () => {
  const { log, lines } = capturingLogger('warn');
  logRequest(log, { req_id: 'a', method: 'GET', path: '/', status: 200, duration_ms: 1, key_id: null, ip: '127.0.0.1' });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(lines, []);
});

test("the gateway's logger writes every line whole to stdout, UTF-8 intact and in order, even when the process exits at once", () => {
  const logger = new URL('../../src/log/logger.js', import.meta.url).href;
  const script = `
    const { createLogger, logRequest } = await import(${JSON.stringify(logger)});
    const log = createLogger('info');
    for (let i = 0; i < 5000; i += 1) {
      if (i % 2 === 0) log.info({ i, text: 'é✓\u{1f600}' }, 'line');
      else logRequest(log, { req_id: String(i), method: 'GET', path: '/é✓', status: 200, duration_ms: 1, key_id: null, ip: '::1' });
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
