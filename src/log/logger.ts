// The gateway's structured logger (pino): JSON lines on stdout, with credentials redacted wherever they appear.

import { pino, type Logger } from 'pino';

export type { Logger };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Paths redacted in every log line, in case a header or body object is ever logged whole. */
const REDACTED = ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]', 'headers.authorization', 'headers.cookie', 'headers["x-api-key"]', 'api_key', '*.api_key'];

/** A logger writing JSON lines to `destination` (stdout by default). */
export function createLogger(level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { service: 'comfy-gate' }, redact: { paths: REDACTED, censor: '[redacted]' } }, destination as pino.DestinationStream | undefined);
}
