// What clients of a gateway were told across SIGKILLs, and the checks a restarted gateway must pass against it.

import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Answer, KeepAliveClient } from '../fault/keep-alive-client.js';

/** The fields of a key the load changes. */
export interface KeyState {
  name: string;
  rate_limit: number;
  metadata: Record<string, unknown>;
}

interface TrackedKey {
  keyId: string;
  apiKey: string;
  /** The state of the last change answered 200. */
  confirmed: KeyState;
  /** A change sent but not answered when the gateway died: it may or may not be in effect. */
  pending: KeyState | null;
  /** Requests answered 200 well before a kill: each must be in the usage totals. */
  mustCount: number;
  /** How long before its kill each of those was answered, in ms: a shortfall names the youngest. */
  mustAges: number[];
  /** Every request sent with the key: the totals may not exceed it. */
  mayCount: number;
}

interface RequestRecord {
  key: TrackedKey;
  ok: boolean;
  endedAt: number | null;
}

/**
 * How long before a kill an answered request must have been flushed. docs/operating.md: usage is
 * fsynced every 200 ms, and a crash also loses the write under way; on a loaded 2-core host with the
 * key journal fsyncing beside it, that write plus the late timer has taken more than 50 ms.
 */
export const USAGE_FLUSH_BOUND_MS = 1000;

/**
 * The ledger of one crash run: keys whose creation was answered, the changes answered, and every
 * authenticated request with the time its answer arrived. `markKill` and `settleLife` settle what the
 * restarted gateway must show; `verify` checks it.
 */
export class Ledger {
  readonly keys = new Map<string, TrackedKey>();
  /** Creations still unanswered when a gateway died, over the whole run: each may have made a key. */
  unansweredCreations = 0;
  /** Keys listed after a restart that no answer told about. */
  readonly unannounced = new Set<string>();
  /** Everything that went wrong while the gateway was alive. */
  readonly violations: string[] = [];
  private requests: RequestRecord[] = [];
  private creationsInFlight = 0;
  private alive = true;
  private killedAt = 0;

  /** Starts a new gateway life. */
  beginLife(): void {
    this.alive = true;
  }

  /** Notes the moment of the kill: from now on a failed connection is expected. */
  markKill(at: number): void {
    this.alive = false;
    this.killedAt = at;
  }

  /** Once every request of the life has ended: what was unanswered stays undecided, answered requests become obligations. */
  settleLife(): void {
    this.unansweredCreations += this.creationsInFlight;
    for (const record of this.requests) {
      record.key.mayCount += 1;
      if (record.ok && record.endedAt !== null && record.endedAt <= this.killedAt - USAGE_FLUSH_BOUND_MS) {
        record.key.mustCount += 1;
        record.key.mustAges.push(this.killedAt - record.endedAt);
      }
    }
    this.requests = [];
    this.creationsInFlight = 0;
  }

  /** Something a live gateway should not have done; a failed connection is expected only after the kill. */
  private unexpected(what: string, result: Answer | Error): void {
    if (result instanceof Error && !this.alive) return;
    this.violations.push(`${what}: ${result instanceof Error ? result.message : `${result.status} ${result.text.slice(0, 200)}`}`);
  }

  randomKey(filter: (key: TrackedKey) => boolean = () => true): TrackedKey | undefined {
    const candidates = [...this.keys.values()].filter(filter);
    return candidates[Math.floor(Math.random() * candidates.length)];
  }

  /** POST /api/keys; the key is tracked once the answer is 200. */
  async create(client: KeepAliveClient, state: KeyState): Promise<void> {
    this.creationsInFlight += 1;
    const answer = await client.send('/api/keys', { method: 'POST', body: state }).catch((error: Error) => error);
    if (answer instanceof Error) return this.unexpected('key creation', answer);
    this.creationsInFlight -= 1;
    if (answer.status !== 200) return this.unexpected('key creation', answer);
    const { key_id, api_key } = answer.json<{ key_id: string; api_key: string }>();
    this.keys.set(key_id, { keyId: key_id, apiKey: api_key, confirmed: state, pending: null, mustCount: 0, mustAges: [], mayCount: 0 });
  }

  /** PATCH /api/keys/{id}; the change is confirmed once the answer is 200. */
  async update(client: KeepAliveClient, key: TrackedKey, state: KeyState): Promise<void> {
    key.pending = state;
    const answer = await client.send(`/api/keys/${key.keyId}`, { method: 'PATCH', body: state }).catch((error: Error) => error);
    if (answer instanceof Error) return this.unexpected('key update', answer);
    if (answer.status !== 200) {
      key.pending = null;
      return this.unexpected('key update', answer);
    }
    key.confirmed = state;
    key.pending = null;
  }

