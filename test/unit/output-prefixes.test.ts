// Save prefixes of other keys in other case: the index of known outputs' prefixes by shape, and the check of a prompt's prefixes against it.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GatewayError } from '../../src/errors.js';
import { checkOutputPrefixes } from '../../src/isolation/output-names.js';
import { OutputPrefixes, prefixShape } from '../../src/store/output-prefixes.js';

const output = (filename: string, subfolder = '', type = 'output') => ({ node: '9', filename, subfolder, type });
const saving = (prefix: string): Array<[string, unknown]> => [['9', { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: prefix } }]];

describe('output prefixes', () => {
  test('outputs are counted under the prefix they were numbered after, by shape, until their jobs are forgotten', () => {
    const prefixes = new OutputPrefixes();
    prefixes.noted('bob', output('Cat_00001_.png'));
    prefixes.noted('bob', output('Cat_00002_.png'));
    prefixes.noted('carol', output('cat_00001_.webp', 'Album'));
    prefixes.noted('carol', output('ComfyUI_temp_abcde_00001_.png', '', 'temp'));
    prefixes.noted('carol', output('unnumbered.png'));
    assert.deepEqual(prefixes.ofShape(prefixShape('CAT')), [{ prefix: 'Cat', keyIds: ['bob'] }]);
    assert.deepEqual(prefixes.ofShape(prefixShape('album/cat')), [{ prefix: 'Album/cat', keyIds: ['carol'] }]);
    assert.deepEqual(prefixes.ofShape(prefixShape('comfyui_temp_abcde')), [], 'temp files are not saved under a prompt’s prefix');
    prefixes.forgotten('bob', output('Cat_00001_.png'));
    assert.deepEqual(prefixes.ofShape(prefixShape('cat')), [{ prefix: 'Cat', keyIds: ['bob'] }]);
    prefixes.forgotten('bob', output('Cat_00002_.png'));
    assert.deepEqual(prefixes.ofShape(prefixShape('cat')), []);
  });

  test("a prompt's prefix that differs only by case from another key's is refused, its number tokens read as any digits", () => {
    const prefixes = new OutputPrefixes();
    for (const name of ['Cat_00001_.png', 'img2025_00001_.png']) prefixes.noted('bob', output(name));
    prefixes.noted('bob', output('Dog_00001_.png', 'Pets'));
    const jobs = { outputPrefixes: (shape: string) => prefixes.ofShape(shape) };
    const refused = (prefix: string, keyId = 'alice'): boolean => {
      try {
        checkOutputPrefixes(saving(prefix), keyId, jobs);
        return false;
      } catch (error) {
        assert.ok(error instanceof GatewayError && error.status === 403, String(error));
        return true;
      }
    };
    for (const prefix of ['cat', 'CAT', './cAt', 'pets/dog', 'PETS/Dog', 'IMG%year%', 'Img20%month%', 'iMg%second%']) assert.ok(refused(prefix), prefix);
    for (const prefix of ['Cat', 'cats', 'Pets/Dog', 'dog', 'img%year%', 'IMG2024', 'cat%year%']) assert.equal(refused(prefix), false, prefix);
    assert.equal(refused('CAT', 'bob'), false, "a key's own prefix may change its case");
  });
});
