// Attempts to reach routes and entries a user key may not, by any spelling: each gets its exact refusal and ComfyUI receives nothing.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket } from '../helpers/comfy-client.js';
import type { FakeComfyUI } from '../helpers/fake-comfyui.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { rawStatus, send } from '../helpers/http-client.js';
import type { CreatedKey } from '../helpers/keys.js';
import { startTwoKeyStage, type TwoKeyStage } from '../helpers/two-keys.js';

type Attempt = [method: string, target: string, status: number, code: string];

/** The routes a user key must never reach, as ComfyUI serves them (with their `/api` twins where ComfyUI has them). */
const ADMIN_ONLY: Array<[string, string]> = [
  ['POST', '/free'],
  ['POST', '/api/free'],
  ['GET', '/internal/logs'],
  ['GET', '/internal/logs/raw'],
  ['GET', '/internal/folder_paths'],
  ['GET', '/internal/files/output'],
  ['PATCH', '/internal/logs/subscribe'],
  ['GET', '/api/assets'],
  ['POST', '/api/assets'],
  ['POST', '/api/assets/download'],
  ['GET', '/api/assets/3f0c1c55-0000-4000-8000-000000000001'],
  ['GET', '/api/assets/3f0c1c55-0000-4000-8000-000000000001/content'],
  ['PUT', '/api/assets/3f0c1c55-0000-4000-8000-000000000001'],
  ['DELETE', '/api/assets/3f0c1c55-0000-4000-8000-000000000001'],
  ['POST', '/api/assets/from-hash'],
  ['HEAD', '/api/assets/hash/blake3:00ff'],
  ['GET', '/api/tags'],
  ['GET', '/api/tasks/1'],
  ['GET', '/manager/reboot'],
  ['GET', '/api/manager/reboot'],
  ['POST', '/manager/queue/install'],
  ['GET', '/api/manager/queue/start'],
  ['POST', '/v2/manager/queue/task'],
  ['GET', '/api/v2/manager/queue/start'],
  ['POST', '/customnode/install'],
  ['POST', '/api/customnode/install/git_url'],
  ['GET', '/customnode/getlist'],
  ['POST', '/snapshot/restore'],
  ['GET', '/api/snapshot/get_current'],
  ['POST', '/externalmodel/install'],
  ['GET', '/api/externalmodel/getlist'],
  ['GET', '/comfyui_manager/update_comfyui'],
  ['POST', '/v2/customnode/install/git_url'],
  ['GET', '/api/v2/snapshot/getlist'],
  ['GET', '/v2/externalmodel/getlist'],
  ['GET', '/api/v2/comfyui_manager/comfyui_versions'],
  ['OPTIONS', '/internal/logs'],
  ['OPTIONS', '/api/manager/reboot'],
  ['GET', '/api/experiment/models/preview/custom_nodes/0/some-node/data/photo'],
  ['GET', '/experiment/models/preview/datasets/0/faces/portrait'],
  ['GET', '/api/view_metadata/custom_nodes?filename=some-node/model.safetensors'],
  ['GET', '/view_metadata/datasets?filename=faces/lora.safetensors'],
];

/** Routes ComfyUI or a custom node may serve that the table does not know. */
const UNKNOWN: Array<[string, string]> = [
  ['GET', '/my_custom_node/run'],
  ['POST', '/my_custom_node/run'],
  ['POST', '/api/my_custom_node/run'],
  ['DELETE', '/api/my_custom_node/x'],
  ['GET', '/INTERNAL/logs'],
  ['GET', '/Internal/Logs'],
  ['POST', '/FREE'],
  ['POST', '/free/'],
  ['GET', '/internal/'],
  ['GET', '/api/internal/logs'],
  ['GET', '/Manager/reboot'],
  ['GET', '/api/Assets'],
  ['GET', '/jobs'],
  ['GET', '/history/'],
  ['GET', '/HISTORY'],
  ['POST', '/prompt/'],
  ['GET', '/upload/image'],
  ['PUT', '/prompt'],
  ['PATCH', '/queue'],
  ['GET', '/api/view/x'],
  ['POST', '/api/users/x'],
  ['GET', '/api/extensions/x.js'],
  ['GET', '/templates'],
  ['GET', '/x.exe'],
  ['OPTIONS', '/my_custom_node/run'],
];

