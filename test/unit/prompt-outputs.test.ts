// Unit tests of promptOutputsOf: a history entry's files, but those of the nodes ComfyUI took from its cache.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileId, promptOutputsOf } from '../../src/isolation/files.js';

const image = (filename: string): { filename: string; subfolder: string; type: string } => ({ filename, subfolder: '', type: 'output' });

describe('promptOutputsOf', () => {
  test("a cached node's files are left out: an earlier prompt, maybe another key's, made them", () => {
    const entry = {
      outputs: { '9': { images: [image('earlier_00001_.png')] }, '12': { images: [image('fresh_00001_.png')] } },
      status: {
        completed: true,
        messages: [
          ['execution_start', { prompt_id: 'p' }],
          ['execution_cached', { nodes: ['3', '9'], prompt_id: 'p' }],
          ['execution_success', { prompt_id: 'p' }],
        ],
      },
    };
    assert.deepEqual(promptOutputsOf(entry), { files: [fileId('output', '', 'fresh_00001_.png')], completed: true });
  });

  test('an entry without messages, or with other shapes, lists every file', () => {
    const outputs = { '9': { images: [image('a.png')] } };
    for (const status of [
      undefined,
      { completed: false },
      { messages: 'none' },
      { messages: [['execution_cached', null]] },
      { messages: [['execution_cached', { nodes: 'x' }]] },
    ]) {
      assert.deepEqual(promptOutputsOf({ outputs, status }).files, [fileId('output', '', 'a.png')], JSON.stringify(status));
    }
  });
});
