// Chooses the backend for a job: the one accepting work with the fewest of the gateway's jobs per weight, ties taking turns.

import type { Backend } from './backend.js';

/** What placement reads of a backend's load: the gateway's jobs queued, running or being sent there. */
export interface BackendLoad {
  /** The load, exactly (it may cost a look at every job on its way there). */
  exact(backend: Backend): number;
  /** A bound read at no cost, never below the exact load: while it is below the depth, so is the load. */
  atMost(backend: Backend): number;
}

/**
 * Placement over a fixed list of backends. A backend's load (see BackendLoad) is read from the
 * registry, so every replica sees the same counts; a backend has room while its load is below `depth`
 * (`--upstream-queue-depth`, each backend keeping its own short queue). Among the backends with room
 * that accept work, the lowest `load / weight` wins; ties go to the one after the last chosen, in
 * configuration order. The exact load is read only when it decides: for room, when the bound is at
 * the depth; for the choice, when more than one backend has room.
 */
export class Placement {
  private readonly backends: readonly Backend[];
  private readonly load: BackendLoad;
  private readonly depth: number;
  /** The index after the backend chosen last: ties start looking here. */
  private cursor = 0;

  constructor(backends: readonly Backend[], load: BackendLoad, depth: number) {
    this.backends = backends;
    this.load = load;
    this.depth = depth;
  }

  /** Whether a job (pinned to `pin`, or free) could be placed now. */
  canPlace(pin: string | null): boolean {
    return this.backends.some((backend) => this.hasRoom(backend, pin));
  }

  /** The backend a job goes to now, or undefined when none that may take it has room. */
  choose(pin: string | null): Backend | undefined {
    const withRoom: number[] = [];
    for (let step = 0; step < this.backends.length; step += 1) {
      const index = (this.cursor + step) % this.backends.length;
      if (this.hasRoom(this.backends[index]!, pin)) withRoom.push(index);
    }
    if (withRoom.length === 0) return undefined;
    let bestIndex = withRoom[0]!;
    if (withRoom.length > 1) {
      let bestScore = Infinity;
      for (const index of withRoom) {
        const backend = this.backends[index]!;
        const score = this.load.exact(backend) / backend.weight;
        if (score < bestScore) {
          bestScore = score;
          bestIndex = index;
        }
      }
    }
    this.cursor = (bestIndex + 1) % this.backends.length;
    return this.backends[bestIndex];
  }

  /** Whether any backend that may take work is not accepting it now (worth trying again soon). */
  someoneWaiting(): boolean {
    return this.backends.some((backend) => !backend.accepting());
  }

  /** Whether the backend may take the job and has room. */
  private hasRoom(backend: Backend, pin: string | null): boolean {
    if ((pin !== null && backend.name !== pin) || !backend.accepting()) return false;
    return this.load.atMost(backend) < this.depth || this.load.exact(backend) < this.depth;
  }
}
