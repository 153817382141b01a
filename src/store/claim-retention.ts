// Bounds the ownership stores by age and per key, never by pushing out other keys' claims: prompt and clientId claims are forgotten once old or when their own key holds too many, and new ones are refused when too many are held in all.

import { OrderedShardedMap } from './sharded-map.js';
import { GATEWAY_CLIENT_OWNER } from './types.js';

/** How long a prompt claim is kept, and how long an idle clientId claim is (each use renews it): 30 days. */
export const CLAIM_RETENTION_SECONDS = 30 * 86_400;
/** Prompt claims and clientId claims held at most, each; past this, new claims are refused until old ones expire. */
export const CLAIMS_CAP = 1_000_000;
/** Prompt claims always kept, however old: ComfyUI's history holds at most this many prompts. */
export const NEWEST_PROMPTS_KEPT = 10_000;
/**
 * Prompt claims and clientId claims one key holds at most, each: a tenth of the cap, so that one key
 * (a user key at its default rate fills the cap in about a week) cannot stall the others' new claims;
 * nine more keys must each hold as many before `CLAIMS_FULL`. A key past it forgets its own oldest
 * claims of that kind. That costs it little: a prompt claim 100,000 of the key's own prompts old is
 * long gone from ComfyUI's history (at most `NEWEST_PROMPTS_KEPT` prompts: a share is never below
 * that), and its job record, while kept, names its key; a forgotten clientId claim is made anew by
 * its key's next use, and if another key takes the clientId first it learns nothing, events being
 * routed by key and clientId.
 */
export const KEY_SHARE = 100_000;

/** Ids forgotten in one write, so a claim never waits for a large delete. */
const FORGET_BATCH = 1000;

export interface ClaimRetentionOptions {
  /** Seconds a claim is kept after its last use (default `CLAIM_RETENTION_SECONDS`). */
  retentionSeconds?: number;
  /** Claims held at most per kind (default `CLAIMS_CAP`). */
  cap?: number;
  /** Prompt claims always kept (default `NEWEST_PROMPTS_KEPT`). */
  newestPromptsKept?: number;
  /** Claims one key holds at most per kind, its own oldest forgotten past it (default `KEY_SHARE`; at least `newestPromptsKept`). */
  keyShare?: number;
}

/** A claim as a store holds it: its owner and the time of its last use (Unix seconds). */
export interface ClaimUse {
  key_id: string;
  at: number;
}

/** The kinds that expire; file claims and ComfyUI users are kept for good. */
const EXPIRING_KINDS: ReadonlySet<string> = new Set(['prompt', 'client']);

/** Ids by the time of their last use, oldest first: kept in order as noted, and sorted again when one was noted well before the newest. */
class UseOrder {
  private ids = new OrderedShardedMap<number>();
  private newestAt = -Infinity;
  /** False once a claim was noted well before the newest one (records loaded or announced out of order). */
  private inOrder = true;

  constructor(private readonly slackSeconds: number) {}

  get size(): number {
    return this.ids.size;
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  note(id: string, at: number): void {
    this.ids.delete(id);
    this.ids.set(id, at);
    if (at < this.newestAt - this.slackSeconds) this.inOrder = false;
    this.newestAt = Math.max(this.newestAt, at);
  }

  delete(id: string): void {
    this.ids.delete(id);
  }

  /** Ids with the time of their last use, oldest first. */
  oldestFirst(): Iterable<[string, number]> {
    if (!this.inOrder) {
      const byUse = [...this.ids].sort((a, b) => a[1] - b[1]);
      this.ids = new OrderedShardedMap();
      for (const [id, at] of byUse) this.ids.set(id, at);
      this.inOrder = true;
    }
    return this.ids;
  }
}

/** The claims of one kind (up to `cap` of them), in order of use: all of them, and each key's (an entry more per claim). */
interface KindClaims {
  all: UseOrder;
  byKey: Map<string, UseOrder>;
}

/**
 * The prompt and clientId claims held, oldest use first, in all and per key. A store notes every
 * claim, renewal and forgotten claim here, asks `expired` and `pastShare` which to forget in the same
 * write as a new claim, and refuses the claim when `isFull`.
 */
export class ClaimRetention {
  private readonly byKind = new Map<string, KindClaims>();
  readonly retentionSeconds: number;
  readonly cap: number;
  private readonly newestPromptsKept: number;
  private readonly keyShare: number;
  /** Renewals and order are kept to this precision: a thirtieth of the retention (a day for 30 days). */
  private readonly slackSeconds: number;

