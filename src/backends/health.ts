// Health of one backend: asks ComfyUI for its queue every few seconds and says whether it is up, failing, or confirmed down.

/**
 * starting: it has not answered yet; up: its last check answered; unreachable: one or more checks
 * in a row failed, not yet enough to call it down; down: confirmed down (its failover has run).
 */
export type BackendState = 'starting' | 'up' | 'unreachable' | 'down';

export interface BackendHealthOptions {
  /** Asks the backend for its queue; resolves ComfyUI's queue_remaining (null when the answer has none), rejects when it does not answer or answers 5xx. */
  probe(): Promise<number | null>;
  /** Whether the backend's process is known to be gone (a child that exited): down at once, without waiting for checks. */
  processGone?(): boolean;
  /** Whether the backend's process is starting (a child that does not answer yet): `starting`, its failed checks not counted. */
  processStarting?(): boolean;
  /** Between checks. */
  intervalMs: number;
  /**
   * Failed checks in a row after which the backend is confirmed down, once they span as long as that
   * many timed checks would (checks asked for in between, by /readyz, do not make it sooner).
   */
  failuresToConfirm: number;
  /** Told of every change of state. */
  onChange(state: BackendState, previous: BackendState): void;
}

/** What `/readyz`, `/metrics` and the dashboard show of a backend's health. */
export interface HealthReport {
  state: BackendState;
  /** Unix seconds of the last change of state. */
  since: number;
  /** Why the last check failed; null after a good one. */
  lastError: string | null;
  /** ComfyUI's queue_remaining at the last good check (queued and running, every client's). */
  queueRemaining: number | null;
  /** Failed checks since it was first checked. */
  failedChecks: number;
}

export class BackendHealth {
  private readonly options: BackendHealthOptions;
  private state: BackendState = 'starting';
  private since = Date.now() / 1000;
  private lastError: string | null = null;
  private queueRemaining: number | null = null;
  private failuresInARow = 0;
  /** When the first of the failed checks in a row ended (ms), null after a good one. */
  private failingSince: number | null = null;
  private failedChecks = 0;
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;

  constructor(options: BackendHealthOptions) {
    this.options = options;
  }

  /** Checks now, then every `intervalMs` until `stop`. */
  start(): void {
    const loop = (): void => {
      void this.check().finally(() => {
        if (this.timer !== null) this.timer = setTimeout(loop, this.options.intervalMs).unref();
      });
    };
    this.timer = setTimeout(loop, 0).unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  get current(): BackendState {
    return this.state;
  }

  report(): HealthReport {
    return { state: this.state, since: this.since, lastError: this.lastError, queueRemaining: this.queueRemaining, failedChecks: this.failedChecks };
  }

  /** Runs one check (one at a time) and updates the state. */
  check(): Promise<void> {
    this.checking ??= this.runCheck().finally(() => {
      this.checking = null;
    });
    return this.checking;
  }

  /** The backend's process is gone (a child exited): it is down now. */
  processExited(reason: string): void {
    this.lastError = reason;
    this.queueRemaining = null;
    this.set('down');
  }

  private async runCheck(): Promise<void> {
    if (this.options.processGone?.()) {
      if (this.state !== 'down') this.processExited('its process exited');
      return;
    }
    if (this.options.processStarting?.()) {
      this.failuresInARow = 0;
      this.failingSince = null;
      this.set('starting');
      return;
    }
    try {
      this.queueRemaining = await this.options.probe();
      this.lastError = null;
      this.failuresInARow = 0;
      this.failingSince = null;
      this.set('up');
    } catch (error) {
      this.failedChecks += 1;
      this.failuresInARow += 1;
      this.failingSince ??= Date.now();
      this.lastError = (error as Error).message;
      this.queueRemaining = null;
      const { failuresToConfirm, intervalMs } = this.options;
      if (this.failuresInARow >= failuresToConfirm && Date.now() - this.failingSince >= (failuresToConfirm - 1) * intervalMs) this.set('down');
      else if (this.state === 'up') this.set('unreachable');
    }
  }

  private set(state: BackendState): void {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.since = Date.now() / 1000;
    this.options.onChange(state, previous);
  }
}
