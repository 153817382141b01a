// Spreads a burst of work over turns of the event loop: so many pass in one turn, the rest in the next ones, in the order they asked.

export class TurnBudget {
  private readonly perTurn: number;
  /** Places taken since the last check phase. */
  private used = 0;
  private readonly waiting: Array<() => void> = [];
  private resetQueued = false;

  constructor(perTurn: number) {
    this.perTurn = perTurn;
  }

  /**
   * Resolves at once while this turn has room and no one waits, else in a later turn, after those that
   * asked before. A turn ends at the event loop's check phase (`setImmediate`), so between two groups
   * the loop has served whatever else was waiting (timers, sockets).
   */
  take(): Promise<void> {
    if (this.used < this.perTurn && this.waiting.length === 0) {
      this.used += 1;
      this.queueReset();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.queueReset();
    });
  }

  private queueReset(): void {
    if (this.resetQueued) return;
    this.resetQueued = true;
    setImmediate(() => {
      this.resetQueued = false;
      const released = this.waiting.splice(0, this.perTurn);
      this.used = released.length;
      for (const resolve of released) resolve();
      if (this.used > 0) this.queueReset();
    });
  }
}
