// Numbers in a prompt, and in a registered workflow and its run inputs, reach ComfyUI, and come back in its queue and history, as the client wrote them: a 64-bit seed exact, 7.0 a float.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { waitForHistory } from '../helpers/comfy-client.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { startTwoKeyStage, type TwoKeyStage } from '../helpers/two-keys.js';
import { waitFor } from '../helpers/wait-for.js';

/** A prompt as Python's json.dumps writes one: the largest seed ComfyUI takes, floats with a `.0`, an exponent, a big integer elsewhere. */
const PYTHON_PROMPT =
  '{"prompt": {"3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615, "steps": 2, "cfg": 7.0, "denoise": 1e-05}}, ' +
  '"9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "exact"}}}, "extra_data": {"batch": 12345678901234567890123}}';

/** Each number of PYTHON_PROMPT as it must read wherever ComfyUI or the gateway writes it. */
const WRITTEN = [/"seed":\s*18446744073709551615[,}]/, /"cfg":\s*7\.0[,}]/, /"denoise":\s*1e-05[,}]/, /"batch":\s*12345678901234567890123[,}]/];

/** A workflow as Python's json.dumps writes one: a 64-bit seed and floats in the graph, a 64-bit default and bound, an enum of floats. */
const PYTHON_WORKFLOW =
  '{"prompt": {"3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615, "steps": 2, "cfg": 7.0, "denoise": 1e-05}}, ' +
  '"9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "exact-workflow"}}}, ' +
  '"inputs": {"seed": {"node": "3", "input": "seed", "type": "integer", "min": 0, "max": 18446744073709551615, "default": 18446744073709551614}, ' +
  '"cfg": {"node": "3", "input": "cfg", "type": "enum", "values": [7.0, 8.5], "default": 8.5}}}';

