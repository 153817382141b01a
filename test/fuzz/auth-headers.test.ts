// Fuzzing the key headers: X-API-Key and Authorization with generated, repeated, unicode, long and odd-byte values.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import fc from 'fast-check';
import { after, before, describe, test } from 'node:test';
import { utf8Header, type Answer } from '../fault/keep-alive-client.js';
import { expectedFor, type KeyBook } from './credentials.js';
import { batchOf, fuzzRuns, startFuzzGateway, UPSTREAM_BODY, UPSTREAM_STATUS, type FuzzGateway } from './fuzz-gateway.js';

const BATCH = 64;
/** Roles of the keys the suite makes; a token names one, maybe altered. */
const KEY_NAMES = ['user', 'admin', 'disabled', 'deleted', 'expired'] as const;
type KeyName = (typeof KEY_NAMES)[number];

type Token = { key: KeyName } | { key: 'user' | 'admin'; alter: 'truncate' | 'extend' | 'flip' | 'prefix' | 'upper'; at: number } | { raw: string };

const token: fc.Arbitrary<Token> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...KEY_NAMES).map((key) => ({ key })) },
  {
    weight: 2,
    arbitrary: fc.record({
      key: fc.constantFrom('user' as const, 'admin' as const),
      alter: fc.constantFrom('truncate' as const, 'extend' as const, 'flip' as const, 'prefix' as const, 'upper' as const),
      at: fc.nat(),
    }),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }).map((raw) => ({ raw })) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 60 }).map((raw) => ({ raw })) },
  { weight: 1, arbitrary: fc.stringMatching(/^comfy_[A-Za-z0-9_-]{43}$/).map((raw) => ({ raw })) },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 9000 }).map((n) => ({ raw: `comfy_${'A'.repeat(n)}` })) },
);
const pad = fc.constantFrom('', '', ' ', '\t', ' \t ');
const apiKeyHeader = fc.record({ token, before: pad, after: pad });
const authorizationHeader = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ scheme: fc.constantFrom('Bearer', 'bearer', 'BEARER', 'bEaReR'), spaces: fc.integer({ min: 1, max: 3 }), token, after: pad }),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'Basic dXNlcjpwYXNz',
      'Digest username="x"',
      'Token abc',
      'Bearerx abc',
      'ApiKey x',
      'Bearer',
      'Bearer ',
      'Bearer a b',
      'Bearer\tabc',
      '',
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
);
const credentialCase = fc.record({
  apiKeys: fc.array(apiKeyHeader, { maxLength: 3 }),
  authorizations: fc.array(authorizationHeader, { maxLength: 3 }),
  path: fc.constantFrom('/api/object_info', '/api/usage'),
});
type CredentialCase = typeof credentialCase extends fc.Arbitrary<infer T> ? T : never;

/** Bytes a header value cannot carry through node's client (they are tried over raw sockets instead). */
// eslint-disable-next-line no-control-regex
const UNSENDABLE = /[\u0000-\u0008\u000a-\u001f\u007f]/g;

/** Headers at least this large may be refused whole (400 or 431) by the HTTP server. */
const LARGE_HEADERS = 14 * 1024;

/** Each request comes from its own loopback address, so the failed-authentication limiter never blocks the suite. */
let requestNumber = 0;
const nextAddress = (): string => {
  const n = requestNumber++ % 4096;
  return `127.77.${n >> 8}.${n & 255}`;
};