  constructor(options: ClaimRetentionOptions = {}) {
    this.retentionSeconds = options.retentionSeconds ?? CLAIM_RETENTION_SECONDS;
    this.cap = options.cap ?? CLAIMS_CAP;
    this.newestPromptsKept = options.newestPromptsKept ?? NEWEST_PROMPTS_KEPT;
    this.keyShare = options.keyShare ?? KEY_SHARE;
    // A key's oldest prompt past its share is then never among the newest ones kept.
    if (this.keyShare < this.newestPromptsKept) throw new Error('a key share below the newest prompts kept');
    this.slackSeconds = this.retentionSeconds / 30;
  }

  /** Notes a claim made, renewed, moved to another key or gone, as `before` and `after` it (a kind that does not expire is ignored). */
  changed(kind: string, id: string, before: ClaimUse | undefined, after: ClaimUse | undefined): void {
    if (!EXPIRING_KINDS.has(kind) || (before?.key_id === after?.key_id && before?.at === after?.at)) return;
    let claims = this.byKind.get(kind);
    if (!claims) this.byKind.set(kind, (claims = { all: new UseOrder(this.slackSeconds), byKey: new Map() }));
    if (before && before.key_id !== after?.key_id) {
      const own = claims.byKey.get(before.key_id);
      own?.delete(id);
      if (own?.size === 0) claims.byKey.delete(before.key_id);
    }
    if (!after) {
      claims.all.delete(id);
      return;
    }
    claims.all.note(id, after.at);
    let own = claims.byKey.get(after.key_id);
    if (!own) claims.byKey.set(after.key_id, (own = new UseOrder(this.slackSeconds)));
    own.note(id, after.at);
  }

  /** Whether its owner's use of a clientId claim last renewed at `at` renews it again now. */
  needsRenewal(kind: string, at: number, now: number): boolean {
    return kind === 'client' && now - at > this.slackSeconds;
  }

  /**
   * Ids of `kind` to forget at `now` (Unix seconds), oldest first, at most a batch: claims unused for
   * longer than the retention, except the newest prompts, which ComfyUI's history may still hold.
   */
  expired(kind: string, now: number): string[] {
    const claims = this.byKind.get(kind);
    if (!claims) return [];
    const cutoff = now - this.retentionSeconds;
    const candidates = Math.min(FORGET_BATCH, claims.all.size - (kind === 'prompt' ? this.newestPromptsKept : 0));
    const forgotten: string[] = [];
    for (const [id, at] of claims.all.oldestFirst()) {
      if (forgotten.length >= candidates || at >= cutoff) break;
      forgotten.push(id);
    }
    return forgotten;
  }

  /**
   * Ids of `kind` that `keyId` must forget, its own oldest first, at most a batch, so that a new claim
   * of its keeps it within its share, besides the `forgetting` ones about to go (the expired ones). The
   * gateway's own clientIds are never among them.
   */
  pastShare(kind: string, keyId: string, forgetting: readonly string[]): string[] {
    const own = keyId === GATEWAY_CLIENT_OWNER ? undefined : this.byKind.get(kind)?.byKey.get(keyId);
    if (!own || own.size < this.keyShare) return [];
    const going = new Set(forgetting.filter((id) => own.has(id)));
    let excess = own.size - going.size - this.keyShare + 1;
    const outgrown: string[] = [];
    for (const [id] of own.oldestFirst()) {
      if (excess <= 0 || outgrown.length >= FORGET_BATCH) break;
      if (going.has(id)) continue;
      outgrown.push(id);
      excess -= 1;
    }
    return outgrown;
  }

  /** Whether a new claim of `kind` must be refused: `cap` claims are held besides the `forgetting` ones about to go. */
  isFull(kind: string, forgetting: number): boolean {
    return EXPIRING_KINDS.has(kind) && (this.byKind.get(kind)?.all.size ?? 0) - forgetting >= this.cap;
  }
}
