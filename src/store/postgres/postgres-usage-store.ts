// The PostgreSQL usage store: records and per-day and per-hour totals, written in batches, buffered while the database is away.

import { randomBytes } from 'node:crypto';
import {
  addToHourly,
  addToTotals,
  BUCKET_SIZE,
  emptyBucket,
  HOURLY_KEPT_SECONDS,
  type CountedEntry,
  type DayBucket,
  type HourlyByKey,
  type TotalsByKey,
} from '../file/usage-file.js';
import { DAILY_TOTALS_FIELDS, type UsageRecord, type UsageStore } from '../types.js';
import { UsageReports } from '../usage-reports.js';
import { SILENT_LOG, type PostgresDatabase, type StoreLog } from './database.js';
import { RELOAD_OVERLAP_SECONDS } from './replica.js';

export interface PostgresUsageStoreOptions {
  database: PostgresDatabase;
  /** Raw records older than this are deleted; daily totals are kept for good. */
  retentionDays: number;
  /** How often buffered records are written (default 200 ms). */
  flushIntervalMs?: number;
  /** How often the totals written by other replicas are read (default 5 s). */
  refreshIntervalMs?: number;
  /** Records kept in memory while the database cannot be written (default 100,000); past it, raw records are dropped but still counted in the totals. */
  maxBufferedRecords?: number;
  /** Records per write (default 5,000). */
  batchSize?: number;
  /** Only reads the reports' totals once, at open (the CLI): not the raw records, no timers, no writes, no retention deletes. */
  readOnly?: boolean;
  /**
   * With `readOnly`: the totals of these keys alone are read, by key_id, and of their days only those
   * from `fromDay` on when given (a command's report of one key, or of one page of keys), so the read
   * does not grow with the number of keys in the tables.
   */
  only?: { keyIds: readonly string[]; fromDay?: string };
  log?: StoreLog;
}

/** One write: its id makes a retry after a lost commit acknowledgement harmless. */
interface Batch {
  id: string;
  records: UsageRecord[];
  daily: TotalsByKey;
  hourly: HourlyByKey;
}

export const DEFAULT_MAX_BUFFERED_RECORDS = 100_000;

/** The columns of `usage_daily` that hold a day bucket, in the bucket's order (see DayBucket). */
export const DAILY_COLUMNS = DAILY_TOTALS_FIELDS;

/** The SQL type of each of DAILY_COLUMNS: seconds are float8, counts bigint. */
export const DAILY_COLUMN_TYPES: readonly string[] = DAILY_COLUMNS.map((column) =>
  column === 'duration' || column === 'execution_seconds' ? 'float8' : 'bigint',
);
const MAINTENANCE_INTERVAL_MS = 3600_000;
const CLOSE_DEADLINE_MS = 5000;

/**
 * Usage in `usage_records`, `usage_daily` and `usage_hourly`. Recording is synchronous: it adds to the
 * in-memory totals (what reports read) and to a buffer, written every `flushIntervalMs` in one
 * transaction per batch with the totals it adds. The totals other replicas wrote are read every
 * `refreshIntervalMs`. While the database is unreachable the buffer grows up to `maxBufferedRecords`
 * and is written when it is back, none lost; past the bound, raw records are dropped (and logged) while
 * the daily totals still count them.
 */
export class PostgresUsageStore extends UsageReports implements UsageStore {
  private readonly database: PostgresDatabase;
  private readonly retentionDays: number;
  private readonly flushIntervalMs: number;
  private readonly refreshIntervalMs: number;
  private readonly maxBuffered: number;
  private readonly batchSize: number;
  private readonly readOnly: boolean;
  private readonly only: PostgresUsageStoreOptions['only'];
  private readonly log: StoreLog;
  // The reports (UsageReports) read the database's totals as last read, plus what this replica added since.
  /** Additions not yet handed to a batch. */
  private pendingDaily: TotalsByKey = {};
  private pendingHourly: HourlyByKey = {};
  private buffer: UsageRecord[] = [];
  private inFlight: Batch | null = null;
  private dropped = 0;
  private writeError: Error | null = null;
  private watermark = 0;
  private chain: Promise<void> = Promise.resolve();
  private busy = false;
  private timers: NodeJS.Timeout[] = [];