describe('numbers in a prompt, as the client wrote them', () => {
  let stage: TwoKeyStage;

  before(async () => {
    stage = await startTwoKeyStage([], { stepDelayMs: 100 });
  });
  after(() => stage.close());

  for (const who of ['a user key', 'an admin key'] as const) {
    test(`${who}: ComfyUI gets each number as written, and the key reads them back so in the queue and the history`, async () => {
      const key = who === 'a user key' ? stage.alice.api_key : stage.admin;
      const res = await send(stage.gateway.url, '/api/prompt', { method: 'POST', key, body: PYTHON_PROMPT, headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 200, res.text);
      const promptId = res.json<{ prompt_id: string }>().prompt_id;
      await waitFor(() => stage.comfy.prompts.some((sent) => sent.id === promptId), 'ComfyUI got the prompt');
      const sent = stage.comfy.prompts.find((p) => p.id === promptId)!.body as {
        prompt: Record<string, { inputs: Record<string, unknown> }>;
        extra_data: Record<string, unknown>;
      };
      const inputs = sent.prompt['3']!.inputs;
      // The fake reads numbers as Python does: each keeps the text it came with.
      assert.deepEqual([inputs.seed, inputs.cfg, inputs.denoise, sent.extra_data.batch].map(String), [
        '18446744073709551615',
        '7.0',
        '1e-05',
        '12345678901234567890123',
      ]);
      const queue = await send(stage.gateway.url, '/api/queue', { key });
      assert.ok(queue.text.includes(promptId), `the prompt is in the queue: ${queue.text}`);
      for (const number of WRITTEN) assert.match(queue.text, number, 'in the queue');
      await waitForHistory(stage.gateway.url, key, promptId, 30_000);
      const history = await send(stage.gateway.url, `/api/history/${promptId}`, { key });
      for (const number of WRITTEN) assert.match(history.text, number, 'in the history');
    });
  }

  test('a large prompt full of 7.0, parsed in a worker thread: ComfyUI gets each number as written, and an object like a kept number as an object', async () => {
    const bulk = Array(500_000).fill('7.0').join(', ');
    const lookAlike = '{"value": "7.0", "isLosslessNumber": true}';
    const body = `${PYTHON_PROMPT.slice(0, -1)}, "bulk": [${bulk}], "look_alike": ${lookAlike}}`;
    const headers = { 'content-type': 'application/json' };
    const res = await send(stage.gateway.url, '/api/prompt', { method: 'POST', key: stage.alice.api_key, body, headers });
    assert.equal(res.status, 200, res.text);
    const promptId = res.json<{ prompt_id: string }>().prompt_id;
    await waitFor(() => stage.comfy.prompts.some((sent) => sent.id === promptId), 'ComfyUI got the prompt');
    const sent = stage.comfy.prompts.find((p) => p.id === promptId)!.body as { prompt: Record<string, { inputs: Record<string, unknown> }>; bulk: unknown[] };
    const inputs = sent.prompt['3']!.inputs;
    assert.deepEqual([inputs.seed, inputs.cfg, inputs.denoise].map(String), ['18446744073709551615', '7.0', '1e-05']);
    assert.equal(sent.bulk.length, 500_000);
    assert.ok(
      sent.bulk.every((number) => String(number) === '7.0'),
      'every 7.0 a float',
    );
    assert.deepEqual((sent as unknown as { look_alike: unknown }).look_alike, JSON.parse(lookAlike));

    // Not JSON: the same answers as for a small body, from either route.
    for (const [path, text] of [
      ['/api/prompt', `${body} x`],
      ['/api/prompt', `${PYTHON_PROMPT} x`],
      ['/api/gateway/run', `${body} x`],
      ['/api/gateway/run', `${PYTHON_PROMPT} x`],
    ] as const) {
      const refused = await send(stage.gateway.url, path, { method: 'POST', key: stage.alice.api_key, body: text, headers });
      assert.equal(refused.status, 400, refused.text);
      const [detail] = refused.json<{ details: Array<{ field: string; problem: string }> }>().details;
      if (path === '/api/prompt') assert.deepEqual(detail, { field: 'body', problem: 'not JSON (in UTF-8, without NaN or Infinity)' });
      else assert.throws(() => JSON.parse(text), { name: 'SyntaxError', message: detail!.problem }, 'the problem is what JSON.parse says');
    }
  });

  test('a registered workflow and its run inputs: ComfyUI gets each number as written; bounds and enums compare them as numbers', async () => {
    const headers = { 'content-type': 'application/json' };
    const put = await send(stage.gateway.url, '/api/gateway/workflows/exact', { method: 'PUT', key: stage.admin, body: PYTHON_WORKFLOW, headers });
    assert.equal(put.status, 201, put.text);
    for (const number of [
      /"seed":18446744073709551615[,}]/,
      /"cfg":7\.0[,}]/,
      /"denoise":1e-05[,}]/,
      /"max":18446744073709551615[,}]/,
      /"values":\[7\.0,8\.5\]/,
    ]) {
      assert.match(put.text, number, 'the registered workflow reads back as written');
    }
    const sentFor = async (body: string): Promise<Record<string, unknown>> => {
      const before = stage.comfy.prompts.length;
      const res = await send(stage.gateway.url, '/api/gateway/workflows/exact/run', { method: 'POST', key: stage.alice.api_key, body, headers });
      assert.equal(res.status, 200, res.text);
      await waitFor(() => stage.comfy.prompts.length > before, 'ComfyUI got the prompt');
      // The fake reads numbers as Python does: each keeps the text it came with.
      const inputs = (stage.comfy.prompts.at(-1)!.body.prompt as Record<string, { inputs: Record<string, unknown> }>)['3']!.inputs;
      return Object.fromEntries(['seed', 'steps', 'cfg', 'denoise'].map((name) => [name, String(inputs[name])]));
    };
    assert.deepEqual(await sentFor('{"inputs": {"seed": 18446744073709551615, "cfg": 7.0}}'), {
      seed: '18446744073709551615',
      steps: '2',
      cfg: '7.0',
      denoise: '1e-05',
    });
    assert.deepEqual(await sentFor('{}'), { seed: '18446744073709551614', steps: '2', cfg: '8.5', denoise: '1e-05' }, 'the defaults, as written');
    const refused = await send(stage.gateway.url, '/api/gateway/workflows/exact/run', {
      method: 'POST',
      key: stage.alice.api_key,
      body: '{"inputs": {"seed": 1.8446744073709552e20, "cfg": 7.5}}',
      headers,
    });
    assert.equal(refused.status, 400, refused.text);
    assert.deepEqual(refused.json<{ details: unknown }>().details, [
      { field: 'inputs.seed', problem: 'above the maximum 18446744073709551615' },
      { field: 'inputs.cfg', problem: 'not one of [7.0,8.5]' },
    ]);
  });

  test('a 64-bit bound holds exactly: 2^64 against a max of 2^64 - 1 is refused, as is a float Python reads as 2^64; 2^64 - 1 runs with its digits', async () => {
    const headers = { 'content-type': 'application/json' };
    const graph = '{"3": {"class_type": "KSampler", "inputs": {"seed": 0, "steps": 2}}, "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}}}';
    const register = (seed: string): Promise<TestResponse> =>
      send(stage.gateway.url, '/api/gateway/workflows/seed-bound', {
        method: 'PUT',
        key: stage.admin,
        body: `{"prompt": ${graph}, "inputs": {"seed": {"node": "3", "input": "seed", "type": "integer", ${seed}}}}`,
        headers,
      });
    const upsideDown = await register('"min": 18446744073709551615, "max": 18446744073709551614');
    assert.equal(upsideDown.status, 400, upsideDown.text);
    assert.deepEqual(upsideDown.json<{ details: unknown }>().details, [{ field: 'inputs.seed.min', problem: 'greater than max (18446744073709551614)' }]);
    const put = await register('"min": 18446744073709551614, "max": 18446744073709551615');
    assert.equal(put.status, 201, put.text);

    const run = (seed: string): Promise<TestResponse> =>
      send(stage.gateway.url, '/api/gateway/workflows/seed-bound/run', {
        method: 'POST',
        key: stage.alice.api_key,
        body: `{"inputs": {"seed": ${seed}}}`,
        headers,
      });
    const sentBefore = stage.comfy.prompts.length;
    for (const [seed, problem] of [
      ['18446744073709551616', 'above the maximum 18446744073709551615'],
      // Python reads a number with a fraction or an exponent as a float: each of these is 2^64 in ComfyUI.
      ['18446744073709551615.0', 'above the maximum 18446744073709551615'],
      ['1.8446744073709551615e19', 'above the maximum 18446744073709551615'],
      ['18446744073709551613', 'below the minimum 18446744073709551614'],
      ['18446744073709551614.5', 'not a whole number'],
    ] as const) {
      const refused = await run(seed);
      assert.equal(refused.status, 400, `${seed}: ${refused.text}`);
      const answer = refused.json<{ error_code: string; details: unknown }>();
      assert.equal(answer.error_code, 'INVALID_REQUEST');
      assert.deepEqual(answer.details, [{ field: 'inputs.seed', problem }], seed);
    }
    assert.equal(stage.comfy.prompts.length, sentBefore, 'ComfyUI got none of them');

    for (const seed of ['18446744073709551615', '18446744073709551614']) {
      const before = stage.comfy.prompts.length;
      const accepted = await run(seed);
      assert.equal(accepted.status, 200, `${seed}: ${accepted.text}`);
      await waitFor(() => stage.comfy.prompts.length > before, 'ComfyUI got the prompt');
      const inputs = (stage.comfy.prompts.at(-1)!.body.prompt as Record<string, { inputs: Record<string, unknown> }>)['3']!.inputs;
      assert.equal(String(inputs.seed), seed, 'sent with its digits');
    }
  });
});
