// The gateway-wide cap on image URL fetches in flight: a fetch beyond it waits, first come first served, for a place.

/** Places for image URL fetches, shared by every run of the gateway. */
export class FetchPlaces {
  private taken = 0;
  /** The fetches waiting for a place, oldest first: each is given one by `release`. */
  private readonly waiting = new Set<() => void>();

  constructor(private readonly max: number) {}

  /** Fetches in flight now. */
  get inFlight(): number {
    return this.taken;
  }

  /** Fetches waiting for a place now. */
  get queued(): number {
    return this.waiting.size;
  }

  /**
   * Takes a place: at once when one is free, else once one is let go. Resolves false, holding none,
   * when `signal` aborts first; a place taken (true) must be given back with `release`.
   */
  take(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    if (this.taken < this.max) {
      this.taken += 1;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const granted = (): void => {
        signal.removeEventListener('abort', givenUp);
        resolve(true);
      };
      const givenUp = (): void => {
        this.waiting.delete(granted);
        resolve(false);
      };
      this.waiting.add(granted);
      signal.addEventListener('abort', givenUp, { once: true });
    });
  }

  /** Gives a place back: to the oldest waiting fetch, if any. */
  release(): void {
    const next = this.waiting.values().next();
    if (next.done) {
      this.taken -= 1;
      return;
    }
    this.waiting.delete(next.value);
    next.value();
  }
}
