// Unit and property tests of the HTTP/1.1 heads the gateway writes and reads itself (downloads): strict both ways.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { couldStartResponseHead, parseResponseHead, requestHead } from '../../src/proxy/http1-head.js';

const TOKEN_CHARS = "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-";
const fieldName = fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 1, maxLength: 20 });
/** Field values as aiohttp sends them: visible bytes (latin1) with inner spaces and tabs, none at either end. */
const fieldValue = fc
  .string({
    unit: fc
      .integer({ min: 0x20, max: 0xff })
      .filter((code) => code !== 0x7f)
      .map((code) => String.fromCharCode(code)),
    maxLength: 40,
  })
  .map((value) => value.trim());

describe('parseResponseHead', () => {
  test('a file answer: status, fields in lower case, its length', () => {
    const head = parseResponseHead('HTTP/1.1 206 Partial Content\r\nContent-Type: image/png\r\nContent-Length: 1024\r\nSet-Cookie: a=1\r\nset-cookie: b=2');
    assert.equal(head?.status, 206);
    assert.deepEqual({ ...head.headers }, { 'content-type': 'image/png', 'content-length': '1024', 'set-cookie': ['a=1', 'b=2'] });
    assert.equal(head.bodyLength, 1024);
    assert.equal(head.keepAlive, true);
  });

  test('the connection stays open after an HTTP/1.1 answer unless it says Connection: close; never after HTTP/1.0', () => {
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nConnection: keep-alive, Upgrade\r\nContent-Length: 1')?.keepAlive, true);
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\nContent-Length: 1')?.keepAlive, false);
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 1')?.keepAlive, true);
    assert.equal(parseResponseHead('HTTP/1.0 200 OK\r\nContent-Length: 1')?.keepAlive, false);
  });

  test('answers that never have a body have length 0; 1xx, chunked, no length or a repeated length: not framed by a length', () => {
    assert.equal(parseResponseHead('HTTP/1.1 304 Not Modified\r\nETag: "x"')?.bodyLength, 0);
    assert.equal(parseResponseHead('HTTP/1.1 204 No Content')?.bodyLength, 0);
    assert.equal(parseResponseHead('HTTP/1.1 100 Continue')?.bodyLength, null);
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5')?.bodyLength, null);
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nContent-Type: text/plain')?.bodyLength, null);
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5')?.bodyLength, null);
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nContent-Length: -5')?.bodyLength, null);
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nContent-Length: 0x10')?.bodyLength, null);
  });

  test('anything but a plain head is not read: bad status lines, folded lines, control characters, nameless fields', () => {
    for (const head of [
      'HTTP/2 200 OK',
      'HTTP/1.1 20 OK',
      'HTTP/1.1 200OK',
      'ICY 200 OK',
      'HTTP/1.1 200 OK\r\nX-A: 1\r\n folded',
      'HTTP/1.1 200 OK\r\nX-A : 1',
      'HTTP/1.1 200 OK\r\n: nameless',
      'HTTP/1.1 200 OK\r\nX-A: bare\nlf',
      'HTTP/1.1 200 OK\r\nX-A: nul\0',
      'HTTP/1.1 200 OK\r\nX-A: del\x7f',
      'HTTP/1.1 200 OK\r\nX\u0100: wide',
    ]) {
      assert.equal(parseResponseHead(head), undefined, JSON.stringify(head));
    }
  });

  test('property: any head, well formed or not, is read as a reading line by line reads it', () => {
    /** The grammar applied one line at a time: a status line, then lines of a token, a colon and a value of visible bytes, spaces and tabs. */
    const lineByLine = (head: string): Record<string, string | string[]> | undefined => {
      const [statusLine, ...fields] = head.split('\r\n');
      if (!/^HTTP\/1\.[01] [1-9]\d\d(?: [\t\x20-\x7e\x80-\xff]*)?$/.test(statusLine!)) return undefined;
      const headers: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
      for (const line of fields) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon);
        const value = line.slice(colon + 1);
        if (colon <= 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || !/^[\t\x20-\x7e\x80-\xff]*$/.test(value)) return undefined;
        const key = name.toLowerCase();
        const trimmed = value.replace(/^[ \t]+|[ \t]+$/g, '');
        const before = headers[key];
        headers[key] = before === undefined ? trimmed : [...(Array.isArray(before) ? before : [before]), trimmed];
      }
      return headers;
    };
    const piece = fc.oneof(
      fieldName,
      fieldValue,
      fc.constantFrom(':', ': ', '\r\n', '\r', '\n', '\t', ' ', '\0', '\x7f', '\u0100', 'HTTP/1.1 200 OK', 'HTTP/1.0 404 ', 'HTTP/1.1 099 x'),
    );
    const head = fc.oneof(
      fc.array(piece, { maxLength: 16 }).map((pieces) => pieces.join('')),
      fc
        .tuple(
          fc.constantFrom('HTTP/1.1 200 OK', 'HTTP/1.0 304', 'HTTP/1.1 206 Partial: Content'),
          fc.array(fc.array(piece, { maxLength: 5 }), { maxLength: 8 }),
        )
        .map(([status, lines]) => [status, ...lines.map((line) => line.join(''))].join('\r\n')),
    );
    fc.assert(
      fc.property(head, (text) => {
        assert.deepEqual(parseResponseHead(text)?.headers, lineByLine(text));
      }),
      { numRuns: 5000 },
    );
  });

  test('property: every head of valid fields reads back as it was written, byte for byte', () => {
    fc.assert(
      fc.property(fc.integer({ min: 200, max: 599 }), fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 12 }), (status, fields) => {
        const written = fields.filter(([name]) => !['content-length', 'transfer-encoding'].includes(name.toLowerCase()));
        const head = [`HTTP/1.1 ${status} Whatever Reason`, ...written.map(([name, value]) => `${name}:\t ${value} `), 'Content-Length: 7'].join('\r\n');
        const parsed = parseResponseHead(head);
        assert.ok(parsed);
        const expected = new Map<string, string[]>();
        for (const [name, value] of written) expected.set(name.toLowerCase(), [...(expected.get(name.toLowerCase()) ?? []), value]);
        for (const [name, values] of expected) assert.deepEqual(parsed.headers[name], values.length === 1 ? values[0] : values);
        assert.equal(parsed.bodyLength, status === 204 || status === 304 ? 0 : 7);
      }),
    );
  });
});

