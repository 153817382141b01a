// An independent model of how aiohttp and yarl read a request target, before aiohttp 3.10 and since, for the differential test.

import { ROUTES, type RouteEntry } from '../../src/isolation/route-table.js';

/** What one aiohttp release would act on: the route it dispatches to, its decoded parameters, and the query. */
export interface AiohttpReading {
  entry: RouteEntry | null;
  params: Record<string, string>;
  query: Array<[string, string]>;
}

/**
 * yarl's unquoting: each run of %XX escapes is turned into bytes and decoded as UTF-8; bytes that do
 * not form UTF-8 keep their escapes as written; characters in `keep` keep their escapes.
 */
export function yarlUnquote(text: string, keep: string, plusIsSpace: boolean): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const char = text[i]!;
    if (char === '+' && plusIsSpace) {
      out += ' ';
      i += 1;
      continue;
    }
    if (char !== '%' || !/^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      out += char;
      i += 1;
      continue;
    }
    const escapes: string[] = [];
    while (text[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      escapes.push(text.slice(i, i + 3));
      i += 3;
    }
    out += decodeEscapeRun(escapes, keep);
  }
  return out;
}

function decodeEscapeRun(escapes: string[], keep: string): string {
  const bytes = escapes.map((e) => parseInt(e.slice(1), 16));
  let out = '';
  let j = 0;
  while (j < bytes.length) {
    const lead = bytes[j]!;
    const length = lead < 0x80 ? 1 : lead >= 0xc2 && lead < 0xe0 ? 2 : lead >= 0xe0 && lead < 0xf0 ? 3 : lead >= 0xf0 && lead < 0xf5 ? 4 : 0;
    const slice = length === 0 ? null : bytes.slice(j, j + length);
    let decoded: string | null = null;
    if (slice && slice.length === length) {
      try {
        decoded = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(slice));
      } catch {
        decoded = null;
      }
    }
    if (decoded === null) {
      out += escapes[j];
      j += 1;
      continue;
    }
    out += keep.includes(decoded) ? escapes.slice(j, j + length).join('') : decoded;
    j += length;
  }
  return out;
}

/** A pattern as aiohttp compiles it: `{name}` is `[^{}/]+`; a static mount's tail is anything. */
function patternRegex(pattern: string): RegExp {
  const source = pattern
    .split('/')
    .map((segment) => {
      const param = /^\{(\w+)(?::(path|\*|file))?\}$/.exec(segment);
      if (!param) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      if (param[2] === '*') return `(?<${param[1]}>.+)`;
      if (param[2] === 'file') return `(?<${param[1]}>[^{}/]+\\.(?:html|js|css|json|ico|png|svg|webp|woff2|map))`;
      return `(?<${param[1]}>[^{}/]+)`;
    })
    .join('/');
  return new RegExp(`^${source}$`);
}

const COMPILED = ROUTES.flatMap((entry) =>
  entry.patterns.flatMap((pattern) => [pattern, ...(entry.alsoUnderApi ? [`/api${pattern}`] : [])].map((p) => ({ entry, regex: patternRegex(p) }))),
);

function resolve(method: string, matchedPath: string, unquoteParam: (value: string) => string): { entry: RouteEntry | null; params: Record<string, string> } {
  const asked = method === 'HEAD' ? 'GET' : method;
  for (const { entry, regex } of COMPILED) {
    if (!entry.methods.includes('*') && !entry.methods.includes(asked)) continue;
    const match = regex.exec(matchedPath);
    if (!match) continue;
    const params = Object.fromEntries(Object.entries(match.groups ?? {}).map(([name, value]) => [name, unquoteParam(value)]));
    return { entry, params };
  }
  return { entry: null, params: {} };
}

function readQuery(raw: string, separators: RegExp): Array<[string, string]> {
  return raw
    .split(separators)
    .filter((part) => part !== '')
    .map((part) => {
      const equals = part.indexOf('=');
      const [name, value] = equals < 0 ? [part, ''] : [part.slice(0, equals), part.slice(equals + 1)];
      return [yarlUnquote(name, '', true), yarlUnquote(value, '', true)];
    });
}

/**
 * How aiohttp reads a target: the fragment is dropped, then the query is split off. Since 3.10 routes
 * match `path_safe` (decoded, `%2F` and `%25` kept); before, they matched the raw path. Parameters are
 * decoded in both. The query is split on `&` (yarl), and on `;` too by Python's parse_qsl before 3.9.2.
 */
export function aiohttpReading(method: string, target: string, release: 'current' | 'older'): AiohttpReading {
  const withoutFragment = target.split('#')[0]!;
  const queryAt = withoutFragment.indexOf('?');
  const rawPath = queryAt < 0 ? withoutFragment : withoutFragment.slice(0, queryAt);
  const rawQuery = queryAt < 0 ? '' : withoutFragment.slice(queryAt + 1);
  const matchedPath = release === 'current' ? yarlUnquote(rawPath, '/%', false) : rawPath;
  const { entry, params } = resolve(method, matchedPath, (value) => yarlUnquote(value, '', false));
  return { entry, params, query: readQuery(rawQuery, release === 'current' ? /&/ : /[&;]/) };
}