/** Spellings that aiohttp could read another way than the gateway, each refused with 400 before any rule. */
function ambiguousSpellings(target: string): string[] {
  const path = target.split('?')[0]!;
  const first = path.split('/')[1] ?? '';
  const escapedFirst = `/${first.length > 0 ? `%${first.charCodeAt(0).toString(16)}${first.slice(1)}` : ''}${path.slice(first.length + 1)}`;
  return [
    `${target}#`,
    `${target}#x`,
    `/${target}`,
    `/.${target}`,
    `/x/..${target}`,
    `/%2e${target}`,
    escapedFirst,
    `${path}%2Fx`,
    `${path}\\`,
    `/api//${path.slice(1)}`,
  ];
}

describe('bypass attempts: routes, spellings and entries', () => {
  let stage: TwoKeyStage;
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;
  let alice: CreatedKey;
  let bob: CreatedKey;
  let bobPrompt: string;
  let bobImage: string;

  before(async () => {
    stage = await startTwoKeyStage(['--user-route', 'POST:/opened_node/']);
    ({ comfy, gateway, admin, alice, bob, bobPrompt, bobImage } = stage);
  });
  after(() => stage.close());

  /** Sends one attempt as alice and checks its refusal, and that ComfyUI received nothing at all. */
  async function refused([method, target, status, code]: Attempt, body: object = {}): Promise<void> {
    const before = comfy.requests.length;
    const res = await send(gateway.url, target, { method, key: alice.api_key, ...(['POST', 'PUT', 'PATCH'].includes(method) ? { body } : {}) });
    assert.equal(res.status, status, `${method} ${target}: ${res.text.slice(0, 120)}`);
    if (method !== 'HEAD') assert.equal(res.json().error_code, code, `${method} ${target}`);
    assert.deepEqual(
      comfy.requests.slice(before).map((r) => r.url),
      [],
      `${method} ${target} reached ComfyUI`,
    );
  }

  const attempts: Attempt[] = [
    ...ADMIN_ONLY.map(([m, t]): Attempt => [m, t, 403, 'ROUTE_NOT_ALLOWED']),
    ...UNKNOWN.map(([m, t]): Attempt => [m, t, 403, 'ROUTE_NOT_ALLOWED']),
    ...[...ADMIN_ONLY.slice(0, 8), ['GET', '/api/history'], ['POST', '/api/queue'], ['GET', '/api/manager/reboot']].flatMap(([m, t]) =>
      ambiguousSpellings(t!).map((spelled): Attempt => [m!, spelled, 400, 'INVALID_REQUEST']),
    ),
  ];
  test(`at least 150 attempts are tried (${attempts.length})`, () => assert.ok(attempts.length >= 150));
  for (const attempt of attempts) {
    test(`user key: ${attempt[0]} ${attempt[1]} → ${attempt[2]} ${attempt[3]}`, () => refused(attempt));
  }

  test('a fragment cannot widen a rule: history, queue clear, free, /view, a prompt id', async () => {
    await refused(['GET', '/api/history#', 400, 'INVALID_REQUEST']);
    await refused(['POST', '/api/queue#', 400, 'INVALID_REQUEST'], { clear: true });
    await refused(['POST', '/api/free#', 400, 'INVALID_REQUEST'], { unload_models: true });
    await refused(['GET', `/view?filename=${bobImage}&subfolder=#z`, 400, 'INVALID_REQUEST']);
    await refused(['GET', `/api/history/${bobPrompt}#x`, 400, 'INVALID_REQUEST']);
    await refused(['POST', '/api/history#', 400, 'INVALID_REQUEST'], { delete: [bobPrompt] });
    assert.equal(
      (await send(gateway.url, `/api/history/${bobPrompt}`, { key: bob.api_key })).json<Record<string, unknown>>()[bobPrompt] !== undefined,
      true,
      'bob keeps his entry',
    );
  });

  test('a query that older releases split on ";" cannot name another file', async () => {
    await refused(['GET', `/view?x=1;filename=${bobImage}`, 400, 'INVALID_REQUEST']);
    await refused(['GET', `/view?filename=mine.png&filename=${bobImage}`, 400, 'INVALID_REQUEST']);
  });

  test('a WebSocket upgrade with a fragment or a tricky path is refused, not a 500', async () => {
    for (const [path, status] of [
      ['//ws', 400],
      ['/%77s', 400],
      ['/api/ws/', 403],
      ['/internal/ws', 403],
      ['/my_socket', 403],
    ] as const) {
      const before = comfy.requests.length;
      await assert.rejects(openCollectingSocket(`ws://127.0.0.1:${gateway.port}${path}`, { 'x-api-key': alice.api_key }), { status }, path);
      assert.equal(comfy.requests.length, before, path);
    }
    // A client library drops a fragment before sending; an attacker does not.
    for (const target of ['/ws#', '/ws?clientId=a#b', '/api/ws#x']) {
      const before = comfy.requests.length;
      const upgrade = `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-API-Key: ${alice.api_key}\r\n\r\n`;
      assert.equal(await rawStatus(gateway.port, upgrade), 400, target);
      assert.equal(comfy.requests.length, before, target);
    }
  });

  test('server paths and every file of the custom nodes’ folders are not listed to a user key', async () => {
    const asUser = (await send(gateway.url, '/api/experiment/models', { key: alice.api_key })).json<Array<{ name: string; folders: string[] }>>();
    assert.ok(asUser.some((folder) => folder.name === 'checkpoints'));
    assert.ok(asUser.every((folder) => folder.folders.length === 0));
    const asAdmin = (await send(gateway.url, '/api/experiment/models', { key: admin })).json<Array<{ folders: string[] }>>();
    assert.ok(
      asAdmin.some((folder) => folder.folders.length > 0),
      'admin keys get ComfyUI’s answer',
    );
    for (const target of ['/api/models/custom_nodes', '/models/datasets', '/api/experiment/models/custom_nodes']) {
      const res = await send(gateway.url, target, { key: alice.api_key });
      assert.equal(res.status, 403, target);
      assert.equal(res.json().error_code, 'ROUTE_NOT_ALLOWED');
    }
  });

  test('a file path in the URL cannot start with a drive: older releases join a model preview’s to its folder unchecked', async () => {
    // On Windows `os.path.join(folder, 'C:/…')` is `C:/…`: the preview of any image on the disk, another key's outputs among them.
    const drive = `C:/ComfyUI/output/${bobImage.replace(/\.png$/, '')}`;
    await refused(['GET', `/api/experiment/models/preview/checkpoints/0/${drive}`, 400, 'INVALID_REQUEST']);
    await refused(['GET', `/experiment/models/preview/checkpoints/0/c:${bobImage}`, 400, 'INVALID_REQUEST']);
    await refused(['GET', '/extensions/D:/secret.js', 400, 'INVALID_REQUEST']);
    const before = comfy.requests.length;
    const res = await send(gateway.url, `/api/experiment/models/preview/checkpoints/0/${drive}`, { key: admin });
    assert.notEqual(res.status, 400, 'admin keys get ComfyUI’s answer');
    assert.equal(comfy.requests.length, before + 1);
    for (const target of ['/api/experiment/models/preview/checkpoints/0/sub/model.safetensors', '/extensions/pack/C:x.js']) {
      const allowed = await send(gateway.url, target, { key: alice.api_key });
      assert.notEqual(allowed.status, 400, `${target}: ${allowed.text.slice(0, 100)}`);
      assert.notEqual(allowed.status, 403, target);
    }
  });

  test('a hash file name on /view is not served to a user key', async () => {
    const before = comfy.requests.length;
    const res = await send(gateway.url, '/api/view?filename=blake3:0123456789abcdef', { key: alice.api_key });
    assert.equal(res.status, 400);
    assert.equal(res.json().error_code, 'INVALID_REQUEST');
    assert.equal(
      comfy.requests.slice(before).some((r) => r.url.includes('/view')),
      false,
    );
  });

  test('an admin key reaches the same routes; without a key they need one', async () => {
    for (const target of ['/internal/logs', '/my_custom_node/run', '/api/manager/reboot']) {
      const before = comfy.requests.length;
      const res = await send(gateway.url, target, { key: admin });
      assert.notEqual(res.status, 403, target);
      assert.equal(comfy.requests.length, before + 1, `${target} forwarded for an admin`);
      assert.equal((await send(gateway.url, target)).status, 401);
    }
  });

  test('--user-route opens only its method and prefix, under /api too; ComfyUI receives those', async () => {
    for (const target of ['/opened_node/run', '/api/opened_node/run']) {
      const before = comfy.requests.length;
      const res = await send(gateway.url, target, { method: 'POST', key: alice.api_key, body: {} });
      assert.notEqual(res.status, 403, target);
      assert.equal(comfy.requests[before]?.url, target);
    }
    await refused(['GET', '/opened_node/run', 403, 'ROUTE_NOT_ALLOWED']);
    await refused(['POST', '/opened_nodes/run', 403, 'ROUTE_NOT_ALLOWED']);
    await refused(['POST', '/opened_node%2Frun', 400, 'INVALID_REQUEST']);
  });

  test('the ROUTE_NOT_ALLOWED message names the flag, not the path', async () => {
    const res = await send(gateway.url, `/my_custom_node/${bobPrompt}`, { key: alice.api_key });
    assert.match(res.json<{ error: string }>().error, /--user-route GET:PATH_PREFIX/);
    assert.equal(res.text.includes(bobPrompt), false);
  });

  test('the stock web UI files and support routes stay open to a user key', async () => {
    for (const target of [
      '/',
      '/api/',
      '/index.html',
      '/main.js',
      '/assets/index-1.js',
      '/scripts/app.js',
      '/extensions/core/x.js',
      '/api/object_info',
      '/api/embeddings',
      '/api/extensions',
      '/api/i18n',
      '/api/workflow_templates',
      '/api/settings',
      '/api/userdata?dir=workflows',
      '/api/users',
      '/api/system_stats',
      '/api/features',
      '/api/queue',
      '/api/history?max_items=64',
      '/api/prompt',
    ]) {
      const res = await send(gateway.url, target, { key: alice.api_key });
      assert.notEqual(res.status, 403, `${target}: ${res.text.slice(0, 100)}`);
      assert.notEqual(res.status, 400, target);
    }
  });
});

