// A key's window of GET /history, built from its own prompts one `/history/{id}` at a time, never from the whole history.

/** The key's completed entries `GET /history` answers when it names no `max_items`: the newest of them, or from `offset` on. */
export const DEFAULT_HISTORY_WINDOW = 200;

/** The most `/history/{id}` lookups one window has in flight at once. */
export const HISTORY_LOOKUPS_AT_ONCE = 8;

/** A prompt's history entry; undefined while it has none (pending or running). */
export type EntryLookup<Entry> = (promptId: string) => Promise<Entry | undefined>;

/**
 * The window of the key's completed entries, oldest first, with ComfyUI's meaning of `max_items` and
 * `offset` (offset < 0: the newest `max_items`; otherwise `max_items` from the `offset`-th oldest).
 * `promptsNewestFirst` is the key's own prompts in the order the window counts them. Entries are looked
 * up newest first for a newest window and oldest first for an offset window, only until it is full.
 */
export async function historyWindow<Entry>(
  promptsNewestFirst: readonly string[],
  maxItems: number | undefined,
  offset: number,
  lookup: EntryLookup<Entry>,
): Promise<Array<[string, Entry]>> {
  const size = maxItems ?? DEFAULT_HISTORY_WINDOW;
  if (size <= 0) return [];
  if (offset < 0) return (await firstFound(promptsNewestFirst, size, lookup)).reverse();
  const found = await firstFound([...promptsNewestFirst].reverse(), offset + size, lookup);
  return found.slice(offset);
}

/**
 * The first `wanted` prompts of `prompts` that have an entry, in order. Up to HISTORY_LOOKUPS_AT_ONCE
 * lookups are in flight, each one started as another ends, and only while the entries found and the
 * lookups in flight are fewer than `wanted`: a window costs its own size plus the prompts without an entry.
 */
async function firstFound<Entry>(prompts: readonly string[], wanted: number, lookup: EntryLookup<Entry>): Promise<Array<[string, Entry]>> {
  const entries = new Map<number, Entry | undefined>();
  let found = 0;
  let next = 0;
  let failure: { error: unknown } | null = null;
  const inFlight = new Set<Promise<void>>();
  for (;;) {
    while (!failure && inFlight.size < HISTORY_LOOKUPS_AT_ONCE && next < prompts.length && found + inFlight.size < wanted) {
      const index = next++;
      const done: Promise<void> = lookup(prompts[index]!)
        .then(
          (entry) => {
            entries.set(index, entry);
            if (entry !== undefined) found += 1;
          },
          (error: unknown) => {
            failure ??= { error };
          },
        )
        .finally(() => inFlight.delete(done));
      inFlight.add(done);
    }
    if (inFlight.size === 0) break;
    await Promise.race(inFlight);
  }
  // Every lookup has settled: a failed one fails the window, and none is left unhandled.
  if (failure) throw (failure as { error: unknown }).error;
  const inOrder: Array<[string, Entry]> = [];
  for (let index = 0; index < next && inOrder.length < wanted; index += 1) {
    const entry = entries.get(index);
    if (entry !== undefined) inOrder.push([prompts[index]!, entry]);
  }
  return inOrder;
}
