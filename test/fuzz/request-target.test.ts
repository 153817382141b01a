// Differential test: every target the gateway accepts is read the same by the gateway and by a model of each aiohttp release.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { GatewayError } from '../../src/errors.js';
import { matchRoute, ROUTES } from '../../src/isolation/route-table.js';
import { parseRequestTarget } from '../../src/server/request-target.js';
import { aiohttpReading } from './aiohttp-model.js';
import { fuzzRuns } from './fuzz-gateway.js';

const RULE_PARAMETERS = ['filename', 'subfolder', 'type', 'clientId', 'prompt_id', 'max_items', 'offset', 'limit'];
const METHODS = ['GET', 'HEAD', 'POST', 'DELETE', 'PATCH'];

/** Characters that make spellings interesting: separators, dots, escapes' own `%`, case, non-ASCII. */
const tricky = fc.constantFrom(
  'a',
  'Z',
  '0',
  '-',
  '_',
  '.',
  '..',
  '~',
  '/',
  '%',
  '#',
  '?',
  '&',
  ';',
  '+',
  '=',
  ' ',
  '\\',
  ':',
  '@',
  'é',
  '😀',
  '\u0000',
  '\u001f',
  'internal',
  'history',
  'api',
  'view',
);
const text = fc.array(tricky, { minLength: 1, maxLength: 6 }).map((parts) => parts.join(''));

/** Percent-encodes one character's UTF-8 bytes, in upper or lower case hex. */
function escape(char: string, lower: boolean): string {
  return [...Buffer.from(char, 'utf8')]
    .map((byte) => `%${byte.toString(16).padStart(2, '0')}`)
    .map((e) => (lower ? e : e.toUpperCase()))
    .join('');
}

/** Writes `value` as a client might: characters a request line cannot carry are always escaped; others sometimes. */
const spelled = (value: string): fc.Arbitrary<string> =>
  fc
    .array(fc.boolean(), { minLength: value.length, maxLength: value.length })
    .chain((flags) =>
      fc.boolean().map((lower) => [...value].map((char, i) => (/[^\x21-\x7e]/.test(char) || flags[i % flags.length] ? escape(char, lower) : char)).join('')),
    );

const patterns = ROUTES.flatMap((entry) => entry.patterns.flatMap((p) => (entry.alsoUnderApi ? [p, `/api${p === '/' ? '/' : p}`] : [p])));

/** A path built from a known pattern, its parameters filled with tricky text, sometimes mangled further. */
const path = fc
  .tuple(
    fc.constantFrom(...patterns),
    fc.array(text, { minLength: 4, maxLength: 4 }),
    fc.constantFrom('', '/', '//', '/./', '/../', '/x/..', '#f', '%2F', '%2e'),
  )
  .chain(([pattern, values, extra]) => {
    let n = 0;
    const filled = pattern.replace(/\{(\w+)(?::(path|\*|file))?\}/g, (_m, _name, kind: string | undefined) => {
      const value = values[n++ % values.length]!;
      return kind === 'file' ? `${value}.js` : value;
    });
    return fc.tuple(spelled(filled), fc.nat(filled.length)).map(([written, at]) => (extra ? written.slice(0, at) + extra + written.slice(at) : written));
  });

const query = fc
  .array(fc.tuple(fc.constantFrom(...RULE_PARAMETERS, 'preview', 'x'), text, fc.constantFrom('&', ';')), { maxLength: 4 })
  .chain((pairs) => fc.tuple(...pairs.map(([name, value, separator]) => spelled(value).map((written) => `${name}=${written}${separator}`))))
  .map((parts) => (parts.length > 0 ? `?${parts.join('')}` : ''));

/** The gateway's reading, or null when it refuses the target. */
function gatewayReading(method: string, target: string): { route: ReturnType<typeof matchRoute>; query: URLSearchParams } | null {
  try {
    const parsed = parseRequestTarget(target);
    const route = matchRoute(method, parsed.segments);
    // Unknown paths with an encoded slash are refused too (isolated-proxy).
    if (!route && parsed.segments.some((segment) => segment.includes('/'))) return null;
    return { route, query: parsed.query };
  } catch (error) {
    if (error instanceof GatewayError && error.status === 400) return null;
    throw error;
  }
}

