// HTTP tokens (RFC 9110 §5.6.2): the characters of field names, methods, parameter names and many values.

/** One token character, as a regular-expression class to build other patterns with. */
export const TOKEN_CHARACTER = "[!#$%&'*+.^_`|~0-9A-Za-z-]";

const TOKEN = new RegExp(`^${TOKEN_CHARACTER}+$`);

/** True when `text` is a token: one or more token characters and nothing else. */
export function isToken(text: string): boolean {
  return TOKEN.test(text);
}