  constructor(options: PostgresUsageStoreOptions) {
    super();
    this.database = options.database;
    this.retentionDays = options.retentionDays;
    this.flushIntervalMs = options.flushIntervalMs ?? 200;
    this.refreshIntervalMs = options.refreshIntervalMs ?? 5000;
    this.maxBuffered = options.maxBufferedRecords ?? DEFAULT_MAX_BUFFERED_RECORDS;
    this.batchSize = options.batchSize ?? 5000;
    this.readOnly = options.readOnly ?? false;
    this.only = options.only;
    this.log = options.log ?? SILENT_LOG;
  }

  async open(): Promise<void> {
    this.database.retain();
    try {
      await this.refreshNow(0);
      // The reports read only the totals: the last hour's requests, every key's, are read for the rate limits of a gateway.
      if (!this.readOnly) await this.loadRecentRequests();
    } catch (error) {
      await this.database.release();
      throw error;
    }
    if (this.readOnly) return;
    this.timers.push(setInterval(() => this.tick(() => this.writeDue()), this.flushIntervalMs).unref());
    this.timers.push(setInterval(() => this.tick(() => this.refreshNow(Math.max(0, this.watermark - RELOAD_OVERLAP_SECONDS))), this.refreshIntervalMs).unref());
    this.timers.push(setInterval(() => void this.maintain().catch(() => undefined), MAINTENANCE_INTERVAL_MS).unref());
    void this.maintain().catch(() => undefined);
  }

  /** The start times of every key's requests of the last hour, from which a gateway's rate-limit windows start. */
  private async loadRecentRequests(): Promise<void> {
    const since = Date.now() / 1000 - 3600;
    const { rows } = await this.database.query<{ key_id: string; ts: number }>('SELECT key_id, ts FROM usage_records WHERE ts >= $1 ORDER BY ts', [since]);
    this.recentAtOpen = new Map();
    for (const row of rows) {
      let times = this.recentAtOpen.get(row.key_id);
      if (!times) this.recentAtOpen.set(row.key_id, (times = []));
      times.push(row.ts);
    }
  }

  record(record: UsageRecord): void {
    this.countEntry(record);
    addToTotals(this.pendingDaily, record);
    addToHourly(this.pendingHourly, record);
    if (this.buffer.length >= this.maxBuffered) {
      if (this.dropped === 0) {
        this.log.warn(
          { event: 'usage_buffer_full', max_buffered: this.maxBuffered },
          'usage buffer full while PostgreSQL is unreachable; raw records dropped (daily totals still count them)',
        );
      }
      this.dropped += 1;
      return;
    }
    this.buffer.push(record);
  }

  recordRateLimited(keyId: string, at: number): void {
    this.countInDay({ rate_limited: true, key_id: keyId, timestamp: at });
  }

  recordPromptAdmitted(keyId: string, at: number): void {
    this.countInDay({ prompt_admitted: true, key_id: keyId, timestamp: at });
  }

  recordJobRun(keyId: string, at: number, executionSeconds: number, outputs: number): void {
    this.countInDay({ job_run: true, key_id: keyId, timestamp: at, execution_seconds: executionSeconds, outputs });
  }

  /** Counts an entry that only adds to its day's totals (written with the next batch's totals). */
  private countInDay(entry: Exclude<CountedEntry, UsageRecord>): void {
    this.countEntry(entry);
    addToTotals(this.pendingDaily, entry);
  }

  /** Start times of one key's requests recorded since `since` (Unix seconds), every replica's: one indexed read. */
  async recordedRequestTimes(keyId: string, since: number): Promise<number[]> {
    const { rows } = await this.database.query<{ ts: number }>('SELECT ts FROM usage_records WHERE key_id = $1 AND ts > $2 ORDER BY ts', [keyId, since]);
    return rows.map((row) => row.ts);
  }

  async ensureCreated(): Promise<void> {
    // The tables exist once the schema is migrated.
  }

  /** Writes everything recorded so far. @throws the database error; nothing is lost, the next flush tries again. */
  flush(): Promise<void> {
    return this.serially(() => this.writePending());
  }

  /** Reads the totals other replicas wrote since the last refresh. */
  refresh(): Promise<void> {
    return this.serially(() => this.refreshNow(Math.max(0, this.watermark - RELOAD_OVERLAP_SECONDS)));
  }

  lastWriteError(): Error | null {
    return this.writeError;
  }

