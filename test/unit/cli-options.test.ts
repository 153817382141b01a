// The CLI's argument reading: a generated key_id that starts with "-" (one in 64) is a value, never a flag.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCommandLine } from '../../src/cli/options.js';
import { UsageError } from '../../src/cli/usage-error.js';

const DASHED = '-AbCdEfGhIjKlMnOpQrStU';

describe('CLI arguments', () => {
  test('a dashed key_id is the KEY_ID, before or after the flags, or after --', () => {
    for (const args of [
      [DASHED, '--json'],
      ['--json', DASHED],
      ['--json', '--', DASHED],
    ]) {
      const parsed = parseCommandLine(args, 'keys show', { json: { type: 'boolean' } }, { keyId: true });
      assert.deepEqual({ ...parsed?.values }, { json: true }, args.join(' '));
      assert.equal(parsed?.keyId, DASHED, args.join(' '));
    }
  });

  test('a dashed key_id is the value of a flag that takes one', () => {
    assert.deepEqual(
      { ...parseCommandLine(['--key', DASHED, '--days', '7'], 'usage', { key: { type: 'string' }, days: { type: 'string' } })?.values },
      { key: DASHED, days: '7' },
    );
  });

  test('unknown flags are still refused', () => {
    assert.throws(() => parseCommandLine(['--nme', 'x'], 'keys show', {}, { keyId: true }), UsageError);
    assert.throws(() => parseCommandLine(['-x'], 'keys show', {}, { keyId: true }), UsageError);
  });
});
