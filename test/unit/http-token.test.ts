// Property tests of HTTP tokens (RFC 9110 §5.6.2): exactly the listed characters, at least one of them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isToken } from '../../src/proxy/http-token.js';

const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

test('any run of token characters is a token', () => {
  fc.assert(fc.property(fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 1, maxLength: 30 }), (text) => isToken(text)));
});

test('a text with any other character in it, anywhere, is not; nor is the empty text', () => {
  const other = fc
    .integer({ min: 0, max: 0x2ff })
    .map((code) => String.fromCharCode(code))
    .filter((char) => !TOKEN_CHARS.includes(char));
  const around = fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), maxLength: 10 });
  fc.assert(fc.property(around, other, around, (before, char, after) => !isToken(before + char + after)));
  assert.equal(isToken(''), false);
  for (const separator of ['(', ')', ',', '/', ':', ';', '<', '=', '>', '?', '@', '[', '\\', ']', '{', '}', '"', ' ', '\t', '\n'])
    assert.equal(isToken(`a${separator}b`), false, separator);
});
