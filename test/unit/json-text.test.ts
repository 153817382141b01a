// The JSON text written field by field (strings, numbers, usage journal lines, access-log lines) is byte for byte what JSON.stringify writes, for any strings and numbers.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { jsonNumber, jsonStringContent } from '../../src/json/json-text.js';
import { logAccess, type AccessLogEntry } from '../../src/log/logger.js';
import type { JobRunEntry, PromptAdmittedEntry, RateLimitedEntry } from '../../src/store/file/usage-file.js';
import { countedEntryLine, usageRecordLine } from '../../src/store/file/usage-record-line.js';
import type { UsageRecord } from '../../src/store/types.js';

/** Strings of any UTF-16 code units (lone surrogates too), of any code points, and the characters JSON escapes. */
const anyString = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 40 }).map((units) => String.fromCharCode(...units)),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc
    .array(fc.constantFrom('a', '/', '"', '\\', '\u0000', '\n', '\u001f', '\u007f', '\u2028', '\ud800', '\udfff', '\u{1f600}', 'é'), { maxLength: 12 })
    .map((parts) => parts.join('')),
);

/** Any double (NaN, ±Infinity, -0, subnormals, past 2^53), integers, and numbers at the edges of JavaScript's notations. */
const anyNumber = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(-0, 0, 1e21, 1e-7, 123456789012345680000, 2 ** 53 + 2, Number.MAX_VALUE, Number.MIN_VALUE, -1.5e-300, NaN, Infinity),
);

test('a string is written between its quotes as JSON.stringify writes it', () => {
  fc.assert(
    fc.property(anyString, (text) => {
      assert.equal(`"${jsonStringContent(text)}"`, JSON.stringify(text));
    }),
    { numRuns: 2000 },
  );
});

test('a number is written as JSON.stringify writes it', () => {
  fc.assert(
    fc.property(anyNumber, (value) => {
      assert.equal(jsonNumber(value), JSON.stringify(value));
    }),
    { numRuns: 2000 },
  );
});

test("a usage record's journal line is JSON.stringify of the record", () => {
  const record: fc.Arbitrary<UsageRecord> = fc.record({
    key_id: anyString,
    endpoint: anyString,
    timestamp: anyNumber,
    duration: anyNumber,
    success: fc.boolean(),
    metadata: fc.record({ method: anyString, status: anyNumber }),
  });
  fc.assert(
    fc.property(record, (usage) => {
      assert.equal(usageRecordLine(usage), JSON.stringify(usage));
    }),
    { numRuns: 2000 },
  );
});

test("a rate-limited, prompt-admitted or job-run entry's journal line is JSON.stringify of the entry", () => {
  const entry: fc.Arbitrary<RateLimitedEntry | PromptAdmittedEntry | JobRunEntry> = fc.oneof(
    fc.record({ rate_limited: fc.constant(true as const), key_id: anyString, timestamp: anyNumber }),
    fc.record({ prompt_admitted: fc.constant(true as const), key_id: anyString, timestamp: anyNumber }),
    fc.record({ job_run: fc.constant(true as const), key_id: anyString, timestamp: anyNumber, execution_seconds: anyNumber, outputs: anyNumber }),
  );
  fc.assert(
    fc.property(entry, (counted) => {
      assert.equal(countedEntryLine(counted), JSON.stringify(counted));
    }),
    { numRuns: 2000 },
  );
});

test("an access-log line is JSON.stringify of its fields after the logger's level, time and bindings", () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const log = pino({ level: 'info', base: { service: 'comfy-gate' } }, sink).child({ replica: 'r1' });
  const entry: fc.Arbitrary<AccessLogEntry> = fc.record({
    req_id: anyString,
    method: anyString,
    path: anyString,
    status: fc.integer({ min: 100, max: 999 }),
    // As the gateway gives it: milliseconds to a tenth, always finite.
    duration_ms: fc.double({ min: 0, max: 1e9, noNaN: true }).map((ms) => Math.round(ms * 10) / 10),
    key_id: fc.option(anyString),
    ip: anyString,
  });
  fc.assert(
    fc.property(entry, (fields) => {
      lines.length = 0;
      logAccess(log, fields);
      // pino's stream here is a plain Writable: written at once.
      assert.equal(lines.length, 1);
      const time = Number(/^\{"level":30,"time":(\d+),/.exec(lines[0]!)?.[1]);
      assert.equal(lines[0], `${JSON.stringify({ level: 30, time, service: 'comfy-gate', replica: 'r1', ...fields, msg: 'request' })}\n`);
    }),
    { numRuns: 1000 },
  );
});
