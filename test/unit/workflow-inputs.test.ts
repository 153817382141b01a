// The pure parts of named workflows: names refused at registration, image sources read from run inputs, and the graph copy a run makes.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GatewayError } from '../../src/errors.js';
import { parseExactJson, stringifyExactJson } from '../../src/json/exact-json.js';
import type { WorkflowRecord } from '../../src/store/types.js';
import { parseWorkflowDefinition } from '../../src/workflows/definition.js';
import { buildPrompt, checkRunInputs } from '../../src/workflows/run-inputs.js';

const GRAPH = { '1': { class_type: 'LoadImage', inputs: { image: 'a.png' } }, '2': { class_type: 'KSampler', inputs: { seed: 1 } } };

/** The problems a registration body gets, as `field: problem`, read as the gateway reads it. */
function problemsOf(body: string): string[] {
  try {
    parseWorkflowDefinition('w', parseExactJson(body));
  } catch (error) {
    assert.ok(error instanceof GatewayError);
    return (error.details!.details as Array<{ field: string; problem: string }>).map((p) => `${p.field}: ${p.problem}`);
  }
  return [];
}

const workflow = (inputs: WorkflowRecord['inputs']): WorkflowRecord => ({ name: 'w', prompt: GRAPH, description: null, inputs, created_at: 0, updated_at: 0 });

describe('workflow definitions and run inputs', () => {
  test('__proto__ is refused as an input name and as a node id (JSON can carry either as a plain key)', () => {
    assert.deepEqual(problemsOf(`{"prompt": ${JSON.stringify(GRAPH)}, "inputs": {"__proto__": {"node": "2", "input": "seed", "type": "integer"}}}`), [
      'inputs.__proto__: not a name of letters, digits and _ (1 to 64, not starting with a digit)',
    ]);
    assert.ok(
      problemsOf('{"prompt": {"__proto__": {"class_type": "KSampler", "inputs": {}}}}').includes(
        'prompt.__proto__: a node id must be 1 to 200 bytes of printable characters',
      ),
    );
    assert.deepEqual(problemsOf(`{"prompt": ${JSON.stringify(GRAPH)}, "inputs": {}}`), []);
  });

  test('image values: an upload name, {base64}, a base64 data: URL or {url}; anything else is a problem', () => {
    const images = workflow({ image: { node: '1', input: 'image', type: 'image' } });
    const read = (value: unknown): unknown => {
      const problems: Array<{ field: string; problem: string }> = [];
      const checked = checkRunInputs(images, { image: value }, problems);
      return problems.length > 0 ? problems[0]!.problem : checked.images.image;
    };
    assert.deepEqual(read('cat.png'), { kind: 'upload', name: 'cat.png' });
    assert.deepEqual(read({ base64: 'AAAA' }), { kind: 'base64', data: 'AAAA', contentType: null });
    assert.deepEqual(read('data:Image/PNG;base64,AAAA'), { kind: 'base64', data: 'AAAA', contentType: 'image/png' });
    assert.deepEqual(read({ url: 'https://example.com/a.png' }), { kind: 'url', url: 'https://example.com/a.png' });
    assert.match(String(read('data:image/png,raw')), /must be base64-encoded/);
    assert.match(String(read({ base64: 'AAAA', url: 'x' })), /exactly one field/);
    assert.match(String(read('')), /not an image/);
    assert.match(String(read(['a.png'])), /not an image/);
  });

  test('a run sets its values in a copy of the graph; the workflow keeps its own', () => {
    const seeded = workflow({ seed: { node: '2', input: 'seed', type: 'integer', default: 5 } });
    const problems: Array<{ field: string; problem: string }> = [];
    const { values } = checkRunInputs(seeded, undefined, problems);
    assert.deepEqual([values, problems], [{ seed: 5 }, []], 'no inputs at all: every default');
    const prompt = buildPrompt(seeded, { seed: 9 }) as typeof GRAPH;
    assert.equal(prompt['2'].inputs.seed, 9);
    assert.equal(GRAPH['2'].inputs.seed, 1);
    checkRunInputs(seeded, [1], problems);
    assert.deepEqual(problems, [{ field: 'inputs', problem: 'not an object of input name to value' }]);
  });

  test('numbers kept as their text (a 64-bit seed, 7.0) are numbers: bounds and enums compare them, and a run keeps their text', () => {
    const graph = '{"2": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615, "cfg": 7.0}}}';
    const inputs =
      '{"seed": {"node": "2", "input": "seed", "type": "integer", "min": 0, "max": 18446744073709551615, "default": 18446744073709551614},' +
      ' "cfg": {"node": "2", "input": "cfg", "type": "enum", "values": [7.0, 8.5, 18446744073709551615, 18446744073709551614]}}';
    assert.deepEqual(problemsOf(`{"prompt": ${graph}, "inputs": ${inputs}}`), []);
    assert.deepEqual(problemsOf(`{"prompt": ${graph}, "inputs": {"cfg": {"node": "2", "input": "cfg", "type": "enum", "values": [7, 7.0]}}}`), [
      'inputs.cfg.values: lists a value twice',
    ]);
    assert.deepEqual(problemsOf(`{"prompt": ${graph}, "inputs": {"seed": {"node": "2", "input": "seed", "type": "integer", "min": 2.50, "max": 1e400}}}`), [
      'inputs.seed.min: not a whole number',
      'inputs.seed.max: not a whole number',
    ]);
    assert.deepEqual(problemsOf('{"prompt": 18446744073709551615}'), ['prompt: not an object (the API-format graph)']);
    const exact = { ...parseWorkflowDefinition('w', parseExactJson(`{"prompt": ${graph}, "inputs": ${inputs}}`)), created_at: 0, updated_at: 0 };
    const run = (given: string): { sent?: string; problems: string[] } => {
      const problems: Array<{ field: string; problem: string }> = [];
      const { values } = checkRunInputs(exact, parseExactJson(given), problems);
      if (problems.length > 0) return { problems: problems.map((p) => `${p.field}: ${p.problem}`) };
      return { sent: stringifyExactJson((buildPrompt(exact, values)['2'] as { inputs: unknown }).inputs), problems: [] };
    };
    assert.deepEqual(run('{"cfg": 7}'), { sent: '{"seed":18446744073709551614,"cfg":7}', problems: [] }, 'the default, exact');
    assert.deepEqual(run('{"seed": 18446744073709551615, "cfg": 7.00}'), { sent: '{"seed":18446744073709551615,"cfg":7.00}', problems: [] });
    assert.deepEqual(run('{"seed": 18446744073709551613, "cfg": 18446744073709551614}').sent, '{"seed":18446744073709551613,"cfg":18446744073709551614}');
    assert.deepEqual(run('{"seed": 1.8446744073709552e20, "cfg": 18446744073709551613}').problems, [
      'inputs.seed: above the maximum 18446744073709551615',
      'inputs.cfg: not one of [7.0,8.5,18446744073709551615,18446744073709551614]',
    ]);
    assert.deepEqual(run('{"seed": 2.5, "cfg": 1e400}').problems, [
      'inputs.seed: not a whole number',
      'inputs.cfg: not one of [7.0,8.5,18446744073709551615,18446744073709551614]',
    ]);
    assert.equal(
      stringifyExactJson(exact.prompt),
      '{"2":{"class_type":"KSampler","inputs":{"seed":18446744073709551615,"cfg":7.0}}}',
      'the workflow keeps its own',
    );
  });
});