describe('key headers under generated input', () => {
  let fz: FuzzGateway;
  const plaintext = {} as Record<KeyName, string>;
  const keyIds = new Map<string, string>();
  let book: KeyBook;
  let listingBefore: string;
  let sent = 0;

  before(async () => {
    fz = await startFuzzGateway(['--require-api-auth']);
    const create = async (body: object, admin?: string): Promise<{ api_key: string; key_id: string }> => {
      const res = await fz.client.send('/api/keys', { method: 'POST', body, ...(admin ? { headers: { 'x-api-key': admin } } : {}) });
      assert.equal(res.status, 200, res.text);
      return res.json();
    };
    const admin = await create({ name: 'admin', rate_limit: 10_000_000 });
    const asAdmin = { headers: { 'x-api-key': admin.api_key } };
    const made = { admin, user: await create({ name: 'user', rate_limit: 10_000_000 }, admin.api_key) } as Record<KeyName, { api_key: string; key_id: string }>;
    made.disabled = await create({ name: 'disabled' }, admin.api_key);
    assert.equal((await fz.client.send(`/api/keys/${made.disabled.key_id}`, { method: 'PATCH', body: { is_active: false }, ...asAdmin })).status, 200);
    made.deleted = await create({ name: 'deleted' }, admin.api_key);
    assert.equal((await fz.client.send(`/api/keys/${made.deleted.key_id}`, { method: 'DELETE', ...asAdmin })).status, 200);
    made.expired = await create({ name: 'expired', expires_at: 1000 }, admin.api_key);
    for (const name of KEY_NAMES) {
      plaintext[name] = made[name].api_key;
      keyIds.set(made[name].api_key, made[name].key_id);
    }
    book = {
      valid: new Set([plaintext.user, plaintext.admin]),
      refused: new Map([
        [plaintext.disabled, 'KEY_DISABLED'],
        [plaintext.expired, 'KEY_EXPIRED'],
      ]),
    };
    listingBefore = await listingWithoutUse();
  });
  after(async () => {
    await fz?.close();
  });

  /** The listing as the admin sees it, without `last_used` (which every accepted request moves). */
  async function listingWithoutUse(): Promise<string> {
    return JSON.stringify([...(await fz.listing(plaintext.admin)).values()].map((key) => ({ ...key, last_used: undefined })));
  }

  function resolve(t: Token): string {
    if ('raw' in t) return t.raw;
    const key = plaintext[t.key];
    if (!('alter' in t)) return key;
    const i = 6 + (t.at % (key.length - 6));
    switch (t.alter) {
      case 'truncate':
        return key.slice(0, -1);
      case 'extend':
        return `${key}A`;
      case 'flip':
        return key.slice(0, i) + (key[i] === 'A' ? 'B' : 'A') + key.slice(i + 1);
      case 'prefix':
        return `x${key}`;
      case 'upper':
        return key.toUpperCase();
    }
  }

  /** The header values as sent on the wire (UTF-8 bytes), with bytes node's client refuses replaced by '?'. */
  function headerValues(c: CredentialCase): { apiKeys: string[]; authorizations: string[] } {
    const wire = (text: string): string => utf8Header(text).replace(UNSENDABLE, '?');
    return {
      apiKeys: c.apiKeys.map((h) => wire(h.before + resolve(h.token) + h.after)),
      authorizations: c.authorizations.map((h) => wire(typeof h === 'string' ? h : `${h.scheme}${' '.repeat(h.spaces)}${resolve(h.token)}${h.after}`)),
    };
  }

  function check(c: CredentialCase, sentHeaders: { apiKeys: string[]; authorizations: string[] }, answer: Answer | Error): void {
    const what = `${c.path} X-API-Key ${JSON.stringify(sentHeaders.apiKeys).slice(0, 300)} Authorization ${JSON.stringify(sentHeaders.authorizations).slice(0, 300)}`;
    const size = [...sentHeaders.apiKeys, ...sentHeaders.authorizations].reduce((sum, v) => sum + v.length + 16, 0);
    if (size >= LARGE_HEADERS && (answer instanceof Error || answer.status === 400 || answer.status === 431)) return;
    assert.ok(!(answer instanceof Error), `${what}: ${answer instanceof Error ? answer.message : ''}`);
    assert.ok(answer.status < 500, `${what}: ${answer.status} ${answer.text.slice(0, 200)}`);
    const expected = expectedFor(sentHeaders.apiKeys, sentHeaders.authorizations, book, true);
    const through = c.path === '/api/usage' ? answer.status === 200 : answer.status === UPSTREAM_STATUS && answer.text === UPSTREAM_BODY;
    if (through) {
      assert.notEqual(expected.through, false, `${what}: let through, but the README says ${expected.codes.join(' or ')}`);
      if (c.path === '/api/usage') assert.equal(answer.json().key_id, keyIds.get(expected.key!), `${what}: counted for the key presented`);
      return;
    }
    assert.notEqual(expected.through, true, `${what}: refused with ${answer.status} ${answer.text.slice(0, 200)}, but the key is valid`);
    assert.equal(answer.status, 401, `${what}: ${answer.text.slice(0, 200)}`);
    const code = answer.json<{ error_code: string }>().error_code;
    assert.ok(expected.codes.includes(code), `${what}: ${code}, the README says ${expected.codes.join(' or ')}`);
  }

  test('every combination of key headers gets the README answer, and never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(credentialCase, BATCH), async (cases) => {
        const headers = cases.map(headerValues);
        const answers = await Promise.all(
          cases.map((c, i) => {
            const { apiKeys, authorizations } = headers[i]!;
            // Node sends an array as repeated header lines (its types allow that for some names only).
            const sentHeaders = {
              ...(apiKeys.length ? { 'x-api-key': apiKeys } : {}),
              ...(authorizations.length ? { authorization: authorizations } : {}),
            } as OutgoingHttpHeaders;
            return fz.client.send(c.path, { headers: sentHeaders, localAddress: nextAddress() }).catch((error: Error) => error);
          }),
        );
        sent += cases.length;
        cases.forEach((c, i) => check(c, headers[i]!, answers[i]!));
      }),
      fuzzRuns(130),
    );
    await fz.assertAlive();
  });

  test('odd bytes inside a key header (control characters, CR, LF, DEL, high bytes) are refused with 400 or 401', async () => {
    const oddByte = fc.constantFrom(0x01, 0x07, 0x08, 0x0b, 0x0c, 0x0d, 0x0a, 0x0e, 0x1b, 0x1f, 0x7f, 0x80, 0xc3, 0xff, 0x00);
    const rawCase = fc.record({
      header: fc.constantFrom('X-API-Key', 'Authorization', 'X-API-Key\u0001', 'X-API-Key '),
      key: fc.constantFrom('user' as const, 'admin' as const),
      bytes: fc.array(oddByte, { minLength: 1, maxLength: 3 }),
      at: fc.nat(),
      folded: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(batchOf(rawCase, 30), async (cases) => {
        const answers = await Promise.all(
          cases.map(async ({ header, key, bytes, at, folded }) => {
            const plain = Buffer.from(plaintext[key]);
            const cut = 1 + (at % (plain.length - 1));
            const value = Buffer.concat([plain.subarray(0, cut), Buffer.from(bytes), plain.subarray(cut)]);
            const line = Buffer.concat([
              Buffer.from(`${header}: ${header.startsWith('Authorization') ? 'Bearer ' : ''}`),
              value,
              Buffer.from(folded ? '\r\n continued' : ''),
            ]);
            const request = Buffer.concat([
              Buffer.from('GET /api/object_info HTTP/1.1\r\nHost: 127.0.0.1\r\n'),
              line,
              Buffer.from('\r\nConnection: close\r\n\r\n'),
            ]);
            return { request, reply: await rawExchange(fz.gateway.port, request, nextAddress()) };
          }),
        );
        sent += cases.length;
        for (const { request, reply } of answers) {
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0);
          assert.ok(status === 400 || status === 401, `${JSON.stringify(request.toString('latin1'))} got ${JSON.stringify(reply.slice(0, 200))}`);
        }
      }),
      fuzzRuns(80),
    );
    await fz.assertAlive();
  });

  test('none of it changed a key, and enough generated requests were sent', async (t) => {
    assert.equal(await listingWithoutUse(), listingBefore);
    t.diagnostic(`${sent} generated credential requests`);
    assert.ok(sent >= 4000, `only ${sent}`);
  });
});

/** Sends `request` on a new connection from `localAddress` and reads the reply until the gateway closes it. */
async function rawExchange(port: number, request: Buffer, localAddress: string): Promise<string> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => undefined);
  let reply = '';
  socket.setEncoding('latin1').on('data', (text: string) => (reply += text));
  const closed = once(socket, 'close');
  socket.end(request);
  const timer = setTimeout(() => socket.destroy(), 5000);
  await closed;
  clearTimeout(timer);
  return reply;
}
