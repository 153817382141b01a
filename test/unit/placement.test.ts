// Unit tests of placement: its choices are those of reading every backend's exact load (property-based), and the exact load is read only when it decides.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Backend } from '../../src/jobs/backend.js';
import { Placement, type BackendLoad } from '../../src/jobs/placement.js';

/** A backend with what placement reads of it: its name, its weight and whether it accepts work. */
function backend(name: string, weight: number, accepting: boolean): Backend {
  return { name, weight, accepting: () => accepting } as unknown as Backend;
}

/** Placement as it reads without bounds: every backend's exact load, the lowest load per weight, ties from the cursor on. */
class ReferencePlacement {
  private cursor = 0;

  constructor(
    private readonly backends: readonly Backend[],
    private readonly load: (backend: Backend) => number,
    private readonly depth: number,
  ) {}

  choose(pin: string | null): Backend | undefined {
    let best: Backend | undefined;
    let bestScore = Infinity;
    let bestIndex = -1;
    for (let step = 0; step < this.backends.length; step += 1) {
      const index = (this.cursor + step) % this.backends.length;
      const candidate = this.backends[index]!;
      if ((pin !== null && candidate.name !== pin) || !candidate.accepting() || this.load(candidate) >= this.depth) continue;
      const score = this.load(candidate) / candidate.weight;
      if (score < bestScore) [best, bestScore, bestIndex] = [candidate, score, index];
    }
    if (best) this.cursor = (bestIndex + 1) % this.backends.length;
    return best;
  }
}

const backendsArbitrary = fc.array(fc.record({ weight: fc.integer({ min: 1, max: 4 }), accepting: fc.boolean(), exact: fc.nat(6), slack: fc.nat(4) }), {
  minLength: 1,
  maxLength: 5,
});

test('placement chooses as reading every exact load would, in every order of calls', () => {
  fc.assert(
    fc.property(
      backendsArbitrary,
      fc.integer({ min: 1, max: 6 }),
      fc.array(fc.option(fc.nat(5), { nil: null }), { minLength: 1, maxLength: 8 }),
      (specs, depth, pins) => {
        const backends = specs.map((spec, i) => backend(`b${i}`, spec.weight, spec.accepting));
        const exact = new Map(backends.map((b, i) => [b, specs[i]!.exact]));
        const load: BackendLoad = { exact: (b) => exact.get(b)!, atMost: (b) => exact.get(b)! + specs[backends.indexOf(b)]!.slack };
        const placement = new Placement(backends, load, depth);
        const reference = new ReferencePlacement(backends, (b) => exact.get(b)!, depth);
        for (const pinIndex of pins) {
          const pin = pinIndex === null ? null : `b${pinIndex}`;
          const chosen = placement.choose(pin);
          assert.equal(chosen, reference.choose(pin));
          assert.equal(placement.canPlace(pin), chosen !== undefined);
          // The chosen backend takes the job: its load grows, as the scheduler's slot makes it.
          if (chosen) exact.set(chosen, exact.get(chosen)! + 1);
        }
      },
    ),
  );
});

test('the exact load is not read while the bound shows room on the only backend, and is once the bound reaches the depth', () => {
  const only = backend('default', 1, true);
  let exactReads = 0;
  let bound = 0;
  const placement = new Placement(
    [only],
    {
      exact: () => {
        exactReads += 1;
        return 1;
      },
      atMost: () => bound,
    },
    4,
  );
  bound = 3;
  assert.equal(placement.choose(null), only);
  assert.equal(placement.canPlace(null), true);
  assert.equal(exactReads, 0);
  bound = 4;
  assert.equal(placement.choose(null), only, 'room after all: only one job of the four is still on its way');
  assert.equal(exactReads, 1);
});
