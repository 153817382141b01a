// What the README says a request's key headers must get, for the auth-header fuzz suite.
//
// A key travels in `X-API-Key` or in `Authorization: Bearer <key>`. A request that presents no key is
// anonymous. A request whose key headers all carry the same valid key is let through (repeating a
// header may also be refused as malformed). Anything else presented (an unknown, malformed, disabled
// or expired key, or two different keys) gets 401, and is never treated as "no key".

/** Optional whitespace around a header value, which HTTP strips. */
const OWS = /^[ \t]+|[ \t]+$/g;
const BEARER_SCHEME = /^bearer(?:[ \t]|$)/i;
const BEARER = /^bearer +([^ \t]+)$/i;
export const KEY_REFUSALS = ['INVALID_KEY', 'KEY_DISABLED', 'KEY_EXPIRED'];

export interface KeyBook {
  /** Plaintexts of valid, active keys. */
  valid: Set<string>;
  /** Plaintexts of existing keys that are refused, with their error code. */
  refused: Map<string, string>;
}

export interface Expectation {
  /** true: let through; false: refused with one of `codes`; 'either': let through or refused with one of `codes`. */
  through: boolean | 'either';
  codes: string[];
  /** The key let through, if any. */
  key?: string;
}

/** The README's answer to a request carrying these `X-API-Key` and `Authorization` values (as the server reads them). */
export function expectedFor(apiKeys: string[], authorizations: string[], book: KeyBook, requireKey: boolean): Expectation {
  const headerKeys = apiKeys.map((value) => value.replace(OWS, ''));
  const auths = authorizations.map((value) => value.replace(OWS, ''));
  const bearers = auths.filter((value) => BEARER_SCHEME.test(value)).map((value) => BEARER.exec(value)?.[1] ?? '\u0000malformed');
  const presented = [...headerKeys, ...bearers];
  if (presented.length === 0) return requireKey ? { through: false, codes: ['AUTH_REQUIRED'] } : { through: true, codes: [] };
  const [first] = presented as [string];
  const repeated = apiKeys.length > 1 || authorizations.length > 1;
  if (presented.every((value) => value === first) && book.valid.has(first)) {
    return repeated ? { through: 'either', codes: KEY_REFUSALS, key: first } : { through: true, codes: [], key: first };
  }
  if (presented.length === 1 && !repeated) return { through: false, codes: [book.refused.get(first) ?? 'INVALID_KEY'] };
  return { through: false, codes: KEY_REFUSALS };
}