describe('couldStartResponseHead', () => {
  test('every prefix of a valid head may start one; garbage and bad status lines may not', () => {
    const head = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc');
    for (let end = 0; end <= head.length; end += 1) assert.equal(couldStartResponseHead(head.subarray(0, end)), true, `first ${end} bytes`);
    assert.equal(couldStartResponseHead(Buffer.from('\0\x83\x06')), false);
    assert.equal(couldStartResponseHead(Buffer.from('HTTP/2')), false);
    assert.equal(couldStartResponseHead(Buffer.from('HTTP/1.1 abc\r\n')), false);
  });

  test('property: bytes that do not start with HTTP/1. are refused at once', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => {
        const buffer = Buffer.from(bytes);
        fc.pre(!Buffer.from('HTTP/1.').subarray(0, Math.min(buffer.length, 7)).equals(buffer.subarray(0, 7)));
        assert.equal(couldStartResponseHead(buffer), false);
      }),
    );
  });
});

describe('requestHead', () => {
  test('the request line, Host, the fields (their own Host and Connection left out): a persistent connection', () => {
    assert.equal(
      requestHead('GET', '/view?filename=a.png', '127.0.0.1:8188', { host: 'evil', connection: 'keep-alive', 'comfy-user': 'u1', cookie: ['a=1', 'b=2'] }),
      'GET /view?filename=a.png HTTP/1.1\r\nhost: 127.0.0.1:8188\r\ncomfy-user: u1\r\ncookie: a=1\r\ncookie: b=2\r\n\r\n',
    );
  });

  test('a target or field that would not go on the wire as it is: none is written', () => {
    assert.equal(requestHead('GET', '/view?a=1 HTTP/1.1\r\nX-Smuggled: 1', 'h', {}), undefined);
    assert.equal(requestHead('GET', '/vïew', 'h', {}), undefined);
    assert.equal(requestHead('GET', '/view', 'h', { 'x-a': 'one\r\nx-smuggled: 1' }), undefined);
    assert.equal(requestHead('GET', '/view', 'h', { 'x a': 'one' }), undefined);
  });
});
