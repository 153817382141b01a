// Bounds the ownership stores by age, never by pushing out others: prompt and clientId claims are forgotten only once old, and new ones are refused when too many are held.

import { OrderedShardedMap } from './sharded-map.js';

/** How long a prompt claim is kept, and how long an idle clientId claim is (each use renews it): 30 days. */
export const CLAIM_RETENTION_SECONDS = 30 * 86_400;
/** Prompt claims and clientId claims held at most, each; past this, new claims are refused until old ones expire. */
export const CLAIMS_CAP = 1_000_000;
/** Prompt claims always kept, however old: ComfyUI's history holds at most this many prompts. */
export const NEWEST_PROMPTS_KEPT = 10_000;

/** Ids forgotten in one write, so a claim never waits for a large delete. */
const FORGET_BATCH = 1000;

export interface ClaimRetentionOptions {
  /** Seconds a claim is kept after its last use (default `CLAIM_RETENTION_SECONDS`). */
  retentionSeconds?: number;
  /** Claims held at most per kind (default `CLAIMS_CAP`). */
  cap?: number;
  /** Prompt claims always kept (default `NEWEST_PROMPTS_KEPT`). */
  newestPromptsKept?: number;
}

/** The kinds that expire; file claims and ComfyUI users are kept for good. */
const EXPIRING_KINDS: ReadonlySet<string> = new Set(['prompt', 'client']);

/** The claims of one kind: id → time of its last use, kept in order of that time (up to `cap` of them: spread over many Maps). */
interface KindClaims {
  ids: OrderedShardedMap<number>;
  newestAt: number;
  /** False once a claim was noted well before the newest one (records loaded or announced out of order). */
  inOrder: boolean;
}

/**
 * The prompt and clientId claims held, oldest use first, with the time of that use (Unix seconds).
 * A store notes every claim and renewal here, asks `expired` which to forget in the same write as a
 * new claim, and refuses the claim when `isFull`.
 */
export class ClaimRetention {
  private readonly byKind = new Map<string, KindClaims>();
  readonly retentionSeconds: number;
  readonly cap: number;
  private readonly newestPromptsKept: number;
  /** Renewals and order are kept to this precision: a thirtieth of the retention (a day for 30 days). */
  private readonly slackSeconds: number;

  constructor(options: ClaimRetentionOptions = {}) {
    this.retentionSeconds = options.retentionSeconds ?? CLAIM_RETENTION_SECONDS;
    this.cap = options.cap ?? CLAIMS_CAP;
    this.newestPromptsKept = options.newestPromptsKept ?? NEWEST_PROMPTS_KEPT;
    this.slackSeconds = this.retentionSeconds / 30;
  }

  /** Notes a claim or its renewal at `at` (a kind that does not expire is ignored). */
  noted(kind: string, id: string, at: number): void {
    if (!EXPIRING_KINDS.has(kind)) return;
    let claims = this.byKind.get(kind);
    if (!claims) this.byKind.set(kind, (claims = { ids: new OrderedShardedMap(), newestAt: at, inOrder: true }));
    claims.ids.delete(id);
    claims.ids.set(id, at);
    if (at < claims.newestAt - this.slackSeconds) claims.inOrder = false;
    claims.newestAt = Math.max(claims.newestAt, at);
  }

  /** Notes a claim that is gone. */
  removed(kind: string, id: string): void {
    this.byKind.get(kind)?.ids.delete(id);
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
    if (!claims.inOrder) {
      const byUse = [...claims.ids].sort((a, b) => a[1] - b[1]);
      claims.ids = new OrderedShardedMap();
      for (const [id, at] of byUse) claims.ids.set(id, at);
      claims.inOrder = true;
    }
    const cutoff = now - this.retentionSeconds;
    const candidates = Math.min(FORGET_BATCH, claims.ids.size - (kind === 'prompt' ? this.newestPromptsKept : 0));
    const forgotten: string[] = [];
    for (const [id, at] of claims.ids) {
      if (forgotten.length >= candidates || at >= cutoff) break;
      forgotten.push(id);
    }
    return forgotten;
  }

  /** Whether a new claim of `kind` must be refused: `cap` claims are held besides the `forgetting` ones about to go. */
  isFull(kind: string, forgetting: number): boolean {
    return EXPIRING_KINDS.has(kind) && (this.byKind.get(kind)?.ids.size ?? 0) - forgetting >= this.cap;
  }
}
