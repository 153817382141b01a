// Runs ComfyUI as the gateway's child: starts it, logs its output with a prefix, restarts it with capped exponential backoff when it exits, and stops it with the gateway.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { ChildCommand } from '../config/schema.js';
import type { Logger } from '../log/logger.js';

/**
 * starting: spawned, not answering HTTP yet; running: it has answered; restarting: it exited and
 * waits for its next start; stopped: the gateway stopped it.
 */
export type ChildState = 'starting' | 'running' | 'restarting' | 'stopped';

export interface ChildSupervisorOptions {
  /** What to run, with `{port}` already replaced. */
  command: ChildCommand;
  /** The prefix of its log lines, e.g. `comfyui` for `[comfyui] ...`. */
  name: string;
  log: Logger;
  /** Whether the child answers HTTP now; asked every half second while it starts. */
  answers: () => Promise<boolean>;
}

/** What `/readyz` and the logs say about the child. */
export interface ChildStatus {
  state: ChildState;
  /** The running process's id; null while it waits for a restart. */
  pid: number | null;
  /** How often it was started again after an exit. */
  restarts: number;
  /** How the last run ended (`exit code 1`, `signal SIGKILL`, `could not start: ...`); null before the first exit. */
  lastExit: string | null;
  /** When it restarts (Unix ms), while restarting. */
  restartAt: number | null;
}

/** The wait before the first restart; it doubles with each exit, up to `MAX_RESTART_DELAY_MS`. */
const RESTART_DELAY_MS = 1000;
const MAX_RESTART_DELAY_MS = 60_000;
/** A child that ran at least this long before it exited is restarted after `RESTART_DELAY_MS` again. */
const STABLE_AFTER_MS = 60_000;
/** How long `stop` waits after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 10_000;
/** Between checks of whether a starting child answers. */
const POLL_INTERVAL_MS = 500;
/** Longest child output line logged whole; the rest of a longer one is cut. */
const MAX_LINE_CHARACTERS = 8192;

/**
 * Keeps one child process running. The child gets its own process group, so a Ctrl-C at the
 * terminal reaches only the gateway, and signals go to the whole group (a child's own children
 * included). Its environment is the gateway's without the COMFY_GATE_* variables, which can hold
 * database and Redis passwords. If the gateway exits without `stop` (an error at start-up, a second
 * signal), the group gets SIGKILL on the way out.
 */
export class ChildSupervisor {
  private readonly options: ChildSupervisorOptions;
  private readonly log: Logger;
  private process: ChildProcess | null = null;
  private state: ChildState = 'stopped';
  private startedAt = 0;
  private restarts = 0;
  private lastExit: string | null = null;
  private restartAt: number | null = null;
  private nextDelayMs = RESTART_DELAY_MS;
  /** Whether a start ever succeeded: until then a failure is `start`'s to report, not a reason to retry. */
  private everStarted = false;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly killOnExit = (): void => {
    if (this.process && this.isAlive(this.process)) this.signal(this.process, 'SIGKILL');
  };

  constructor(options: ChildSupervisorOptions) {
    this.options = options;
    this.log = options.log.child({ child: options.name });
  }

  /**
   * Starts the child. Resolves once the process runs (not once it answers; see `status`).
   * @throws when the command cannot be started at all (not found, not executable).
   */
  async start(): Promise<void> {
    process.on('exit', this.killOnExit);
    const child = this.spawnChild();
    try {
      await once(child, 'spawn');
    } catch (error) {
      process.off('exit', this.killOnExit);
      this.state = 'stopped';
      throw new Error(`the command after -- could not be started: ${(error as Error).message}`, { cause: error });
    }
  }

  /** The child's state now. */
  status(): ChildStatus {
    const pid = this.state === 'starting' || this.state === 'running' ? (this.process?.pid ?? null) : null;
    return { state: this.state, pid, restarts: this.restarts, lastExit: this.lastExit, restartAt: this.restartAt };
  }

  /** One line for `/readyz`: `running (pid 4242)`, `starting (pid 4242)`, `restarting in 2 s (exit code 1)` or `stopped`. */
  describe(): string {
    const { state, pid, lastExit, restartAt } = this.status();
    if (state === 'restarting') return `restarting in ${Math.max(0, Math.ceil(((restartAt ?? 0) - Date.now()) / 1000))} s (${lastExit})`;
    if (state === 'stopped') return 'stopped';
    const restarts = this.restarts === 1 ? '1 restart' : `${this.restarts} restarts`;
    return `${state} (pid ${pid}${this.restarts > 0 ? `, ${restarts}, last: ${lastExit}` : ''})`;
  }