function assertSameReading(method: string, target: string): void {
  const gateway = gatewayReading(method, target);
  if (!gateway) return;
  for (const release of ['current', 'older'] as const) {
    const aiohttp = aiohttpReading(method, target, release);
    const where = `${method} ${target} (${release} aiohttp)`;
    assert.equal(aiohttp.entry?.patterns[0] ?? null, gateway.route?.entry.patterns[0] ?? null, `route of ${where}`);
    assert.deepEqual(aiohttp.params, gateway.route?.params ?? {}, `parameters of ${where}`);
    for (const name of RULE_PARAMETERS) {
      const theirs = aiohttp.query.filter(([n]) => n === name).map(([, v]) => v);
      assert.deepEqual(theirs, gateway.query.getAll(name), `query parameter ${name} of ${where}`);
    }
  }
}

describe('request targets: one reading', () => {
  test('every target the gateway accepts reaches the same route, parameters and query values in aiohttp, old and new', () => {
    fc.assert(
      fc.property(fc.constantFrom(...METHODS), path, query, (method, p, q) => assertSameReading(method, p + q)),
      fuzzRuns(5000),
    );
  });

  test('plain spellings are accepted and match their route', () => {
    const plain = fc
      .constantFrom(...patterns)
      .chain((pattern) =>
        fc
          .stringMatching(/^[a-z0-9_-]{1,12}$/)
          .map((value) => pattern.replace(/\{(\w+)(?::(path|\*|file))?\}/g, (_m, _n, kind: string | undefined) => (kind === 'file' ? `${value}.js` : value))),
      );
    fc.assert(
      fc.property(plain, (target) => {
        const reading = gatewayReading('GET', target);
        assert.ok(reading, `${target} is accepted`);
        assertSameReading('GET', target);
      }),
      fuzzRuns(2000),
    );
  });

  const refused: Array<[string, string]> = [
    ['/api/history#', 'a fragment'],
    ['/api/queue#x', 'a fragment'],
    ['/view?filename=a.png#z', 'a fragment in the query'],
    ['/%69nternal/logs', 'an escaped plain character'],
    ['/api/%2e%2e/internal/logs', 'escaped dots'],
    ['/x/../internal/logs', 'a dot segment'],
    ['/./prompt', 'a dot segment'],
    ['//prompt', 'an empty segment'],
    ['/api\\internal', 'a backslash'],
    ['/api/%5Cinternal', 'an escaped backslash'],
    ['/history/%ff', 'an escape that is not UTF-8'],
    ['/history/%zz', 'a malformed escape'],
    ['/history/a%00', 'an escaped NUL'],
    ['/history/a%2541', 'an escaped percent sign'],
    ['/history/a%2Bb', 'an escaped plus'],
    ['/view?filename=a.png&filename=b.png', 'a repeated rule parameter'],
    ['/view?x=1;filename=b.png', 'a ";" that hides a rule parameter from newer releases'],
    ['/view?filename=a.png;b', 'a ";" that changes a rule parameter'],
    ['/view?filename=a%00.png', 'a NUL in the query'],
    ['http://127.0.0.1/prompt', 'absolute-form'],
    ['*', 'asterisk-form'],
  ];
  for (const [target, why] of refused) {
    test(`refused with 400: ${why} (${target})`, () => {
      assert.throws(
        () => parseRequestTarget(target),
        (error: unknown) => error instanceof GatewayError && error.status === 400 && error.code === 'INVALID_REQUEST',
      );
    });
  }

  test('a "#" inside a value is just a character', () => {
    const parsed = parseRequestTarget('/history/abc%23x?filename=a%23b.png&preview=webp;90');
    assert.deepEqual(matchRoute('GET', parsed.segments)?.params, { prompt_id: 'abc#x' });
    assert.equal(parsed.query.get('filename'), 'a#b.png');
    assert.equal(parsed.query.get('preview'), 'webp;90');
  });

  test('an encoded slash stays inside a /userdata file name', () => {
    const parsed = parseRequestTarget('/api/userdata/workflows%2Fmy%20flow.json');
    assert.deepEqual(matchRoute('POST', parsed.segments)?.params, { file: 'workflows/my flow.json' });
    assert.equal(matchRoute('GET', parseRequestTarget('/history/a%2Fb').segments), null);
  });
});
