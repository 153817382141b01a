// Bounds the ownership stores: the oldest prompt and clientId claims are forgotten once too many are held.

/**
 * Prompt claims and clientId claims kept, each: ten times the 10,000 entries ComfyUI's history holds,
 * so a forgotten prompt is long gone from ComfyUI too. File claims and ComfyUI users are always kept.
 */
export const CLAIMS_KEPT = 100_000;

/** The kinds whose oldest claims are forgotten. */
const BOUNDED_KINDS: ReadonlySet<string> = new Set(['prompt', 'client']);

/**
 * The claims of the bounded kinds in the order they were made. Once more than `kept` plus a tenth are
 * held, `overflow` names the oldest down to `kept`, so forgetting happens in batches, not on every claim.
 */
export class ClaimOrder {
  private readonly byKind = new Map<string, Set<string>>();
  private readonly kept: number;
  private readonly batch: number;

  constructor(kept: number = CLAIMS_KEPT) {
    this.kept = kept;
    this.batch = Math.ceil(kept / 10);
  }

  /** Notes a new claim (a kind that is not bounded is ignored). */
  added(kind: string, id: string): void {
    if (!BOUNDED_KINDS.has(kind)) return;
    let ids = this.byKind.get(kind);
    if (!ids) this.byKind.set(kind, (ids = new Set()));
    ids.add(id);
  }

  /** Notes a claim that is gone. */
  removed(kind: string, id: string): void {
    this.byKind.get(kind)?.delete(id);
  }

  /** The oldest ids of `kind` to forget, oldest first: none until the batch is full. */
  overflow(kind: string): string[] {
    const ids = this.byKind.get(kind);
    if (!ids || ids.size <= this.kept + this.batch) return [];
    const excess = ids.size - this.kept;
    const oldest: string[] = [];
    for (const id of ids) {
      if (oldest.length === excess) break;
      oldest.push(id);
    }
    return oldest;
  }
}
