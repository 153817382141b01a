// Sliding-window counters in Redis, shared by every replica: one Lua script checks and counts, with a timeout, a circuit breaker and a fallback.

import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redactUrl } from '../../config/load.js';
import type { RedisFailureMode } from '../../config/schema.js';
import { GatewayError } from '../../errors.js';
import { MemoryCounterStore } from '../memory/memory-counter-store.js';
import type { StoreLog } from '../postgres/database.js';
import type { CounterStore, HitResult } from '../types.js';
import { CircuitBreaker, type BreakerState, type CircuitBreakerOptions } from './circuit-breaker.js';
import { answeredWithin, createRedisClient, withTimeout } from './redis-client.js';

export interface RedisCounterStoreOptions {
  /** A `redis://` or `rediss://` URL. */
  url: string;
  /** Prefix of every key written (default `comfy-gate:`). */
  keyPrefix?: string;
  /** How long one Redis call may take before it counts as failed (default 50 ms). */
  timeoutMs?: number;
  /** What `hit` does while Redis cannot be used (default `local`). */
  failure?: RedisFailureMode;
  windowSeconds?: number;
  breaker?: CircuitBreakerOptions;
  /** How often this replica announces itself, for the count of live replicas (default 2 s). */
  heartbeatMs?: number;
  /** A replica not heard of for this long is no longer counted (default 3 heartbeats). */
  replicaTtlMs?: number;
  log?: StoreLog;
  /** The shared database, which tells a replica about the other replicas while Redis is away. */
  shared?: SharedRecords;
}

/** What the database shared by the replicas tells about them while Redis cannot be used. */
export interface SharedRecords {
  /** Start times (Unix seconds) of one key's requests recorded since `since`, by every replica. */
  recordedRequestTimes(keyId: string, since: number): Promise<number[]>;
  /** How many gateway processes are connected to the database now. */
  connectedGateways(): Promise<number>;
}

/**
 * The atomic step, with the caller's clock: drop the entries at or before ARGV[2] (now − window), count,
 * add this request (score ARGV[1] = now, member ARGV[4]) if under the limit ARGV[3], refresh the expiry
 * (ARGV[5] ms), and report the oldest entry. Times travel as strings, so no precision is lost in Lua.
 * Returns {allowed (1/0), count after this request, oldest start time as a string}.
 */
