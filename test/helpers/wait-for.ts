// Polls a condition until it holds, for tests that wait on another process or socket.

import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves the first value of `check` (awaited) that is neither undefined nor false; rejects naming `what` after `timeoutMs`. */
export async function waitFor<T>(check: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}
