// fast-check generators for the management fuzz suite: key bodies as sent, key ids, usage queries.

import fc from 'fast-check';

const json = fc.jsonValue({ maxDepth: 3 });

/** Percent-encodes every byte of the UTF-8 of `text` except unreserved characters (lone surrogates become U+FFFD). */
export function percentEncode(text: string): string {
  return [...Buffer.from(text, 'utf8')]
    .map((byte) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(byte)) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
}

const name = fc.oneof(
  { weight: 6, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 60 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ minLength: 195, maxLength: 260 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\t\n', 'a\u0000b', 'x\u007f', '\ud800', 'é'.repeat(200), '😀'.repeat(100), '😀'.repeat(101)) },
  { weight: 1, arbitrary: json },
);

const rateLimit = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: 1, max: 10_000_000 }) },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(0, -1, 10_000_001, 1.5, 1e21, '100', null, true, [], {}) },
);

/** Nested `[[[...]]]` of the given depth, as text (too deep for JSON.stringify to build). */
const nestedText = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

const metadata = fc.oneof(
  { weight: 6, arbitrary: fc.dictionary(fc.string({ maxLength: 10 }), json, { maxKeys: 5 }) },
  { weight: 1, arbitrary: json },
  { weight: 1, arbitrary: fc.integer({ min: 16_370, max: 16_400 }).map((n) => ({ blob: 'x'.repeat(n) })) },
  { weight: 1, arbitrary: fc.integer({ min: 8_190, max: 8_300 }).map((n) => ({ blob: 'é'.repeat(n) })) },
);

const role = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('user', 'admin') },
  { weight: 1, arbitrary: fc.constantFrom<unknown>('Admin', 'root', ' user', '', null, 1) },
  { weight: 1, arbitrary: fc.string() },
);

const expiresAt = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<unknown>(null, 4_102_444_800) },
  { weight: 1, arbitrary: fc.double({ min: 0, max: 1e11, noNaN: true }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(-1, 1e12, '2030-01-01', true, {}) },
);

const quota = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<unknown>(null, 1, 1_000_000_000) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 100_000 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(0, -1, 1_000_000_001, 2.5, 1e21, '5', 'none', true, [], {}) },
  { weight: 1, arbitrary: fc.double() },
);

const unknownFields = fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), json, { minKeys: 1, maxKeys: 2 });

/** A key body as an object (it may carry unknown fields), for create or update. */
function fieldObject(kind: 'create' | 'update'): fc.Arbitrary<Record<string, unknown>> {
  const known = fc.record(
    {
      name,
      rate_limit: rateLimit,
      metadata,
      role,
      expires_at: expiresAt,
      max_queued: quota,
      max_running: quota,
      daily_execution_seconds: quota,
      ...(kind === 'update' ? { is_active: fc.oneof(fc.boolean(), json) } : {}),
    },
    { requiredKeys: [] },
  );
  return fc.oneof({ weight: 9, arbitrary: known }, { weight: 1, arbitrary: fc.tuple(known, unknownFields).map(([a, b]) => ({ ...b, ...a })) });
}

const ODD_BODIES = [
  '',
  '   ',
  '{',
  '{"name": "x"',
  'null',
  '[]',
  '"name"',
  '0',
  'true',
  '{"name":"a","name":5}',
  '{"__proto__":{"role":"admin"}}',
  '{"constructor":{"prototype":{}}}',
  '{"rate_limit":1e400}',
  '\ufeff{}',
  '{"name":"\\ud800"}',
  '{"metadata":{"__proto__":{"x":1}}}',
  '{"name":"a"}garbage',
  '{"name":"a"}\n{"name":"b"}',
  '{"role":"admin","role":"user"}',
  '{"expires_at":null,"is_active":false}',
];

/** The text of a body for `POST /api/keys` (kind create) or `PATCH /api/keys/{id}` (kind update). */
export function keyBody(kind: 'create' | 'update'): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 12, arbitrary: fieldObject(kind).map((body) => JSON.stringify(body)) },
    { weight: 1, arbitrary: fc.constantFrom(...ODD_BODIES) },
    { weight: 1, arbitrary: json.map((value) => JSON.stringify(value)) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
    { weight: 1, arbitrary: fc.constantFrom(3, 200, 1000, 8000, 20_000).map((depth) => `{"metadata":{"deep":${nestedText(depth)}}}`) },
    { weight: 1, arbitrary: fc.integer({ min: 65_000, max: 70_000 }).map((n) => JSON.stringify({ name: 'big', metadata: { blob: 'y'.repeat(n) } })) },
  );
}

/** Which key a PATCH or DELETE names: one that exists (the n-th), an unknown but well-formed id, or any text at all. */
export type KeyTarget = { kind: 'existing'; index: number } | { kind: 'path'; segment: string };

export const keyTarget: fc.Arbitrary<KeyTarget> = fc.oneof(
  { weight: 6, arbitrary: fc.nat().map((index) => ({ kind: 'existing' as const, index })) },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/).map((segment) => ({ kind: 'path' as const, segment })) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 80 }).map((text) => ({ kind: 'path' as const, segment: percentEncode(text) })) },
);

/** One management request. */
export type ManagementOp =
  | { op: 'create'; body: string; contentType: string | undefined }
  | { op: 'update'; target: KeyTarget; body: string; contentType: string | undefined }
  | { op: 'delete'; target: KeyTarget };

const contentType = fc.constantFrom(undefined, 'application/json', 'text/plain', 'application/json; charset=utf-8', 'multipart/form-data; boundary=x');

export const managementOp: fc.Arbitrary<ManagementOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('create' as const), body: keyBody('create'), contentType }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('update' as const), target: keyTarget, body: keyBody('update'), contentType }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), target: keyTarget }) },
);

/** A `days` value as a client might spell it. */
const daysValue = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 365 }).map(String) },
  { weight: 2, arbitrary: fc.integer({ min: -1000, max: 100_000 }).map(String) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '0',
      '366',
      '007',
      '+5',
      ' 5',
      '5.0',
      '1e2',
      '0x10',
      '',
      'abc',
      '30d',
      '١٢',
      'NaN',
      'Infinity',
      '-0',
      '365.0000001',
      '99999999999999999999',
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
);

/** A query string for `GET /api/usage`: zero, one or two `days`, maybe `by=day`, maybe noise. */
export const usageQuery = fc.record({
  days: fc.array(daysValue, { maxLength: 2 }),
  byDay: fc.boolean(),
  noise: fc.array(fc.tuple(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 })), { maxLength: 2 }),
});