const HIT_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then return {allowed, count, oldest[2]} end
return {allowed, count, ARGV[1]}
`;

/** Seeds a window from usage records, only if no replica has a window for that key yet. */
const RESTORE_SCRIPT = `
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i] .. ':restored:' .. i) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`;

/** This replica's heartbeat: one sorted set of replica ids scored by their last beat; returns how many are live. */
const HEARTBEAT_SCRIPT = `
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
return redis.call('ZCARD', KEYS[1])
`;

type ScriptedRedis = Redis & {
  cgHit(key: string, now: string, since: string, limit: string, member: string, ttlMs: string): Promise<[number, number, string]>;
  cgRestore(key: string, ttlMs: string, onlyIfAbsent: string, ...scores: string[]): Promise<number>;
  cgHeartbeat(key: string, nowMs: string, ttlMs: string, id: string): Promise<number>;
};

const RESTORE_CHUNK = 5000;
/** Longest a read of the shared database may take: a key's recorded requests (awaited by its first request of an outage) or the count of gateways. */
const SHARED_READ_TIMEOUT_MS = 200;

/** 503 while limits cannot be checked (`--redis-failure closed`). */
export const rateLimitUnavailable = (): GatewayError =>
  new GatewayError(503, 'RATE_LIMIT_UNAVAILABLE', 'Rate limits cannot be checked right now; retry in a moment.', { headers: { 'retry-after': '1' } });

/**
 * Counters in Redis: a sorted set of request start times per key, checked and counted by one Lua script,
 * so K replicas and any number of concurrent requests give a key with limit N exactly N successes per
 * window. Window semantics match MemoryCounterStore (an exact sliding window; resetAt = oldest + window)
 * and use the caller's clock, as it does; replicas' clocks must be synchronised (NTP).
 *
 * Every call has a timeout (`timeoutMs`) and goes through a circuit breaker, so a request never waits
 * on an unreachable Redis for longer than the timeout, and not at all while the circuit is open. While
 * Redis cannot be used, `failure` decides: `closed` refuses with 503 RATE_LIMIT_UNAVAILABLE, `open`
 * lets requests through uncounted, `local` counts in this process and allows each key limit ÷ live
 * replicas. Each change of state is logged once. It recovers by itself: after `openMs` one request
 * probes Redis again.
 *
 * `local` forgets nothing it can know: its window of a key holds the requests recorded in the last
 * window when the store opened, this replica's own requests (mirrored while Redis works), and, read on
 * the key's first request of each outage, every replica's requests recorded in the shared database.
 * A request is allowed while that window holds fewer than the share, so the replicas together admit at
 * most live × share (≤ the limit) per window, earlier use included, across restarts. The replicas
 * announce themselves in Redis; while it is away the count is the larger of the last one and the
 * gateways connected to the shared database, so a replica that starts during an outage knows it too.
 */
export class RedisCounterStore implements CounterStore {
  readonly replicaId = randomBytes(8).toString('hex');
  private readonly redis: ScriptedRedis;
  private readonly prefix: string;
  private readonly windowSeconds: number;
  private readonly failureMode: RedisFailureMode;
  private readonly breaker: CircuitBreaker;
  private readonly heartbeatMs: number;
  private readonly replicaTtlMs: number;
  private readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  private readonly url: string;
  private readonly timeoutMs: number;
  /** This replica's own requests (mirrored while Redis works), and its count while it does not. */
  private readonly local: MemoryCounterStore;
  private readonly shared: SharedRecords | undefined;
  /** The keys whose recorded requests were read (or are being read) in this outage. */
  private readonly seeded = new Map<string, Promise<void>>();
  private live = 1;
  private degraded = false;
  private sequence = 0;
  private heartbeatTimer: NodeJS.Timeout | null = null;

  private constructor(options: RedisCounterStoreOptions) {
    this.url = options.url;
    this.timeoutMs = options.timeoutMs ?? 50;
    this.prefix = options.keyPrefix ?? 'comfy-gate:';
    this.windowSeconds = options.windowSeconds ?? 3600;
    this.failureMode = options.failure ?? 'local';
    this.breaker = new CircuitBreaker(options.breaker);
    this.heartbeatMs = options.heartbeatMs ?? 2000;
    this.replicaTtlMs = options.replicaTtlMs ?? this.heartbeatMs * 3;
    this.log = options.log ?? { info: () => undefined, warn: () => undefined };
    this.local = new MemoryCounterStore(this.windowSeconds);
    this.shared = options.shared;
    this.redis = createRedisClient(options.url) as ScriptedRedis;
    this.redis.defineCommand('cgHit', { numberOfKeys: 1, lua: HIT_SCRIPT });
    this.redis.defineCommand('cgRestore', { numberOfKeys: 1, lua: RESTORE_SCRIPT });
    this.redis.defineCommand('cgHeartbeat', { numberOfKeys: 1, lua: HEARTBEAT_SCRIPT });
  }

  /**
   * Connects and starts the heartbeat. Redis being unreachable at start is not fatal: the store starts
   * in its failure mode (logged) and switches to Redis once it answers.
   * @example const counters = await RedisCounterStore.open({ url: 'redis://127.0.0.1:6379' });
   */
  static async open(options: RedisCounterStoreOptions): Promise<RedisCounterStore> {
    const store = new RedisCounterStore(options);
    try {
      await withTimeout(store.redis.connect(), 2000);
      await store.heartbeat();
    } catch (error) {
      await store.countGatewaysOfDatabase();
      store.enterDegraded(error);
    }
    store.heartbeatTimer = setInterval(() => void store.heartbeat().catch(() => store.countGatewaysOfDatabase()), store.heartbeatMs).unref();
    return store;
  }

  async hit(keyId: string, limit: number, now: number): Promise<HitResult> {
    if (this.breaker.allow()) {
      try {
        this.sequence += 1;
        const [allowed, count, oldest] = await answeredWithin(
          this.redis.cgHit(
            this.windowKey(keyId),
            String(now),
            String(now - this.windowSeconds),
            String(limit),
            `${this.replicaId}:${this.sequence}`,
            String(Math.ceil(this.windowSeconds * 1000)),
          ),
          this.timeoutMs,
        );
        this.breaker.success();
        if (this.degraded) this.leaveDegraded();
        if (allowed === 1) this.local.hit(keyId, Number.MAX_SAFE_INTEGER, now);
        return { allowed: allowed === 1, limit, remaining: Math.max(0, limit - count), resetAt: Number(oldest) + this.windowSeconds };
      } catch (error) {
        this.breaker.failure();
        this.enterDegraded(error);
      }
    } else if (!this.degraded) {
      this.enterDegraded(new Error('circuit open'));
    }
    return this.fallback(keyId, limit, now);
  }

  /**
   * Seeds this replica's own windows, for a later outage, from the usage records of the last window; and
   * the windows in Redis that no replica has yet (after Redis lost its data).
   */
  restore(times: Map<string, number[]>, now: number): void {
    this.local.restore(times, now);
    const since = now - this.windowSeconds;
    for (const [keyId, starts] of times) {
      const kept = starts.filter((t) => t > since);
      for (let i = 0; i < kept.length; i += RESTORE_CHUNK) {
        const chunk = kept.slice(i, i + RESTORE_CHUNK).map(String);
        void this.redis.cgRestore(this.windowKey(keyId), String(this.windowSeconds * 1000), i === 0 ? '1' : '0', ...chunk).catch(() => undefined);
      }
    }
  }

  /** The state, for tests and operators: whether Redis is in use, the breaker, and the live replicas counted. */
  status(): { degraded: boolean; breaker: BreakerState; liveReplicas: number; mode: RedisFailureMode } {
    return { degraded: this.degraded, breaker: this.breaker.state, liveReplicas: this.live, mode: this.failureMode };
  }

  async close(): Promise<void> {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    await withTimeout(this.redis.zrem(`${this.prefix}replicas`, this.replicaId), 200).catch(() => undefined);
    this.redis.disconnect();
    await this.local.close();
  }

  private windowKey(keyId: string): string {
    return `${this.prefix}window:${keyId}`;
  }

  private async heartbeat(): Promise<void> {
    const live = await answeredWithin(
      this.redis.cgHeartbeat(`${this.prefix}replicas`, String(Date.now()), String(this.replicaTtlMs), this.replicaId),
      this.timeoutMs,
    );
    this.live = Math.max(1, Number(live));
  }

  private async fallback(keyId: string, limit: number, now: number): Promise<HitResult> {
    if (this.failureMode === 'closed') throw rateLimitUnavailable();
    if (this.failureMode === 'open') return { allowed: true, limit, remaining: limit, resetAt: now + this.windowSeconds };
    await this.seedFromShared(keyId, now);
    const share = Math.max(1, Math.floor(limit / this.live));
    return this.local.hit(keyId, share, now);
  }

  /**
   * On a key's first request of an outage, adds every replica's recorded requests of the last window to
   * this replica's window of it (one indexed read, waited for at most SHARED_READ_TIMEOUT_MS; without
   * an answer, the window keeps what this replica knew).
   */
  private seedFromShared(keyId: string, now: number): Promise<void> | undefined {
    if (!this.shared) return undefined;
    let seeding = this.seeded.get(keyId);
    if (!seeding) {
      seeding = withTimeout(this.shared.recordedRequestTimes(keyId, now - this.windowSeconds), SHARED_READ_TIMEOUT_MS).then(
        (times) => this.local.merge(keyId, times, now),
        () => undefined,
      );
      this.seeded.set(keyId, seeding);
    }
    return seeding;
  }

  /** While Redis is away: counts the gateways connected to the shared database, never fewer than last counted. */
  private async countGatewaysOfDatabase(): Promise<void> {
    if (!this.shared) return;
    const connected = await withTimeout(this.shared.connectedGateways(), SHARED_READ_TIMEOUT_MS).catch(() => 0);
    this.live = Math.max(this.live, connected);
  }

  private enterDegraded(cause: unknown): void {
    if (this.degraded) return;
    this.degraded = true;
    this.seeded.clear();
    this.log.warn(
      {
        event: 'rate_limit_degraded',
        redis: redactUrl(this.url),
        mode: this.failureMode,
        live_replicas: this.live,
        reason: (cause as Error)?.message ?? String(cause),
      },
      this.failureMode === 'local'
        ? `Redis unreachable: each key gets its limit divided by ${this.live} live replica(s), counted here until Redis is back`
        : this.failureMode === 'open'
          ? 'Redis unreachable: requests pass uncounted until Redis is back'
          : 'Redis unreachable: keyed requests get 503 RATE_LIMIT_UNAVAILABLE until Redis is back',
    );
  }

  private leaveDegraded(): void {
    this.degraded = false;
    this.seeded.clear();
    this.log.info({ event: 'rate_limit_recovered', redis: redactUrl(this.url) }, 'Redis reachable again: rate limits are global again');
  }
}
