// Text every store can keep exactly as given: no NUL (PostgreSQL's text and jsonb refuse it) and no lone UTF-16 surrogate.

/**
 * NUL, or a surrogate without its pair: not Unicode, refused by jsonb and silently replaced (by U+FFFD)
 * in a text column, so two different strings could be stored as one.
 */
// eslint-disable-next-line no-control-regex
const UNSTORABLE_TEXT = /\u0000|\p{Cs}/u;

/** True when every store keeps `text` exactly as given. */
export function isStorableText(text: string): boolean {
  return !UNSTORABLE_TEXT.test(text);
}

/** True when a key or string anywhere in `value` is not storable text; walked without recursion, however deep. */
export function holdsUnstorableText(value: unknown): boolean {
  const pending = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (typeof item === 'string') {
      if (!isStorableText(item)) return true;
    } else if (typeof item === 'object' && item !== null) {
      for (const [key, inner] of Object.entries(item)) {
        if (!isStorableText(key)) return true;
        pending.push(inner);
      }
    }
  }
  return false;
}
