// What a contract suite needs from an adapter: a way to open stores on shared data and to empty that data.

import { afterEach, beforeEach } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';

/** How an adapter's test file hands its stores to a contract suite. */
export interface StoreHarness<S> {
  /**
   * Opens a store on the backend's current data. Each call is another process (or replica) on the same
   * data: a store opened after another closed sees what it wrote.
   */
  open(): Promise<S>;
  /** Empties the backend's data; called before each test, with no store open. */
  reset(): Promise<void>;
  /** Closes a store as a stopping process would (default: `close()`). */
  close?(store: S): Promise<void>;
  /**
   * Whether a change made through one open store reaches another open store on the same data (and how
   * soon), or why not (the reason is printed when the test is skipped).
   */
  sharedChanges: { withinMs: number } | { skip: string };
}

/** A contract suite's argument: a harness, or the reason the backend cannot be tested here (printed, never silent). */
export type HarnessOrSkip<S> = StoreHarness<S> | { skip: string };

export function isSkipped<S>(harness: HarnessOrSkip<S>): harness is { skip: string } {
  return 'skip' in harness;
}

/**
 * Wires the per-test lifecycle: empty data before each test, every opened store closed after it.
 * Returns `open` (another store on the data) and `reopen` (close all, then open one: a restart).
 */
export function lifecycle<S extends { close(): Promise<void> }>(
  harness: StoreHarness<S>,
): { open(): Promise<S>; reopen(): Promise<S>; closeAll(): Promise<void> } {
  const opened: S[] = [];
  const closeAll = async (): Promise<void> => {
    await Promise.all(opened.splice(0).map((store) => (harness.close ? harness.close(store) : store.close())));
  };
  beforeEach(async () => {
    await harness.reset();
  });
  afterEach(closeAll);
  const open = async (): Promise<S> => {
    const store = await harness.open();
    opened.push(store);
    return store;
  };
  return {
    open,
    closeAll,
    async reopen() {
      await closeAll();
      return open();
    },
  };
}

/** Resolves once `condition` holds, or fails after `timeoutMs` naming what it waited for. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
  return Date.now() - started;
}
