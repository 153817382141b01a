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

/** The first `wanted` prompts of `prompts` that have an entry, in order, looking up at most HISTORY_LOOKUPS_AT_ONCE at a time. */
async function firstFound<Entry>(prompts: readonly string[], wanted: number, lookup: EntryLookup<Entry>): Promise<Array<[string, Entry]>> {
  const found: Array<[string, Entry]> = [];
  let next = 0;
  while (found.length < wanted && next < prompts.length) {
    const batch = prompts.slice(next, next + Math.min(HISTORY_LOOKUPS_AT_ONCE, wanted - found.length));
    next += batch.length;
    const entries = await Promise.all(batch.map(lookup));
    batch.forEach((promptId, i) => {
      const entry = entries[i];
      if (entry !== undefined && found.length < wanted) found.push([promptId, entry]);
    });
  }
  return found;
}