  /** An authenticated request that must succeed while the gateway lives. */
  async use(client: KeepAliveClient, key: TrackedKey, target = '/api/queue'): Promise<void> {
    const record: RequestRecord = { key, ok: false, endedAt: null };
    this.requests.push(record);
    const answer = await client.send(target, { headers: { 'x-api-key': key.apiKey } }).catch((error: Error) => error);
    if (answer instanceof Error || answer.status !== 200) return this.unexpected(`request with key ${key.keyId}`, answer);
    record.ok = true;
    record.endedAt = answer.endedAt;
  }

  /**
   * Checks a freshly restarted gateway against everything answered before the kill: the files parse,
   * every created key is listed with its last answered change (or the one left unanswered), no more
   * keys appeared than creations went unanswered, and each key's usage total lies between the requests
   * that must have been flushed and the requests sent. Adopts undecided changes as they turned out.
   */
  async verifyRestart(client: KeepAliveClient, userDirectory: string): Promise<void> {
    assertStoreFilesParse(userDirectory, this.keys.size > 0);
    const listing = (await client.send('/api/keys')).json<{ keys: Array<KeyState & { key_id: string }> }>().keys;
    const listed = new Map(listing.map((key) => [key.key_id, key]));
    for (const key of this.keys.values()) {
      const shown = listed.get(key.keyId);
      assert.ok(shown, `key ${key.keyId}, whose creation was answered 200, is missing after the restart`);
      const actual: KeyState = { name: shown.name, rate_limit: shown.rate_limit, metadata: shown.metadata };
      const allowed = key.pending ? [key.confirmed, key.pending] : [key.confirmed];
      assert.ok(
        allowed.some((state) => isDeepStrictEqual(state, actual)),
        `key ${key.keyId}: the answered change is not in effect; shown ${JSON.stringify(actual).slice(0, 200)}`,
      );
      key.confirmed = actual;
      key.pending = null;
    }
    for (const id of listed.keys()) if (!this.keys.has(id)) this.unannounced.add(id);
    assert.ok(
      this.unannounced.size <= this.unansweredCreations,
      `${this.unannounced.size} keys appeared that no creation answer announced, but only ${this.unansweredCreations} creations went unanswered`,
    );
    const usage = (await client.send('/api/usage/all?limit=1000')).json<{ usage_stats: Record<string, { total_requests: number }> }>().usage_stats;
    for (const key of this.keys.values()) {
      const total = usage[key.keyId]?.total_requests ?? 0;
      assert.ok(
        total >= key.mustCount,
        `key ${key.keyId}: ${key.mustCount} requests were answered 200 more than ${USAGE_FLUSH_BOUND_MS} ms before a kill, but usage shows ${total}; ` +
          `the youngest were answered ${youngest(key.mustAges, key.mustCount - total).join(', ')} ms before theirs`,
      );
      assert.ok(total <= key.mayCount, `key ${key.keyId}: usage shows ${total} requests, more than the ${key.mayCount} sent`);
    }
  }
}

/** The JSON files parse, and every complete journal line is JSON; with `mustExist`, both JSON files are there. */
export function assertStoreFilesParse(userDirectory: string, mustExist: boolean): void {
  for (const file of ['api_keys.json', 'api_usage.json']) {
    const path = join(userDirectory, file);
    if (!existsSync(path)) {
      assert.ok(!mustExist, `${file} is missing`);
      continue;
    }
    assert.doesNotThrow(() => JSON.parse(readFileSync(path, 'utf8')), `${file} does not parse`);
  }
  for (const file of ['api_keys.journal', 'api_usage.journal']) {
    const path = join(userDirectory, file);
    if (!existsSync(path)) continue;
    const text = readFileSync(path, 'utf8');
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    complete.split('\n').forEach((line, index) => {
      if (line.length > 0) assert.doesNotThrow(() => JSON.parse(line), `${file} line ${index + 1} is not JSON`);
    });
  }
}

/** The `count` smallest of `ages`, rounded, smallest first. */
function youngest(ages: number[], count: number): number[] {
  return [...ages]
    .sort((a, b) => a - b)
    .slice(0, count)
    .map((age) => Math.round(age));
}
