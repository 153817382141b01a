// Text every store can keep exactly as given: no NUL (PostgreSQL's text and jsonb refuse it) and no lone UTF-16 surrogate.

/**
 * NUL, or a surrogate without its pair: not Unicode, refused by jsonb and silently replaced (by U+FFFD)
 * in a text column, so two different strings could be stored as one.
 */
// eslint-disable-next-line no-control-regex
const UNSTORABLE_TEXT = /\u0000|\p{Cs}/u;

/** NUL or a surrogate, paired or not: a string without one is storable, found in one scan without decoding code points. */
// eslint-disable-next-line no-control-regex
const NUL_OR_SURROGATE = /[\u0000\ud800-\udfff]/;

/** True when every store keeps `text` exactly as given. */
export function isStorableText(text: string): boolean {
  return !NUL_OR_SURROGATE.test(text) || !UNSTORABLE_TEXT.test(text);
}

/** True when a key or string anywhere in `value` is not storable text; walked without recursion, however deep. */
export function holdsUnstorableText(value: unknown): boolean {
  const pending = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (typeof item === 'string') {
      if (!isStorableText(item)) return true;
    } else if (Array.isArray(item)) {
      // An array's keys are its indexes: only its items are read.
      for (const inner of item) pending.push(inner);
    } else if (typeof item === 'object' && item !== null) {
      for (const key of Object.keys(item)) {
        if (!isStorableText(key)) return true;
        pending.push((item as Record<string, unknown>)[key]);
      }
    }
  }
  return false;
}
