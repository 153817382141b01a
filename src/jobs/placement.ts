// Chooses the backend for a job: the one accepting work with the fewest of the gateway's jobs per weight, ties taking turns.

import type { Backend } from './backend.js';

/**
 * Placement over a fixed list of backends. `load(backend)` is the gateway's jobs queued, running or
 * being sent there (from the registry, so every replica sees the same counts); a backend has room
 * while that is below `depth` (`--upstream-queue-depth`, each backend keeping its own short queue).
 * Among the backends with room that accept work, the lowest `load / weight` wins; ties go to the one
 * after the last chosen, in configuration order.
 */
export class Placement {
  private readonly backends: readonly Backend[];
  private readonly load: (backend: Backend) => number;
  private readonly depth: number;
  /** The index after the backend chosen last: ties start looking here. */
  private cursor = 0;

  constructor(backends: readonly Backend[], load: (backend: Backend) => number, depth: number) {
    this.backends = backends;
    this.load = load;
    this.depth = depth;
  }

  /** Whether a job (pinned to `pin`, or free) could be placed now. */
  canPlace(pin: string | null): boolean {
    return this.backends.some((backend) => this.loadIfRoom(backend, pin) !== undefined);
  }

  /** The backend a job goes to now, or undefined when none that may take it has room. */
  choose(pin: string | null): Backend | undefined {
    let best: Backend | undefined;
    let bestScore = Infinity;
    let bestIndex = -1;
    for (let step = 0; step < this.backends.length; step += 1) {
      const index = (this.cursor + step) % this.backends.length;
      const backend = this.backends[index]!;
      const load = this.loadIfRoom(backend, pin);
      if (load === undefined) continue;
      const score = load / backend.weight;
      if (score < bestScore) {
        best = backend;
        bestScore = score;
        bestIndex = index;
      }
    }
    if (best) this.cursor = (bestIndex + 1) % this.backends.length;
    return best;
  }

  /** Whether any backend that may take work is not accepting it now (worth trying again soon). */
  someoneWaiting(): boolean {
    return this.backends.some((backend) => !backend.accepting());
  }

  /** The backend's load when it may take the job and has room (each reading of the load counts the jobs on their way there), else undefined. */
  private loadIfRoom(backend: Backend, pin: string | null): number | undefined {
    if ((pin !== null && backend.name !== pin) || !backend.accepting()) return undefined;
    const load = this.load(backend);
    return load < this.depth ? load : undefined;
  }
}
