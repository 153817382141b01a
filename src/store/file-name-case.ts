// File names as case-insensitive disks (Windows, macOS) compare them: the form file ownership ids are kept in.

/** Capitals and every character beyond ASCII: a name without them is its own folded form. */
const MAY_FOLD = /[A-Z\u0080-\uffff]/;

/**
 * A name (or a file's ownership id) folded as Windows and macOS compare names on their usual disks: case, and
 * Unicode composition (APFS reads `é` composed and decomposed as one name). Upper then lower case, so that
 * `ſ`, `K` (Kelvin) and `ß` meet `s`, `k` and `ss`: it folds more than either system does, never less, so two
 * names one of them reads as one file always fold alike.
 */
export function foldCase(name: string): string {
  return MAY_FOLD.test(name) ? name.toUpperCase().toLowerCase().normalize('NFC') : name;
}
