// The gateway's structured logger (pino): JSON lines on stdout, with credentials redacted wherever they appear.

import { pino, type Logger } from 'pino';

export type { Logger };

import type { LogLevel } from '../config/schema.js';

/** Paths redacted in every log line, in case a header or body object is ever logged whole. */
const REDACTED = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'api_key',
  '*.api_key',
];

/** A logger writing JSON lines to stdout, buffered (a request never waits for its log line). */
export function createLogger(level: LogLevel): Logger {
  const destination = pino.destination({ dest: 1, sync: false });
  return pino({ level, base: { service: 'comfy-gate' }, redact: { paths: REDACTED, censor: '[redacted]' } }, destination);
}
