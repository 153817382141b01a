// Leases in Redis on each key's webhook attempts in flight, shared by the replicas: one Lua script checks and takes, with a timeout, a circuit breaker and a fallback.

import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redactUrl } from '../../config/load.js';
import type { StoreLog } from '../postgres/database.js';
import type { DeliveryLease, DeliveryLeases } from '../types.js';
import { CircuitBreaker, type CircuitBreakerOptions } from './circuit-breaker.js';
import { answeredWithin, createRedisClient, withTimeout } from './redis-client.js';

export interface RedisDeliveryLeasesOptions {
  /** A `redis://` or `rediss://` URL. */
  url: string;
  /** Prefix of every key written (default `comfy-gate:`). */
  keyPrefix?: string;
  /** How long one Redis call may take before it counts as failed (default 50 ms). */
  timeoutMs?: number;
  breaker?: CircuitBreakerOptions;
  /** The clock, in milliseconds (default Date.now). */
  now?: () => number;
  log?: StoreLog;
}

/**
 * The atomic step, with the caller's clock: drop the key's leases that expired at or before ARGV[1]
 * (now, ms), and if fewer than ARGV[2] (the cap) are left, add lease ARGV[4] expiring at ARGV[3] and
 * keep the set ARGV[5] ms (the lease's time to live). Returns 1 when the lease was taken, 0 when the cap is held.
 */
const TAKE_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`;

type ScriptedRedis = Redis & {
  cgTakeLease(key: string, nowMs: string, cap: string, expiresMs: string, id: string, ttlMs: string): Promise<number>;
};

/** What `take` gives while Redis cannot be used: the caller's own cap is then the only one. */
const UNSHARED_LEASE: DeliveryLease = { release: () => undefined };

/**
 * A sorted set per key, `<prefix>webhook-leases:<key_id>`, of lease ids scored by when each expires;
 * one Lua script drops the expired ones, counts and takes, so any number of replicas taking at once
 * hold at most the cap. A lease is removed when its attempt ends, or expires by itself (a crashed
 * replica's). Times are the caller's clock, as for the rate-limit windows (replicas' clocks in sync).
 *
 * Every call has a timeout and goes through a circuit breaker; while Redis cannot be used, `take`
 * resolves a lease that shares nothing, so each replica holds only its own cap and no delivery waits
 * on Redis. Entering and leaving that state are logged once each.
 */
export class RedisDeliveryLeases implements DeliveryLeases {
  private readonly replicaId = randomBytes(8).toString('hex');
  private readonly redis: ScriptedRedis;
  private readonly url: string;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly breaker: CircuitBreaker;
  private readonly now: () => number;
  private readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  private sequence = 0;
  private degraded = false;

  private constructor(options: RedisDeliveryLeasesOptions) {
    this.url = options.url;
    this.prefix = options.keyPrefix ?? 'comfy-gate:';
    this.timeoutMs = options.timeoutMs ?? 50;
    this.breaker = new CircuitBreaker(options.breaker);
    this.now = options.now ?? Date.now;
    this.log = options.log ?? { info: () => undefined, warn: () => undefined };
    this.redis = createRedisClient(options.url) as ScriptedRedis;
    this.redis.defineCommand('cgTakeLease', { numberOfKeys: 1, lua: TAKE_SCRIPT });
  }

  /**
   * Connects. Redis being unreachable at start is not fatal: each replica holds its own cap (logged)
   * until Redis answers.
   * @example const leases = await RedisDeliveryLeases.open({ url: 'redis://127.0.0.1:6379' });
   */
  static async open(options: RedisDeliveryLeasesOptions): Promise<RedisDeliveryLeases> {
    const leases = new RedisDeliveryLeases(options);
    await withTimeout(leases.redis.connect(), 2000).catch((error: unknown) => leases.enterDegraded(error));
    return leases;
  }

  async take(keyId: string, cap: number, ttlMs: number): Promise<DeliveryLease | null> {
    if (!this.breaker.allow()) {
      this.enterDegraded(new Error('circuit open'));
      return UNSHARED_LEASE;
    }
    const key = `${this.prefix}webhook-leases:${keyId}`;
    this.sequence += 1;
    const id = `${this.replicaId}:${this.sequence}`;
    const now = Math.floor(this.now());
    try {
      const taken = await answeredWithin(this.redis.cgTakeLease(key, String(now), String(cap), String(now + ttlMs), id, String(ttlMs)), this.timeoutMs);
      this.breaker.success();
      if (this.degraded) this.leaveDegraded();
      return taken === 1 ? { release: () => void answeredWithin(this.redis.zrem(key, id), this.timeoutMs).catch(() => undefined) } : null;
    } catch (error) {
      this.breaker.failure();
      this.enterDegraded(error);
      return UNSHARED_LEASE;
    }
  }

  close(): Promise<void> {
    this.redis.disconnect();
    return Promise.resolve();
  }

  private enterDegraded(cause: unknown): void {
    if (this.degraded) return;
    this.degraded = true;
    this.log.warn(
      { event: 'webhook_cap_degraded', redis: redactUrl(this.url), reason: (cause as Error)?.message ?? String(cause) },
      "Redis unreachable: each replica caps a key's webhook attempts in flight on its own until Redis is back",
    );
  }

  private leaveDegraded(): void {
    this.degraded = false;
    this.log.info(
      { event: 'webhook_cap_recovered', redis: redactUrl(this.url) },
      "Redis reachable again: a key's webhook attempts are capped across replicas again",
    );
  }
}
