// New key_ids: URL-safe, unique, and never starting with a character a command line or a spreadsheet reads specially.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyId } from '../../src/auth/api-key.js';

test('key_ids are 22 URL-safe characters that start with a letter or a digit', () => {
  const ids = Array.from({ length: 20_000 }, generateKeyId);
  for (const id of ids) assert.match(id, /^[A-Za-z0-9][A-Za-z0-9_-]{21}$/);
  assert.equal(new Set(ids).size, ids.length);
});
