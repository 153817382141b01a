// The prompt policy check on its own: globs, literal and linked inputs, the default policy's reach, and the strict policy schema.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { effectivePolicy, globPattern, promptViolations } from '../../src/policy/check.js';
import { parseNodeReplacements } from '../../src/policy/node-replacements.js';
import { parsePolicy, policyProblems } from '../../src/policy/schema.js';

describe('prompt policy check', () => {
  test('a glob matches the whole class_type, case-sensitively; only * is special', () => {
    assert.ok(globPattern('Save*').test('SaveImage'));
    assert.ok(globPattern('*Upscale*').test('LatentUpscaleBy'));
    assert.ok(!globPattern('Save*').test('PreviewSaveImage'), 'anchored at the start');
    assert.ok(!globPattern('KSampler').test('KSamplerAdvanced'), 'anchored at the end');
    assert.ok(!globPattern('saveimage').test('SaveImage'), 'case-sensitive');
    assert.ok(!globPattern('Load.Image').test('LoadXImage'), 'a dot is a dot');
    assert.ok(globPattern('Load(Image)?').test('Load(Image)?'), 'regular expression characters are literal');
  });

  test("a node whose class_type ComfyUI replaces is checked as it is and as the node ComfyUI runs, with the mapping's inputs", () => {
    const replacements = parseNodeReplacements({
      OldLatent: [
        {
          new_node_id: 'EmptyLatentImage',
          input_mapping: [
            { new_id: 'width', old_id: 'w' },
            { new_id: 'height', set_value: 4096 },
            { new_id: 'batch_size', old_id: 'missing' },
          ],
        },
        { new_node_id: 'NotApplied' },
      ],
      Unreadable: [{ new_node_id: 5 }],
      NoMapping: [{ new_node_id: 'KSampler', input_mapping: null }],
    });
    assert.deepEqual([...replacements.keys()], ['OldLatent', 'NoMapping'], 'the first replacement of each, those readable');
    const prompt = {
      '1': { class_type: 'OldLatent', inputs: { w: '2048', missing: undefined } },
      '2': { class_type: 'NoMapping', inputs: { steps: 500 } },
    };
    assert.deepEqual(promptViolations({ max_width: 1024, max_height: 1024, max_steps: 30, deny_nodes: ['Old*'] }, prompt, 0, {}, replacements), [
      { node_id: '1', rule: 'deny_nodes', limit: 'Old*', value: 'OldLatent' },
      { node_id: '1', rule: 'max_width', limit: 1024, value: 2048 },
      { node_id: '1', rule: 'max_height', limit: 1024, value: 4096 },
      { node_id: '2', rule: 'max_steps', limit: 30, value: 500 },
    ]);
    assert.deepEqual(promptViolations({ allow_nodes: ['OldLatent'] }, prompt, 0, {}, replacements), [
      { node_id: '1', rule: 'allow_nodes', limit: ['OldLatent'], value: 'EmptyLatentImage' },
      { node_id: '2', rule: 'allow_nodes', limit: ['OldLatent'], value: 'NoMapping' },
      { node_id: '2', rule: 'allow_nodes', limit: ['OldLatent'], value: 'KSampler' },
    ]);
    assert.deepEqual(parseNodeReplacements({ error: 'not found' }).size, 0);
    assert.deepEqual(parseNodeReplacements(undefined).size, 0);
  });

  test('numbers, numeric strings, wrapped values and links are read; other text is refused; other values are left to ComfyUI', () => {
    const prompt = (steps: unknown) => ({ '3': { class_type: 'KSampler', inputs: { steps } } });
    const violations = (steps: unknown) => promptViolations({ max_steps: 30 }, prompt(steps), 0);
    assert.deepEqual(violations(30), []);
    assert.deepEqual(violations(31), [{ node_id: '3', rule: 'max_steps', limit: 30, value: 31 }]);
    assert.deepEqual(violations(' 31 '), [{ node_id: '3', rule: 'max_steps', limit: 30, value: 31 }]);
    assert.deepEqual(violations(['7', 0]), [{ node_id: '3', rule: 'max_steps', limit: 30, value: 'linked' }]);
    assert.deepEqual(violations({ __value__: 31 }), [{ node_id: '3', rule: 'max_steps', limit: 30, value: 31 }]);
    assert.deepEqual(violations({ __value__: ['7', 0] }), [{ node_id: '3', rule: 'max_steps', limit: 30, value: 'linked' }]);
    for (const text of ['many', '', '3_1', '\u0663\u0661', '\x1f31']) {
      assert.deepEqual(violations(text), [{ node_id: '3', rule: 'max_steps', limit: 30, value: 'text' }], JSON.stringify(text));
    }
    for (const other of [null, true, {}, { value: 31 }]) assert.deepEqual(violations(other), [], JSON.stringify(other));
    assert.deepEqual(promptViolations({ max_width: 10 }, prompt(500), 0), [], 'a limit on another input');
    assert.deepEqual(
      promptViolations({ max_steps: 30 }, { '1': { class_type: 'MyCustomSampler', inputs: { steps: 500 } } }, 0),
      [{ node_id: '1', rule: 'max_steps', limit: 30, value: 500 }],
      'an input is read by its name on any node',
    );
  });

  test('the default policy reaches user keys without a policy only', () => {
    const fallback = { max_steps: 30 };
    assert.equal(effectivePolicy({ role: 'user', policy: null }, fallback), fallback);
    assert.equal(effectivePolicy({ role: 'admin', policy: null }, fallback), null);
    assert.deepEqual(effectivePolicy({ role: 'admin', policy: { max_steps: 5 } }, fallback), { max_steps: 5 });
    assert.deepEqual(effectivePolicy({ role: 'user', policy: { workflows_only: false } }, fallback), { workflows_only: false });
    assert.equal(effectivePolicy({ role: 'user', policy: null }, null), null);
  });

  test('the schema lists every problem and keeps only known fields in a fixed order', () => {
    assert.deepEqual(policyProblems({}), []);
    assert.deepEqual(
      policyProblems({ z: 1, allow_nodes: [], max_batch_size: 1_000_000_001, workflows_only: null }).map((p) => p.field),
      ['policy.z', 'policy.max_batch_size', 'policy.workflows_only'],
    );
    assert.deepEqual(
      policyProblems({ deny_nodes: Array(201).fill('A') }).map((p) => p.field),
      ['policy.deny_nodes'],
      'at most 200 globs',
    );
    assert.deepEqual(
      policyProblems({ deny_nodes: ['a\nb'] }).map((p) => p.field),
      ['policy.deny_nodes'],
      'no control characters',
    );
    assert.deepEqual(JSON.stringify(parsePolicy({ max_steps: 5, deny_nodes: ['X'] })), '{"deny_nodes":["X"],"max_steps":5}');
    assert.match(parsePolicy(null) as string, /^policy must be a JSON object or null$/);
  });
});
