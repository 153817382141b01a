// The WorkflowStore contract: registered workflows come back whole, their numbers as written, a replacement keeps its creation time, and every store on the same data sees each change at once.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseExactJson, stringifyExactJson } from '../../src/json/exact-json.js';
import type { WorkflowRecord, WorkflowStore } from '../../src/store/types.js';
import { isSkipped, lifecycle, type HarnessOrSkip } from './harness.js';

/** A workflow store as a harness opens it: with a close, which the interface itself does not need. */
export type ClosableWorkflowStore = WorkflowStore & { close(): Promise<void> };

/** A workflow whose inputs are given in an order that is not sorted, to check that it is kept. */
function workflow(name: string, steps = 20): Omit<WorkflowRecord, 'created_at' | 'updated_at'> {
  return {
    name,
    description: `workflow ${name}`,
    prompt: {
      '3': { class_type: 'KSampler', inputs: { seed: 1, steps, cfg: 7.5 } },
      '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'x' } },
    },
    inputs: {
      steps: { node: '3', input: 'steps', type: 'integer', min: 1, max: 50, default: 20 },
      cfg: { node: '3', input: 'cfg', type: 'number', description: 'guidance' },
      prefix: { node: '9', input: 'filename_prefix', type: 'enum', values: ['x', 'y'], default: 'x' },
    },
  };
}

/** A graph and its inputs with numbers JavaScript alone would write otherwise: a 64-bit seed, floats written `7.0` and `1e-05`, as Python writes them. */
const EXACT_GRAPH = '{"3":{"class_type":"KSampler","inputs":{"seed":18446744073709551615,"steps":20,"cfg":7.0,"denoise":1e-05}}}';
const EXACT_INPUTS =
  '{"seed":{"node":"3","input":"seed","type":"integer","min":0,"max":18446744073709551615,"default":18446744073709551615},' +
  '"cfg":{"node":"3","input":"cfg","type":"enum","values":[7.0,8.50]}}';

/** Runs the WorkflowStore contract against one adapter. */
export function workflowStoreContract(name: string, harness: HarnessOrSkip<ClosableWorkflowStore>): void {
  if (isSkipped(harness)) {
    describe(`${name} (WorkflowStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (WorkflowStore contract)`, () => {
    const { open, reopen } = lifecycle(harness);

    test('a registered workflow comes back whole, its inputs in their order, and after a restart', async () => {
      const store = await open();
      assert.deepEqual(await store.list(), []);
      assert.equal(await store.get('b'), undefined);
      const { record, created } = await store.put(workflow('b'), 1_764_000_000.5);
      assert.equal(created, true);
      assert.deepEqual(record, { ...workflow('b'), created_at: 1_764_000_000.5, updated_at: 1_764_000_000.5 });
      await store.put({ ...workflow('a'), description: null }, 1_764_000_001);
      assert.deepEqual(await store.get('b'), record);
      assert.deepEqual(Object.keys((await store.get('b'))!.inputs), ['steps', 'cfg', 'prefix']);
      assert.deepEqual(
        (await store.list()).map((w) => w.name),
        ['a', 'b'],
        'listed by name',
      );
      const again = await reopen();
      assert.deepEqual(await again.get('b'), record);
      assert.equal((await again.get('a'))!.description, null);
    });

    test('numbers of the graph and of the inputs come back with the texts they were written with, and after a restart', async () => {
      const store = await open();
      const exact = { name: 'exact', description: null, prompt: parseExactJson(EXACT_GRAPH), inputs: parseExactJson(EXACT_INPUTS) } as Parameters<
        WorkflowStore['put']
      >[0];
      const texts = (record: WorkflowRecord | undefined): string[] => [stringifyExactJson(record?.prompt), stringifyExactJson(record?.inputs)];
      assert.deepEqual(texts((await store.put(exact, 1)).record), [EXACT_GRAPH, EXACT_INPUTS], 'as put answers it');
      assert.deepEqual(texts(await store.get('exact')), [EXACT_GRAPH, EXACT_INPUTS]);
      assert.deepEqual(texts((await store.list())[0]), [EXACT_GRAPH, EXACT_INPUTS]);
      assert.deepEqual(texts(await (await reopen()).get('exact')), [EXACT_GRAPH, EXACT_INPUTS]);
    });

    test('a replacement keeps the creation time; a delete removes it once', async () => {
      const store = await open();
      await store.put(workflow('w'), 100);
      const { record, created } = await store.put(workflow('w', 7), 200);
      assert.equal(created, false);
      assert.equal(record.created_at, 100);
      assert.equal(record.updated_at, 200);
      assert.equal(((await store.get('w'))!.prompt['3'] as { inputs: { steps: number } }).inputs.steps, 7);
      const marked = await store.put({ ...workflow('w'), openai_images: { prompt: 'prefix', n: 'steps' } }, 300);
      assert.deepEqual((await store.get('w'))!.openai_images, { prompt: 'prefix', n: 'steps' });
      assert.deepEqual(marked.record.openai_images, { prompt: 'prefix', n: 'steps' });
      await store.put(workflow('w'), 400);
      assert.equal(Object.hasOwn((await store.get('w'))!, 'openai_images'), false, 'a replacement without the marking drops it');
      assert.equal(await store.delete('w'), true);
      assert.equal(await store.delete('w'), false);
      assert.equal(await store.get('w'), undefined);
      assert.deepEqual(await store.list(), []);
    });

    test('a change through one store is seen at once through another on the same data; concurrent writes all land', async () => {
      const [a, b] = [await open(), await open()];
      await a.put(workflow('shared'), 1);
      assert.equal((await b.get('shared'))?.name, 'shared');
      await b.delete('shared');
      assert.equal(await a.get('shared'), undefined);
      await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).put(workflow(`w${i}`), i)));
      assert.equal((await a.list()).length, 12);
    });
  });
}
