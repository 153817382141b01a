// The gateway's structured logger (pino): JSON lines on stdout, with credentials redacted wherever they appear.

import { pino, type Logger } from 'pino';

export type { Logger };

import type { LogLevel } from '../config/schema.js';
import { jsonNumber, jsonStringContent } from '../json/json-text.js';
import { LineBuffer } from './line-buffer.js';

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

/**
 * Access-log lines are written once this many bytes wait (about 64 lines) or LOG_FLUSH_MS after they
 * were logged: each write is a hand-over to libuv's thread pool, which cost the event loop 16-18 µs
 * here, more than the rest of a request's line.
 */
const LOG_BATCH_BYTES = 16 * 1024;
/** The largest write: a batch and the lines that came while the write before it was under way. */
const LOG_MAX_WRITE_BYTES = 64 * 1024;
/** How long an access-log line may wait for others to share its write. */
const LOG_FLUSH_MS = 100;
/**
 * Bytes of log lines that may wait for standard output at most. A reader that stops taking them (a stuck
 * log pipe) would otherwise make them, and the gateway's memory, grow for as long as it is stuck: lines
 * past this are dropped, and a warning says how many once output flows again.
 */
const LOG_MAX_WAITING_BYTES = 16 * 1024 * 1024;
/**
 * On exit, what waits is written synchronously (pino's exit flush): how long standard output may take
 * nothing before the rest is given up. Without it, a reader that never resumes would hold the exit
 * until the supervisor's SIGKILL.
 */
const LOG_EXIT_STALL_MS = 2000;
/** What a write to a stalled standard output fails with. */
const STALLED_OUTPUT = new Set(['EAGAIN', 'EBUSY']);
/** On a gateway logger's destination: the write that lets a line wait for others (see LOG_BATCH_BYTES). */
const WRITE_BATCHED = Symbol('writeBatched');

/**
 * A logger writing JSON lines to stdout, buffered (a request never waits for its log line). Access-log
 * lines (`logAccess`) wait in one reused buffer until LOG_BATCH_BYTES of them do, or LOG_FLUSH_MS has
 * passed, and are then handed to the destination as one copy; any other line is handed over at once,
 * with the lines waiting before it; what waits is written on exit. Each line is encoded once, into that
 * buffer (kept as text, sonic-boom would measure the whole waiting text again for every line added;
 * as a buffer of its own, each line cost an allocation and a place in sonic-boom's lists). At most
 * LOG_MAX_WAITING_BYTES wait for standard output: past that, batches are dropped and their lines
 * counted, and the count is logged (`log_lines_dropped`) once half of what waited has been written. On
 * exit, what waits is given up once standard output has taken nothing for LOG_EXIT_STALL_MS.
 */
