// The caps on image URL fetches in flight: the gateway's (--max-image-fetches) and each key's share of it; a fetch beyond either waits, first come first served.

/** The part of the gateway's places one key may hold at once: a quarter, rounded up (so at least 1). */
const KEY_SHARE_DIVISOR = 4;

/** A fetch waiting for a place: its key, and how it is given one. */
interface Waiting {
  keyId: string;
  grant(): void;
}

/**
 * Places for image URL fetches, shared by every run of the gateway: `max` at once, of which one key holds
 * at most `perKey`, so that a key whose URLs stall leaves the other places to the other keys. A fetch of a
 * key that holds its share waits for one of the key's own places, and takes no free place meanwhile.
 */
export class FetchPlaces {
  /** The places one key may hold at once. */
  readonly perKey: number;
  private taken = 0;
  /** The places each key that holds any holds now. */
  private readonly takenByKey = new Map<string, number>();
  /** The fetches waiting for a place, oldest first: `release` gives each freed place to the oldest one whose key is below its share. */
  private readonly waiting = new Set<Waiting>();

  constructor(private readonly max: number) {
    this.perKey = Math.ceil(max / KEY_SHARE_DIVISOR);
  }

  /** Fetches in flight now. */
  get inFlight(): number {
    return this.taken;
  }

  /** Fetches waiting for a place now. */
  get queued(): number {
    return this.waiting.size;
  }

  /**
   * Takes a place for a fetch of `keyId`: at once when one is free and the key holds less than its share,
   * else once one is let go. Resolves false, holding none, when `signal` aborts first; a place taken (true)
   * must be given back with `release`, under the same key.
   */
  take(keyId: string, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    if (this.mayTake(keyId)) {
      this.hold(keyId);
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const waiting: Waiting = {
        keyId,
        grant: () => {
          signal.removeEventListener('abort', givenUp);
          resolve(true);
        },
      };
      const givenUp = (): void => {
        this.waiting.delete(waiting);
        resolve(false);
      };
      this.waiting.add(waiting);
      signal.addEventListener('abort', givenUp, { once: true });
    });
  }

  /** Gives a place of `keyId` back: to the oldest waiting fetch that may take it, if any. */
  release(keyId: string): void {
    this.taken -= 1;
    const left = this.takenByKey.get(keyId)! - 1;
    if (left > 0) this.takenByKey.set(keyId, left);
    else this.takenByKey.delete(keyId);
    for (const waiting of this.waiting) {
      if (this.taken >= this.max) return;
      if (!this.mayTake(waiting.keyId)) continue;
      this.waiting.delete(waiting);
      this.hold(waiting.keyId);
      waiting.grant();
    }
  }

  /** Whether a fetch of `keyId` may take a place now: one is free, and the key holds less than its share. */
  private mayTake(keyId: string): boolean {
    return this.taken < this.max && (this.takenByKey.get(keyId) ?? 0) < this.perKey;
  }

  private hold(keyId: string): void {
    this.taken += 1;
    this.takenByKey.set(keyId, (this.takenByKey.get(keyId) ?? 0) + 1);
  }
}
