// Work over many items spread over turns of the event loop, so that other requests are served in between.

import { setImmediate as nextTurn } from 'node:timers/promises';

/** Items visited between two turns of the event loop. */
const ITEMS_PER_TURN = 1000;

/** Calls `visit` for each item, letting other work run between every ITEMS_PER_TURN items: how a lookup goes through a large answer's facts. */
export async function forEachInTurns<T>(items: Iterable<T>, visit: (item: T) => void): Promise<void> {
  let visited = 0;
  for (const item of items) {
    if (visited > 0 && visited % ITEMS_PER_TURN === 0) await nextTurn();
    visit(item);
    visited += 1;
  }
}