  /** Stops the child: SIGTERM, then SIGKILL after the grace period; no restart follows. Resolves once its output is read to the end. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.clearTimers();
    const child = this.process;
    if (child && this.isAlive(child)) {
      const closed = once(child, 'close');
      this.log.info({ pid: child.pid }, `[${this.options.name}] stopping (SIGTERM)`);
      this.signal(child, 'SIGTERM');
      const killer = setTimeout(() => {
        this.log.warn({ pid: child.pid }, `[${this.options.name}] did not stop within ${STOP_GRACE_MS} ms: SIGKILL`);
        this.signal(child, 'SIGKILL');
      }, STOP_GRACE_MS);
      await closed;
      clearTimeout(killer);
    }
    this.state = 'stopped';
    process.off('exit', this.killOnExit);
  }

  private spawnChild(): ChildProcess {
    const { command, args } = this.options.command;
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('COMFY_GATE_')));
    const child = spawn(command, args, { detached: true, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = child;
    this.state = 'starting';
    this.startedAt = Date.now();
    this.restartAt = null;
    let ended = false;
    const end = (how: string): void => {
      if (ended) return;
      ended = true;
      this.exited(child, how);
    };
    child.once('spawn', () => {
      this.everStarted = true;
      this.log.info({ event: 'child_started', pid: child.pid, command, args }, `[${this.options.name}] started: pid ${child.pid}`);
      this.pipeLines(child.stdout!, 'stdout', child.pid!);
      this.pipeLines(child.stderr!, 'stderr', child.pid!);
      this.pollUntilAnswering(child);
    });
    child.once('error', (error) => {
      // Without a pid it never ran (no `exit` follows); with one, a failed kill or pipe, which `exit` reports.
      if (child.pid === undefined) end(`could not start: ${error.message}`);
    });
    child.once('exit', (code, signal) => end(code !== null ? `exit code ${code}` : `signal ${signal}`));
    return child;
  }

  /** Logs each line of one output stream as `[name] line`. */
  private pipeLines(stream: Readable, name: 'stdout' | 'stderr', pid: number): void {
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    lines.on('line', (line) => {
      const text = line.length > MAX_LINE_CHARACTERS ? `${line.slice(0, MAX_LINE_CHARACTERS)}…` : line;
      this.log.info({ pid, stream: name }, `[${this.options.name}] ${text}`);
    });
  }

  /** Asks whether the child answers until it does (then it is `running`), it exits, or the supervisor stops. */
  private pollUntilAnswering(child: ChildProcess): void {
    const current = (): boolean => this.process === child && this.state === 'starting' && !this.stopping;
    const ask = (): void => {
      this.pollTimer = null;
      void this.options.answers().then(
        (answered) => {
          if (!current()) return;
          if (!answered) {
            this.pollTimer = setTimeout(ask, POLL_INTERVAL_MS).unref();
            return;
          }
          this.state = 'running';
          const seconds = ((Date.now() - this.startedAt) / 1000).toFixed(1);
          this.log.info({ event: 'child_answers', pid: child.pid }, `[${this.options.name}] answers, ${seconds} s after its start`);
        },
        () => {
          if (current()) this.pollTimer = setTimeout(ask, POLL_INTERVAL_MS).unref();
        },
      );
    };
    ask();
  }

  /** The child ended: unless the gateway is stopping, it starts again after the backoff. */
  private exited(child: ChildProcess, how: string): void {
    if (this.process !== child || !this.everStarted) return;
    if (this.stopping) {
      this.log.info({ event: 'child_exited', pid: child.pid ?? null, exit: how }, `[${this.options.name}] stopped (${how})`);
      return;
    }
    if (this.pollTimer) clearTimeout(this.pollTimer);
    const ranMs = Date.now() - this.startedAt;
    if (ranMs >= STABLE_AFTER_MS) this.nextDelayMs = RESTART_DELAY_MS;
    const delayMs = this.nextDelayMs;
    this.nextDelayMs = Math.min(delayMs * 2, MAX_RESTART_DELAY_MS);
    this.state = 'restarting';
    this.lastExit = how;
    this.restartAt = Date.now() + delayMs;
    this.log.warn(
      { event: 'child_exited', pid: child.pid ?? null, exit: how, ran_ms: ranMs, restart_in_ms: delayMs },
      `[${this.options.name}] ended (${how}) after ${(ranMs / 1000).toFixed(1)} s; starting again in ${delayMs / 1000} s`,
    );
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.restarts += 1;
      this.spawnChild();
    }, delayMs).unref();
  }

  private clearTimers(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.restartTimer = this.pollTimer = null;
  }

  private isAlive(child: ChildProcess): boolean {
    return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Signals the child's process group (its own children too); a group already gone is not an error. */
  private signal(child: ChildProcess, signal: NodeJS.Signals): void {
    try {
      process.kill(-child.pid!, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }
}
