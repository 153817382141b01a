// A member of a JSON object found in the object's text without parsing it, to look at that one part of a large document.

/**
 * The text of the value of `objectText`'s member `key` (a member of the object itself, not of one nested in it) when
 * that value is an object or a list; undefined when it has no such member. `objectText` is a JSON object's text. It is
 * read from its end, strings skipped whole: the cost is that of the members written after the one asked for (ComfyUI
 * writes a history entry's `outputs` after its `prompt`, so the prompt is not read).
 */
export function memberText(objectText: string, key: string): string | undefined {
  const name = JSON.stringify(key);
  let depth = 0;
  let valueEnd = -1;
  for (let i = objectText.length - 1; i >= 0; i -= 1) {
    const char = objectText[i];
    if (char === '"') i = stringStart(objectText, i);
    else if (char === '}' || char === ']') {
      depth += 1;
      if (depth === 2) valueEnd = i;
    } else if (char === '{' || char === '[') {
      depth -= 1;
      if (depth !== 1) continue;
      const colon = lastNonSpace(objectText, i - 1);
      const nameEnd = lastNonSpace(objectText, colon - 1);
      if (objectText[colon] !== ':' || objectText[nameEnd] !== '"') continue;
      const nameStart = stringStart(objectText, nameEnd);
      if (objectText.slice(nameStart, nameEnd + 1) === name) return objectText.slice(i, valueEnd + 1);
      i = nameStart;
    }
  }
  return undefined;
}

/** Where the JSON string whose closing quote is at `end` opens: the quote before it that no backslash escapes (-1 when none). */
function stringStart(text: string, end: number): number {
  let quote = text.lastIndexOf('"', end - 1);
  while (quote > 0 && isEscaped(text, quote)) quote = text.lastIndexOf('"', quote - 1);
  return quote;
}

/** Whether the character at `at` follows an odd number of backslashes. */
function isEscaped(text: string, at: number): boolean {
  let backslashes = 0;
  while (text[at - 1 - backslashes] === '\\') backslashes += 1;
  return backslashes % 2 === 1;
}

/** The index of the last character at or before `from` that is not JSON whitespace (-1 when none). */
function lastNonSpace(text: string, from: number): number {
  let i = from;
  while (i >= 0 && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i -= 1;
  return i;
}