describe('bypass attempts: a WebSocket upgrade on a prefix an operator opened', () => {
  let stage: TwoKeyStage;

  before(async () => {
    stage = await startTwoKeyStage([
      '--user-route',
      'GET:/view',
      '--user-route',
      'GET:/my_socket',
      '--user-route',
      'GET:/experiment/models/preview/checkpoints/',
    ]);
  });
  after(() => stage.close());

  /** Opens an upgrade as alice; resolves with the status that refused it and the requests ComfyUI received meanwhile. */
  async function upgradeAsAlice(path: string): Promise<{ status: number; reached: string[] }> {
    const before = stage.comfy.requests.length;
    const error = await openCollectingSocket(`ws://127.0.0.1:${stage.gateway.port}${path}`, { 'x-api-key': stage.alice.api_key }).then(
      () => assert.fail(`${path} opened`),
      (refusal: { status: number }) => refusal,
    );
    return { status: error.status, reached: stage.comfy.requests.slice(before).map((r) => r.url) };
  }

  test('the table’s rule comes first: a filtered route under the prefix is not relayed (its status would tell whether another key’s file exists)', async () => {
    for (const path of [`/view?filename=${stage.bobImage}`, `/api/view?filename=${stage.bobImage}&type=output`]) {
      assert.deepEqual(await upgradeAsAlice(path), { status: 403, reached: [] }, path);
    }
  });

  test('an opened route the table forwards keeps its rule: a file path that starts with a drive is refused', async () => {
    assert.deepEqual(await upgradeAsAlice(`/experiment/models/preview/checkpoints/0/C:/ComfyUI/output/${stage.bobImage}`), { status: 400, reached: [] });
  });

  test('an opened route the table does not know is still relayed to ComfyUI', async () => {
    const { status, reached } = await upgradeAsAlice('/my_socket/events');
    assert.equal(status, 404, 'the fake refuses an upgrade on a path without a socket');
    assert.deepEqual(
      reached.map((url) => url.split('?')[0]),
      ['/my_socket/events'],
    );
  });
});
