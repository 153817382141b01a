// routeGroup names what a path was about for metric labels: a fixed, small set of names, read from its first segments.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { routeGroup } from '../../src/observability/route-group.js';

/** The route group as a reading of the split path: the first segment, or the second after `api`. */
function groupBySplitting(path: string): string {
  const segments = path.split('/');
  const first = (segments[1] === 'api' ? segments[2] : segments[1])?.toLowerCase() ?? '';
  // A one-segment path names that segment's group; `api` alone (here from `API`) is in no group.
  return first === 'api' ? 'other' : routeGroup(`/${first}`);
}

describe('routeGroup', () => {
  test('examples', () => {
    assert.equal(routeGroup('/api/history/abc'), 'history');
    assert.equal(routeGroup('/history'), 'history');
    assert.equal(routeGroup('/API/queue'), 'other', '`api` is matched as aiohttp matches it, case and all');
    assert.equal(routeGroup('/api/QUEUE'), 'queue');
    assert.equal(routeGroup('/api'), 'frontend');
    assert.equal(routeGroup('/api/'), 'frontend');
    assert.equal(routeGroup('/'), 'frontend');
    assert.equal(routeGroup('*'), 'frontend');
    assert.equal(routeGroup('/features'), 'system');
    assert.equal(routeGroup('/nowhere/queue'), 'other');
  });

  test('any path reads as its split segments do', () => {
    const piece = fc.constantFrom('/', 'api', 'API', 'queue', 'history', 'view', 'x', '', 'ws', '//');
    fc.assert(
      fc.property(fc.array(fc.oneof(piece, fc.string({ maxLength: 4 })), { maxLength: 6 }), (pieces) => {
        const path = pieces.join('');
        assert.equal(routeGroup(path), groupBySplitting(path), JSON.stringify(path));
      }),
      { numRuns: 2000 },
    );
  });
});