  /** Records waiting to be written (for the readiness check and tests). */
  buffered(): number {
    return this.buffer.length + (this.inFlight?.records.length ?? 0);
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    const deadline = Date.now() + CLOSE_DEADLINE_MS;
    while (!this.readOnly) {
      try {
        await this.flush();
        break;
      } catch {
        if (Date.now() > deadline) {
          this.log.warn({ event: 'usage_lost_on_close', records: this.buffered() }, 'PostgreSQL unreachable at shutdown; buffered usage records not written');
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    await this.database.release();
  }

  /** Runs a timer's task unless the previous one is still running. */
  private tick(task: () => Promise<void>): void {
    if (this.busy) return;
    this.busy = true;
    this.serially(task)
      .catch(() => undefined)
      .finally(() => {
        this.busy = false;
      });
  }

  private serially(task: () => Promise<void>): Promise<void> {
    const run = this.chain.then(task);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private hasPending(): boolean {
    return this.buffer.length > 0 || Object.keys(this.pendingDaily).length > 0 || Object.keys(this.pendingHourly).length > 0;
  }

  private async writePending(): Promise<void> {
    while (this.inFlight || this.hasPending()) await this.writeOneBatch();
  }

  /**
   * A tick's write: one batch, and more only while a full batch waits. Writing again at once whenever
   * records came meanwhile would make a busy replica write a transaction after every commit (six round trips
   * each), where one per tick holds the same records.
   */
  private async writeDue(): Promise<void> {
    do await this.writeOneBatch();
    while (this.buffer.length >= this.batchSize);
  }

  /** Writes the batch in flight (a failed one again), or else the next batch of what waits, if anything waits. */
  private async writeOneBatch(): Promise<void> {
    if (!this.inFlight && !this.hasPending()) return;
    if (!this.inFlight) {
      this.inFlight = {
        id: randomBytes(12).toString('base64url'),
        records: this.buffer.splice(0, this.batchSize),
        daily: this.pendingDaily,
        hourly: this.pendingHourly,
      };
      this.pendingDaily = {};
      this.pendingHourly = {};
    }
    try {
      await this.writeBatch(this.inFlight);
    } catch (error) {
      this.writeError = error as Error;
      throw error;
    }
    this.inFlight = null;
    if (this.writeError) {
      this.writeError = null;
      this.log.info({ event: 'usage_writes_resumed', buffered: this.buffered(), dropped: this.dropped }, 'usage records are written to PostgreSQL again');
      this.dropped = 0;
    }
  }

  private async writeBatch(batch: Batch): Promise<void> {
    const records = batch.records;
    const daily = flattenDaily(batch.daily);
    const hourly = flattenHourly(batch.hourly);
    await this.database.transaction(async (client) => {
      const first = await client.query('INSERT INTO usage_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1', [batch.id]);
      if (first.rowCount === 0) return; // This batch was committed before; its acknowledgement was lost.
      if (records.length > 0) {
        await client.query(
          `INSERT INTO usage_records (key_id, endpoint, ts, duration, success, method, status)
           SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::bool[], $6::text[], $7::int[])`,
          [
            records.map((r) => r.key_id),
            records.map((r) => r.endpoint),
            records.map((r) => r.timestamp),
            records.map((r) => (typeof r.duration === 'number' ? r.duration : 0)),
            records.map((r) => r.success),
            records.map((r) => r.metadata?.method ?? ''),
            records.map((r) => (Number.isInteger(r.metadata?.status) ? r.metadata.status : 0)),
          ],
        );
      }
      if (daily.keyIds.length > 0) {
        await client.query(
          `INSERT INTO usage_daily AS d (key_id, day, ${DAILY_COLUMNS.join(', ')})
           SELECT * FROM unnest($1::text[], $2::text[], ${DAILY_COLUMN_TYPES.map((type, i) => `$${i + 3}::${type}[]`).join(', ')})
           ON CONFLICT (key_id, day) DO UPDATE SET ${DAILY_COLUMNS.map((c) => `${c} = d.${c} + excluded.${c}`).join(', ')}, updated_at = clock_timestamp()`,
          [daily.keyIds, daily.days, ...DAILY_COLUMNS.map((_, i) => daily.column(i))],
        );
      }
      if (hourly.keyIds.length > 0) {
        await client.query(
          `INSERT INTO usage_hourly AS h (key_id, hour, requests) SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
           ON CONFLICT (key_id, hour) DO UPDATE SET requests = h.requests + excluded.requests, updated_at = clock_timestamp()`,
          [hourly.keyIds, hourly.hours, hourly.requests],
        );
      }
    });
  }

  /** Reads the totals changed since `since` and sets what reports show to them plus what is not yet written. */
  private async refreshNow(since: number): Promise<void> {
    // Each table's primary key starts with key_id: with `only`, the named keys' rows alone are visited.
    const only = this.only;
    const [dailyRows, hourlyRows] = await Promise.all([
      this.database.query<{ key_id: string; day: string; updated: number } & Record<(typeof DAILY_COLUMNS)[number], string | number>>(
        `SELECT key_id, day, ${DAILY_COLUMNS.join(', ')}, extract(epoch from updated_at)::float8 AS updated
         FROM usage_daily WHERE updated_at > to_timestamp($1)${only ? ' AND key_id = ANY($2::text[]) AND day >= $3' : ''}`,
        // '' comes before every day.
        [since, ...(only ? [only.keyIds, only.fromDay ?? ''] : [])],
      ),
      this.database.query<{ key_id: string; hour: number; requests: string; updated: number }>(
        `SELECT key_id, hour, requests, extract(epoch from updated_at)::float8 AS updated
         FROM usage_hourly WHERE updated_at > to_timestamp($1) AND hour >= $2${only ? ' AND key_id = ANY($3::text[])' : ''}`,
        [since, Math.floor((Date.now() / 1000 - HOURLY_KEPT_SECONDS) / 3600), ...(only ? [only.keyIds] : [])],
      ),
    ]);
    let newest = this.watermark;
    for (const row of dailyRows.rows) {
      // bigint columns arrive as strings, float8 ones as numbers.
      const bucket = emptyBucket();
      DAILY_COLUMNS.forEach((column, i) => (bucket[i] = Number(row[column])));
      for (const unwritten of [this.inFlight?.daily, this.pendingDaily]) {
        const extra = unwritten?.[row.key_id]?.[row.day];
        if (extra) for (let i = 0; i < BUCKET_SIZE; i += 1) bucket[i]! += extra[i]!;
      }
      this.setDayBucket(row.key_id, row.day, bucket);
      newest = Math.max(newest, row.updated);
    }
    for (const row of hourlyRows.rows) {
      const hour = String(row.hour);
      let count = Number(row.requests);
      for (const unwritten of [this.inFlight?.hourly, this.pendingHourly]) count += unwritten?.[row.key_id]?.[hour] ?? 0;
      this.setHourCount(row.key_id, hour, count);
      newest = Math.max(newest, row.updated);
    }
    this.dropHoursBefore(Date.now() / 1000 - HOURLY_KEPT_SECONDS);
    this.watermark = newest;
  }

  /** Deletes raw records past the retention, hourly counts past two days, and old batch ids. */
  private async maintain(): Promise<void> {
    const now = Date.now() / 1000;
    await this.database.query('DELETE FROM usage_records WHERE ts < $1', [now - this.retentionDays * 86_400]);
    await this.database.query('DELETE FROM usage_hourly WHERE hour < $1', [Math.floor((now - HOURLY_KEPT_SECONDS) / 3600)]);
    await this.database.query("DELETE FROM usage_batches WHERE committed_at < now() - interval '2 days'");
  }
}

function flattenDaily(totals: TotalsByKey): { keyIds: string[]; days: string[]; column(i: number): number[] } {
  const keyIds: string[] = [];
  const days: string[] = [];
  const buckets: DayBucket[] = [];
  for (const [keyId, byDay] of Object.entries(totals)) {
    for (const [day, bucket] of Object.entries(byDay)) {
      keyIds.push(keyId);
      days.push(day);
      buckets.push(bucket);
    }
  }
  return { keyIds, days, column: (i) => buckets.map((b) => b[i]!) };
}

function flattenHourly(hourly: HourlyByKey): { keyIds: string[]; hours: number[]; requests: number[] } {
  const keyIds: string[] = [];
  const hours: number[] = [];
  const requests: number[] = [];
  for (const [keyId, byHour] of Object.entries(hourly)) {
    for (const [hour, count] of Object.entries(byHour)) {
      keyIds.push(keyId);
      hours.push(Number(hour));
      requests.push(count);
    }
  }
  return { keyIds, hours, requests };
}
