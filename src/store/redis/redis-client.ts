// The gateway's Redis connection settings, and the timeouts every call to Redis goes through.

import { Redis } from 'ioredis';

/**
 * A Redis client that is connected by `connect()` and never queues a call while disconnected (it fails
 * at once, so a caller never waits for a reconnection), reconnecting in the background.
 */
export function createRedisClient(url: string): Redis {
  const redis = new Redis(url, {
    lazyConnect: true,
    // Fail at once while disconnected instead of queueing: a request never waits for a reconnection.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    retryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
    autoResubscribe: false,
  });
  // Connection errors surface as failed calls; without a listener ioredis would print each one.
  redis.on('error', () => undefined);
  return redis;
}

/**
 * Rejects when `promise` has not settled `ms` after the call. When the timer fires, the answer may
 * already be waiting on the socket while this process was busy (a burst of requests): the check is
 * made after the event loop's next poll for I/O, so only an answer Redis really did not send in time
 * counts as a timeout.
 */
export function answeredWithin<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (settled) return;
        settled = true;
        reject(new Error(`Redis did not answer within ${ms} ms`));
      });
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        reject(error);
      },
    );
  });
}

/** Rejects when `promise` has not settled within `ms` (the timer does not keep the process alive). */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref();
    }),
  ]);
}