export function createLogger(level: LogLevel): Logger {
  // Opening process.stdout makes a pipe or socket on fd 1 non-blocking (libuv's uv_pipe_open): a write that a stalled
  // reader cannot take then fails with EAGAIN and is retried, where a blocking one would hold a thread of libuv's pool,
  // and with it the exit, for as long as the reader stalls.
  void process.stdout;
  // While the exit's synchronous flush runs: the bytes it had left to write when output last took some, and when it gives up.
  let exiting = false;
  let exitLeft = -1;
  let exitDeadline = 0;
  const destination = pino.destination({
    dest: 1,
    sync: false,
    contentMode: 'buffer',
    maxWrite: LOG_MAX_WRITE_BYTES,
    maxLength: LOG_MAX_WAITING_BYTES,
    // Outside the exit a busy stdout is retried for as long as it lasts (lines past the bound are dropped meanwhile).
    retryEAGAIN: (_error: Error, writing: number, left: number) => {
      if (!exiting) return true;
      if (writing + left !== exitLeft) {
        exitLeft = writing + left;
        exitDeadline = Date.now() + LOG_EXIT_STALL_MS;
      }
      return Date.now() < exitDeadline;
    },
  });
  // Lines logged and not yet handed to the destination, and the timer that hands them over, armed only while some wait.
  const lines = new LineBuffer();
  let handOverTimer: NodeJS.Timeout | null = null;
  // Bytes handed to the destination and not yet written; lines dropped since the last warning about it.
  let handedOver = 0;
  let dropped = 0;
  const append = destination.write.bind(destination) as unknown as (bytes: Buffer) => boolean;
  const handOver = (): boolean => {
    if (lines.size === 0) return true;
    handedOver += lines.size;
    return append(lines.takeCopy());
  };
  const flushSync = destination.flushSync.bind(destination);
  destination.flushSync = () => {
    exiting = true;
    try {
      handOver();
      flushSync();
    } catch (error) {
      // Standard output stalled: the lines still waiting are given up.
      if (!STALLED_OUTPUT.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
    } finally {
      exiting = false;
      exitLeft = -1;
    }
  };
  const flush = destination.flush.bind(destination);
  destination.flush = (callback?: (error?: Error) => void) => {
    handOver();
    flush(callback);
  };
  destination.on('drop', (bytes: Buffer) => {
    handedOver -= bytes.length;
    for (let end = bytes.indexOf(10); end !== -1; end = bytes.indexOf(10, end + 1)) dropped += 1;
  });
  destination.on('write', (written: number) => {
    handedOver -= written;
    if (dropped > 0 && handedOver < LOG_MAX_WAITING_BYTES / 2) {
      const count = dropped;
      dropped = 0;
      logger.warn({ event: 'log_lines_dropped', lines: count }, 'log lines dropped: standard output did not take them as fast as they came');
    }
  });
  const writeBatched = (line: string): boolean => {
    lines.addText(line);
    if (lines.size < LOG_BATCH_BYTES) {
      handOverTimer ??= setTimeout(() => {
        handOverTimer = null;
        handOver();
      }, LOG_FLUSH_MS).unref();
      return true;
    }
    return handOver();
  };
  destination.write = (line: string) => {
    lines.addText(line);
    return handOver();
  };
  Object.assign(destination, { [WRITE_BATCHED]: writeBatched });
  const logger = pino({ level, base: { service: 'comfy-gate' }, redact: { paths: REDACTED, censor: '[redacted]' } }, destination);
  return logger;
}

/** One line of the access log: a request's (`request`), or a WebSocket's once it has ended (`websocket`). */
export interface AccessLogEntry {
  /** Left out of a WebSocket's line: its upgrade has no request id. */
  req_id?: string;
  method: string;
  path: string;
  status: number;
  duration_ms: number;
  key_id: string | null;
  ip: string;
}

/** The last millisecond an access-log line was written in, and its text: the lines of one millisecond share it. */
let lastTime = 0;
let lastTimeText = '0';

/** `Date.now()` as text, converted once per millisecond (a number past 2^31 is converted as a double). */
function timeText(): string {
  const now = Date.now();
  if (now !== lastTime) {
    lastTime = now;
    lastTimeText = String(now);
  }
  return lastTimeText;
}

/** The largest count of tenths written from whole numbers: below it, both parts are small integers. */
const MAX_WHOLE_TENTHS = 0x3fffffff;

/**
 * A number as `JSON.stringify` writes it. A duration rounded to a tenth of a millisecond (every access-log
 * line's) is written from its whole part and its tenth, two small integers: the shortest text of a fraction
 * takes V8 a search of its digits.
 */
function tenthsText(value: number): string {
  const tenths = Math.round(value * 10);
  if (tenths / 10 !== value || tenths < 0 || tenths > MAX_WHOLE_TENTHS) return jsonNumber(value);
  const tenth = tenths % 10;
  const whole = (tenths - tenth) / 10;
  return tenth === 0 ? `${whole}` : `${whole}.${tenth}`;
}

/** What pino keeps on a logger: the stream it writes to and its bindings, already serialized. */
type PinoInternals = Record<symbol, unknown>;

/**
 * Writes an access-log line, exactly as `log.info(entry, message)` would, but built directly: it is
 * written for every request and every socket, and its fields are fixed scalars that need no
 * redaction or general serializer.
 */
export function logAccess(log: Logger, entry: AccessLogEntry, message: 'request' | 'websocket' = 'request'): void {
  if (!log.isLevelEnabled('info')) return;
  const internals = log as unknown as PinoInternals;
  const stream = internals[pino.symbols.streamSym] as { write(line: string): unknown; [WRITE_BATCHED]?: (line: string) => boolean };
  const bindings = internals[pino.symbols.chindingsSym] as string;
  const requestId = entry.req_id === undefined ? '' : `"req_id":"${jsonStringContent(entry.req_id)}",`;
  const line =
    `{"level":30,"time":${timeText()}${bindings},${requestId}"method":"${jsonStringContent(entry.method)}",` +
    `"path":"${jsonStringContent(entry.path)}","status":${entry.status},"duration_ms":${tenthsText(entry.duration_ms)},` +
    `"key_id":${entry.key_id === null ? 'null' : `"${jsonStringContent(entry.key_id)}"`},"ip":"${jsonStringContent(entry.ip)}","msg":"${message}"}\n`;
  const writeBatched = stream[WRITE_BATCHED];
  if (writeBatched) writeBatched(line);
  else stream.write(line);
}
