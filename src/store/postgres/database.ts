// One PostgreSQL database shared by the stores of a gateway: a connection pool, the schema migrations, and one LISTEN connection.

import pg from 'pg';
import type { Notification, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { redactUrl } from '../../config/load.js';
import { MIGRATIONS, MIGRATION_LOCK_ID, type Migration } from './migrations.js';

/** Where the stores write their few operational log lines (the gateway passes its pino logger). */
export interface StoreLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export const SILENT_LOG: StoreLog = { info: () => undefined, warn: () => undefined };

export interface PostgresDatabaseOptions {
  /** A `postgres://` URL. */
  url: string;
  log?: StoreLog;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** How long to wait for a connection before a query fails (default 2000 ms), so nothing hangs while the server is away. */
  connectTimeoutMs?: number;
  /** Longest a statement may run (default 10 s). */
  statementTimeoutMs?: number;
}

interface Subscriber {
  channel: string;
  onNotify(payload: string): void;
  /** Called after the LISTEN connection came back: notifications may have been missed meanwhile. */
  onResync(): void;
}

/** The name of each gateway's one LISTEN connection, by which the gateways connected to the database are counted. */
const LISTENER_NAME = 'comfy-gate-listen';
const LISTEN_RETRY_MIN_MS = 200;
const LISTEN_RETRY_MAX_MS = 2000;
/**
 * Rows a paged read hands over at once (`eachPage`): each page is taken into memory in one turn of the
 * event loop, a few milliseconds for this many rows.
 */
export const PAGE_ROWS = 1000;

/** The SQLSTATE classes and socket errors that mean "the server is not reachable", as opposed to a bad query. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  '57P01',
  '57P02',
  '57P03',
]);

/** True when `error` says the database could not be reached (rather than that a statement was wrong). */
export function isConnectionError(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  if (!e) return false;
  if (typeof e.code === 'string' && (CONNECTION_CODES.has(e.code) || e.code.startsWith('08'))) return true;
  const message = typeof e.message === 'string' ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED|Query read timeout/i.test(
    message,
  );
}

/**
 * A pool plus one dedicated LISTEN connection. `open` applies the pending migrations (each once, in a
 * transaction, under an advisory lock, so replicas starting together do not race) and starts listening.
 * The LISTEN connection reconnects by itself; subscribers are told to resynchronise when it does.
 * Stores share one database and each `retain`s it; the pool closes when the last one `release`s it.
 */
export class PostgresDatabase {
  readonly url: string;
  private readonly pool: pg.Pool;
  private readonly log: StoreLog;
  private readonly connectTimeoutMs: number;
  private readonly subscribers = new Set<Subscriber>();
  private listener: pg.Client | null = null;
  private listenerReady = false;
  private retryMs = LISTEN_RETRY_MIN_MS;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private users = 0;
  private listenerDownLogged = false;
  private listenChain: Promise<void> = Promise.resolve();

  private constructor(options: PostgresDatabaseOptions) {
    this.url = options.url;
    this.log = options.log ?? SILENT_LOG;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 2000;
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: this.connectTimeoutMs,
      statement_timeout: options.statementTimeoutMs ?? 10_000,
      query_timeout: (options.statementTimeoutMs ?? 10_000) + 2000,
      idle_in_transaction_session_timeout: 30_000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: 'comfy-gate',
    });
    // An idle connection that the server closed emits here; the next query gets a new one.
    this.pool.on('error', () => undefined);
  }

  /**
   * Connects, migrates the schema and starts listening.
   * @throws the connection or migration error (the pool is closed again).
   * @example const db = await PostgresDatabase.open({ url: 'postgres://postgres@127.0.0.1/comfy' });
   */
  static async open(options: PostgresDatabaseOptions): Promise<PostgresDatabase> {
    const database = new PostgresDatabase(options);
    try {
      await database.migrate();
      await database.connectListener();
    } catch (error) {
      await database.shutdown();
      throw error;
    }
    return database;
  }

  /** Applies the migrations not yet recorded in `schema_migrations`; resolves the versions it applied. */
  async migrate(migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
    const applied: number[] = [];
    await this.withClient(async (client) => {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
      try {
        await client.query(
          'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
        );
        const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((row) => row.version));
        for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
          if (done.has(migration.version)) continue;
          try {
            await client.query('BEGIN');
            await client.query(migration.sql);
            await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
            await client.query('COMMIT');
          } catch (error) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw new Error(`PostgreSQL migration ${migration.version} (${migration.name}) failed: ${(error as Error).message}`, { cause: error });
          }
          applied.push(migration.version);
        }
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]).catch(() => undefined);
      }
    });
    if (applied.length > 0) this.log.info({ event: 'schema_migrated', versions: applied }, 'PostgreSQL schema migrated');
    return applied;
  }

  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    return this.pool.query<R>(text, values);
  }

  /** How many gateway processes are connected to this database now (each holds one LISTEN connection). */
  async connectedGateways(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
      [LISTENER_NAME],
    );
    return rows[0]?.n ?? 0;
  }

  /** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<R>(work: (client: PoolClient) => Promise<R>): Promise<R> {
    return this.withClient(async (client) => {
      try {
        await client.query('BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        if (!isConnectionError(error)) await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    });
  }

  /**
   * Runs `work` on a client checked out of the pool. While it is held the pool does not listen for its
   * errors, so a connection the server ends between two queries (a restart, a forced drop) would be an
   * uncaught error: it is caught here, and such a client, like one whose query failed for its
   * connection, is thrown away instead of going back to the pool.
   */
  private async withClient<R>(work: (client: PoolClient) => Promise<R>): Promise<R> {
    const client = await this.pool.connect();
    let lost = false;
    const onError = (): void => {
      lost = true;
    };
    client.on('error', onError);
    try {
      return await work(client);
    } catch (error) {
      lost ||= isConnectionError(error);
      throw error;
    } finally {
      client.off('error', onError);
      client.release(lost);
    }
  }

  /**
   * Reads the rows of the query `text` a page of at most `pageRows` at a time, in order, through a
   * cursor in one transaction (one snapshot, as a single query would see), and calls `onPage` with each,
   * the next once the promise it returns, if any, resolves (the transaction stays open meanwhile).
   * The event loop turns between pages (each is a round trip; the next is asked for before a page is
   * handed over, so the server reads it meanwhile), so however many rows the query finds, neither the
   * loop nor memory holds more than two pages of them at once.
   */
  async eachPage<R extends QueryResultRow>(text: string, values: unknown[], onPage: (rows: R[]) => void | Promise<void>, pageRows = PAGE_ROWS): Promise<void> {
    await this.transaction(async (client) => {
      // Planned for reading every row, as the plain query would be, not for the first few (an index scan over a whole table).
      await client.query('SET LOCAL cursor_tuple_fraction = 1');
      await client.query(`DECLARE paged NO SCROLL CURSOR FOR ${text}`, values);
      const fetchPage = (): Promise<QueryResult<R>> => client.query<R>(`FETCH ${pageRows} FROM paged`);
      let next = fetchPage();
      for (;;) {
        const { rows } = await next;
        if (rows.length < pageRows) {
          if (rows.length > 0) await onPage(rows);
          return;
        }
        // The server reads the next page while this one is taken in.
        next = fetchPage();
        try {
          await onPage(rows);
        } catch (error) {
          await next.catch(() => undefined);
          throw error;
        }
      }
    });
  }

  /** Sends one notification on `channel` per payload, in this order (one statement, so one transaction); each must be shorter than 8000 bytes. */
  async notify(channel: string, payloads: readonly string[]): Promise<void> {
    await this.pool.query('SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload', [channel, payloads]);
  }

  /** Calls `onNotify` for every notification on `channel`; resolves a function that stops it. */
  async subscribe(channel: string, onNotify: (payload: string) => void, onResync: () => void): Promise<() => void> {
    const subscriber: Subscriber = { channel, onNotify, onResync };
    const first = ![...this.subscribers].some((s) => s.channel === channel);
    this.subscribers.add(subscriber);
    const listener = this.listener;
    if (first && listener && this.listenerReady) {
      // One statement at a time on the LISTEN connection.
      const listen = this.listenChain.then(() => listener.query(`LISTEN ${pg.escapeIdentifier(channel)}`));
      this.listenChain = listen.then(
        () => undefined,
        () => undefined,
      );
      await this.listenChain;
    }
    return () => {
      this.subscribers.delete(subscriber);
    };
  }

  /** True while the LISTEN connection is up. */
  get listening(): boolean {
    return this.listenerReady;
  }

  retain(): void {
    this.users += 1;
  }

  /** Closes the pool and the LISTEN connection now, whoever still uses them (for commands that run once). */
  close(): Promise<void> {
    return this.shutdown();
  }

  /** Closes the pool and the LISTEN connection once the last store using them let go. */
  async release(): Promise<void> {
    this.users -= 1;
    if (this.users <= 0) await this.shutdown();
  }

  private async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const listener = this.listener;
    this.listener = null;
    this.listenerReady = false;
    await Promise.all([listener?.end().catch(() => undefined), this.pool.end().catch(() => undefined)]);
  }

  private async connectListener(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.url,
      connectionTimeoutMillis: this.connectTimeoutMs,
      keepAlive: true,
      application_name: LISTENER_NAME,
    });
    client.on('error', () => this.listenerLost(client));
    client.on('end', () => this.listenerLost(client));
    client.on('notification', (message: Notification) => this.dispatch(message));
    try {
      await client.connect();
      for (const channel of new Set([...this.subscribers].map((s) => s.channel))) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.listenerReady = true;
    this.retryMs = LISTEN_RETRY_MIN_MS;
  }

  private dispatch(message: Notification): void {
    for (const subscriber of this.subscribers) {
      if (subscriber.channel === message.channel) subscriber.onNotify(message.payload ?? '');
    }
  }

  private listenerLost(client: pg.Client): void {
    if (this.listener !== client) return;
    this.listener = null;
    this.listenerReady = false;
    client.end().catch(() => undefined);
    if (this.closed || this.retryTimer) return;
    if (!this.listenerDownLogged) {
      this.listenerDownLogged = true;
      this.log.warn({ event: 'postgres_unreachable', url: redactUrl(this.url) }, 'PostgreSQL connection lost; serving from memory, retrying');
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connectListener().then(
        () => {
          if (this.closed) return;
          if (this.listenerDownLogged) {
            this.listenerDownLogged = false;
            this.log.info({ event: 'postgres_reachable', url: redactUrl(this.url) }, 'PostgreSQL reachable again; resynchronising');
          }
          for (const subscriber of this.subscribers) subscriber.onResync();
        },
        () => {
          if (this.closed) return;
          this.retryMs = Math.min(this.retryMs * 2, LISTEN_RETRY_MAX_MS);
          this.scheduleReconnect();
        },
      );
    }, this.retryMs).unref();
  }
}
