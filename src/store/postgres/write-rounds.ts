// Writes made in one turn of the event loop, sent to PostgreSQL together: one statement per group of alike writes, a round at a time.

import { isConnectionError } from './database.js';

export interface WriteRoundsOptions<W, R> {
  /** What a write concerns (a row's key): a round carries at most one write of each, so that they take effect in the order made. */
  keyOf(write: W): string;
  /** The statement that can carry a write: writes of the same group in a round go in one. */
  groupOf(write: W): string;
  /** Sends writes of one group (distinct keys) in one statement; resolves the result of each by its key (none: no result). */
  sendGroup(writes: W[]): Promise<Map<string, R>>;
  /** Sends one write in a statement of its own, when the statement of its group failed for another reason than the connection. */
  sendAlone(write: W): Promise<R | undefined>;
  /** Runs before each round (a store writes what it queued while the database was away); when it fails, the round fails with its error. */
  before?(): Promise<void>;
}

interface Waiting<W, R> {
  write: W;
  resolve(result: R | undefined): void;
  reject(error: unknown): void;
}

/**
 * A statement per write would be a round trip and a commit per write; a prompt that runs makes four
 * (docs/performance.md). Here the writes that wait are sent a round at a time: each group's in one
 * statement, the groups side by side on the pool. A write whose key already has one in the round waits
 * for the next. A statement that fails for another reason than the connection is not held against the
 * other writes it carried: each is sent again on its own.
 */
export class WriteRounds<W, R> {
  private waiting: Waiting<W, R>[] = [];
  /** Settles once no write waits or is being sent. */
  private sending: Promise<void> | null = null;

  constructor(private readonly options: WriteRoundsOptions<W, R>) {}

  /** Sends `write` with the others of its round; resolves its result. */
  write(write: W): Promise<R | undefined> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ write, resolve, reject });
      // The writes made in this turn of the event loop join the first round.
      this.sending ??= new Promise((next) => setImmediate(next)).then(() => this.sendAll());
    });
  }

  /** Resolves once every write made so far is settled. */
  async drained(): Promise<void> {
    while (this.sending) await this.sending;
  }

  private async sendAll(): Promise<void> {
    while (this.waiting.length > 0) {
      const round = this.nextRound();
      try {
        await this.options.before?.();
      } catch (error) {
        for (const waiting of round) waiting.reject(error);
        continue;
      }
      await Promise.all(this.groupsOf(round).map((group) => this.send(group)));
    }
    this.sending = null;
  }

  /** The first waiting write of each key, taken out in order; a key's later writes wait for the next round. */
  private nextRound(): Waiting<W, R>[] {
    const round: Waiting<W, R>[] = [];
    const later: Waiting<W, R>[] = [];
    const keys = new Set<string>();
    for (const waiting of this.waiting) {
      const key = this.options.keyOf(waiting.write);
      if (keys.has(key)) later.push(waiting);
      else {
        keys.add(key);
        round.push(waiting);
      }
    }
    this.waiting = later;
    return round;
  }

  private groupsOf(round: Waiting<W, R>[]): Waiting<W, R>[][] {
    const groups = new Map<string, Waiting<W, R>[]>();
    for (const waiting of round) {
      const name = this.options.groupOf(waiting.write);
      const group = groups.get(name);
      if (group) group.push(waiting);
      else groups.set(name, [waiting]);
    }
    return [...groups.values()];
  }

  /** Sends one group's statement and settles its writes. */
  private async send(group: Waiting<W, R>[]): Promise<void> {
    try {
      const results = await this.options.sendGroup(group.map((waiting) => waiting.write));
      for (const waiting of group) waiting.resolve(results.get(this.options.keyOf(waiting.write)));
    } catch (error) {
      if (group.length === 1 || isConnectionError(error)) {
        for (const waiting of group) waiting.reject(error);
        return;
      }
      await Promise.all(group.map((waiting) => this.sendAlone(waiting)));
    }
  }

  private async sendAlone({ write, resolve, reject }: Waiting<W, R>): Promise<void> {
    try {
      resolve(await this.options.sendAlone(write));
    } catch (error) {
      reject(error);
    }
  }
}
