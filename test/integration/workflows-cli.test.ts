// `comfy-gate workflows`: put, list, show and delete on a store directory or a PostgreSQL database, checked as the API checks, and seen at once by a gateway serving it.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { freshPostgresDatabase } from '../contract/backends.js';

const WORKFLOW = {
  description: 'Saves an image',
  prompt: {
    '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 20 } },
    '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'cli' } },
  },
  inputs: { steps: { node: '3', input: 'steps', type: 'integer', min: 1, max: 40, default: 20 }, seed: { node: '3', input: 'seed', type: 'integer' } },
};

const fresh = await freshPostgresDatabase();

/** The suite on one store: `storeArgs` name it, to the gateway and to the commands alike. */
function workflowSuite(name: string, options: { storeArgs: string[]; skip?: string; cleanup?(): Promise<void> }): void {
  describe(`comfy-gate workflows (${name})`, { skip: options.skip ?? false }, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let dir: { path: string; remove(): Promise<void> };
    let admin: string;
    const cli = (...args: string[]): ReturnType<typeof runCli> =>
      runCli(['workflows', ...args, '--user-directory', join(dir.path, 'user'), ...options.storeArgs]);

    before(async () => {
      comfy = await startFakeComfyUI({ stepDelayMs: 2 });
      dir = await tempUserDirectory();
      gateway = await startGateway({ upstream: comfy.url, userDirectory: join(dir.path, 'user'), args: ['--require-api-auth', ...options.storeArgs] });
      admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
      await writeFile(join(dir.path, 'good.json'), JSON.stringify(WORKFLOW));
      await writeFile(
        join(dir.path, 'bad.json'),
        JSON.stringify({ prompt: WORKFLOW.prompt, inputs: { x: { node: '7', input: 'seed', type: 'integer', min: 5, max: 1 } } }),
      );
    });
    after(async () => {
      await gateway?.stop();
      await comfy?.close();
      await dir?.remove();
      await options.cleanup?.();
    });

    test('put registers a workflow a running gateway serves at once; list and show print it; a replacement is reported', async () => {
      const put = await cli('put', 'save', '--file', join(dir.path, 'good.json'));
      assert.equal(put.code, 0, put.stderr);
      assert.match(put.stdout, /Registered workflow save \(2 inputs\)/);
      const served = await send(gateway.url, '/api/gateway/workflows/save', { key: admin });
      assert.equal(served.status, 200, 'the gateway reads the file the CLI wrote');
      assert.deepEqual(served.json().inputs, WORKFLOW.inputs);
      const ran = await send(gateway.url, '/api/gateway/workflows/save/run', { method: 'POST', key: admin, body: { inputs: { seed: 9 }, wait: 30 } });
      assert.equal(ran.status, 200, ran.text);
      const list = await cli('list');
      assert.equal(list.code, 0);
      assert.match(list.stdout, /^NAME\s+INPUTS\s+UPDATED\s+DESCRIPTION\nsave\s+steps, seed\s+\S+Z\s+Saves an image\n$/);
      const show = await cli('show', 'save');
      assert.match(show.stdout, /name:\s+save/);
      assert.match(show.stdout, /steps\s+integer\s+3\.steps\s+20\s+min 1 max 40/);
      assert.match(show.stdout, /seed\s+integer\s+3\.seed\s+\(required\)/);
      const json = JSON.parse((await cli('show', 'save', '--json')).stdout) as { prompt: unknown };
      assert.deepEqual(json.prompt, WORKFLOW.prompt);
      assert.match((await cli('put', 'save', '--file', join(dir.path, 'good.json'))).stdout, /Replaced workflow save/);
      const audit = (await send(gateway.url, '/api/audit', { key: admin })).json<{ entries: Array<{ actor: string; action: string }> }>().entries;
      assert.deepEqual(
        audit.filter((e) => e.actor === 'cli').map((e) => e.action),
        ['workflow.create', 'workflow.replace'],
      );
    });

    test('put, show and the gateway keep numbers as the file wrote them: a 64-bit seed exact, 7.0 a float', async () => {
      const exact =
        '{"prompt": {"3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615, "cfg": 7.0}}, ' +
        '"9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "cli-exact"}}}, ' +
        '"inputs": {"seed": {"node": "3", "input": "seed", "type": "integer", "max": 18446744073709551615, "default": 18446744073709551614}}}';
      await writeFile(join(dir.path, 'exact.json'), exact);
      const put = await cli('put', 'exact', '--file', join(dir.path, 'exact.json'));
      assert.equal(put.code, 0, put.stderr);
      const show = await cli('show', 'exact');
      assert.match(show.stdout, /seed\s+integer\s+3\.seed\s+18446744073709551614\s+max 18446744073709551615/);
      const printed = (await cli('show', 'exact', '--json')).stdout;
      for (const number of [/"seed": 18446744073709551615,/, /"cfg": 7\.0\n/, /"max": 18446744073709551615,/, /"default": 18446744073709551614\n/]) {
        assert.match(printed, number, 'show --json');
      }
      const ran = await send(gateway.url, '/api/gateway/workflows/exact/run', { method: 'POST', key: admin, body: { wait: 30 } });
      assert.equal(ran.status, 200, ran.text);
      const inputs = (comfy.prompts.at(-1)!.body.prompt as Record<string, { inputs: Record<string, unknown> }>)['3']!.inputs;
      assert.deepEqual([String(inputs.seed), String(inputs.cfg)], ['18446744073709551614', '7.0'], 'ComfyUI gets them as written');
      assert.equal((await cli('delete', 'exact', '--yes')).code, 0);
    });

    test('put lists every problem and stores nothing; bad arguments exit 2; delete needs --yes without a terminal', async () => {
      const bad = await cli('put', 'bad', '--file', join(dir.path, 'bad.json'));
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /inputs\.x\.node: no node "7" in the graph/);
      assert.match(bad.stderr, /inputs\.x\.min: greater than max \(1\)/);
      assert.equal((await send(gateway.url, '/api/gateway/workflows/bad', { key: admin })).status, 404);
      assert.equal((await cli('put', 'nofile')).code, 2);
      assert.equal((await cli('show')).code, 2);
      assert.equal((await cli('show', 'nope')).code, 1);
      assert.equal((await cli('frobnicate')).code, 2);
      assert.equal((await cli('delete', 'save')).code, 2, 'no terminal to confirm on');
      const deleted = await cli('delete', 'save', '--yes');
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.equal((await send(gateway.url, '/api/gateway/workflows/save', { key: admin })).status, 404);
      assert.match((await cli('list')).stdout, /No workflows/);
    });
  });
}

workflowSuite('JSON files', { storeArgs: [] });
workflowSuite('PostgreSQL', 'skip' in fresh ? { storeArgs: [], skip: fresh.skip } : { storeArgs: ['--database-url', fresh.url], cleanup: fresh.drop });
