// Two gateway processes on one PostgreSQL in front of one ComfyUI: a job's events reach its key's client socket on the other replica, once, and no other key's.

import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket, SAVE_WORKFLOW, type CollectingSocket } from '../helpers/comfy-client.js';
import { PROMPT_ID_MODES, startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';
import { freshPostgresDatabase, type FreshDatabase } from '../contract/backends.js';
import { startReplicas, untilEveryReplicaKnows } from './replicas.js';

type Message = CollectingSocket['texts'][number];

for (const mode of PROMPT_ID_MODES) {
  const fresh = await freshPostgresDatabase();

  describe(`job events across two replicas (ComfyUI prompt ids ${mode})`, { skip: 'skip' in fresh ? fresh.skip : false }, () => {
    const database = fresh as FreshDatabase;
    let comfy: FakeComfyUI;
    let replicaA: GatewayProcess;
    let replicaB: GatewayProcess;
    let stopReplicas: () => Promise<void>;
    let admin: CreatedKey;
    let user: CreatedKey;
    const sockets: CollectingSocket[] = [];

    before(async () => {
      comfy = await startFakeComfyUI({ promptIds: mode, failingClassTypes: ['VAEDecode'], failuresNameFiles: true });
      let replicas: GatewayProcess[];
      ({ replicas, stop: stopReplicas } = await startReplicas(2, comfy.url, () => [
        '--require-api-auth',
        '--database-url',
        database.url,
        '--log-level',
        'warn',
      ]));
      [replicaA, replicaB] = replicas as [GatewayProcess, GatewayProcess];
      admin = await createKey(replicaA.url, { name: 'admin', rate_limit: 1_000_000 });
      user = await createKey(replicaA.url, { name: 'user', rate_limit: 1_000_000 }, admin.api_key);
      await untilEveryReplicaKnows(replicas, admin.key_id, admin.api_key);
      await untilEveryReplicaKnows(replicas, user.key_id, admin.api_key);
    });
    after(async () => {
      await Promise.all(sockets.map((socket) => socket.close()));
      await stopReplicas?.();
      await comfy?.close();
      await database.drop();
    });

    /** Opens a ComfyUI socket on a replica; resolves once its feature_flags were answered (it is registered with the hub by then). */
    async function open(gateway: GatewayProcess, key: CreatedKey, clientId: string): Promise<CollectingSocket> {
      const socket = await openCollectingSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=${clientId}`, { 'x-api-key': key.api_key });
      sockets.push(socket);
      socket.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: false } }));
      await waitFor(() => socket.texts.some((m) => m.type === 'feature_flags'), 'the feature_flags answer');
      return socket;
    }

    /** Queues a prompt through a replica; resolves the prompt_id it answered. */
    async function submit(gateway: GatewayProcess, key: CreatedKey, extra: Record<string, unknown>): Promise<string> {
      const res = await send(gateway.url, '/api/prompt', { method: 'POST', key: key.api_key, body: { prompt: SAVE_WORKFLOW, ...extra } });
      assert.equal(res.status, 200, res.text);
      return res.json<{ prompt_id: string }>().prompt_id;
    }

    const eventsOf = (socket: CollectingSocket, promptId: string): Message[] => socket.texts.filter((m) => m.data.prompt_id === promptId);
    const count = (socket: CollectingSocket, promptId: string, type: string): number => eventsOf(socket, promptId).filter((m) => m.type === type).length;

    test("a prompt sent through A reaches its key's socket on B once, another key's socket with the same clientId not at all", async () => {
      const clientId = `replica-client-${mode}`;
      const userOnB = await open(replicaB, user, clientId);
      const userOnA = await open(replicaA, user, clientId);
      // An admin may use a clientId another key holds: its socket is registered under its own key.
      const adminOnB = await open(replicaB, admin, clientId);

      const withClient = await submit(replicaA, user, { client_id: clientId });
      const withoutClient = await submit(replicaA, user, {});
      // Sent last: once its end is in, every earlier event from A has been delivered (A's events reach B in order).
      const last = await submit(replicaA, user, { client_id: clientId });
      await waitFor(
        () =>
          count(userOnB, last, 'execution_success') > 0 &&
          count(userOnA, last, 'execution_success') > 0 &&
          count(adminOnB, withoutClient, 'execution_success') > 0,
        'the last prompts to end on every socket',
        20_000,
      );

      const onB = eventsOf(userOnB, withClient);
      for (const type of ['execution_start', 'execution_success']) assert.equal(count(userOnB, withClient, type), 1, `${type} on B, once`);
      const types = onB.map((m) => m.type);
      assert.ok(types.includes('executed'), `executed on B: ${types.join(',')}`);
      assert.ok(
        types.indexOf('execution_start') < types.indexOf('executed') && types.lastIndexOf('executed') < types.indexOf('execution_success'),
        types.join(','),
      );
      assert.deepEqual(onB, eventsOf(userOnA, withClient), 'B got exactly what the socket on A got, in the same order');
      assert.equal(count(userOnA, withClient, 'execution_start'), 1, 'A did not deliver its own event again');
      assert.equal(count(userOnB, last, 'execution_success'), 1);
      assert.equal(count(userOnA, last, 'execution_success'), 1);

      assert.deepEqual(eventsOf(adminOnB, withClient), [], "the other key's socket with the same clientId got nothing of it");
      assert.deepEqual(eventsOf(adminOnB, last), []);
      assert.deepEqual(eventsOf(userOnB, withoutClient), [], 'a job without a client goes to admin sockets only');
      assert.equal(count(adminOnB, withoutClient, 'execution_start'), 1, 'the admin socket on B got the job without a client, once');
      assert.equal(count(adminOnB, withoutClient, 'execution_success'), 1);
    });

    test("a failed job's execution_error reaches its user key's socket on B without server paths, and an admin's job's whole", async () => {
      const failing = { '1': { class_type: 'VAEDecode', inputs: {} }, '2': { class_type: 'SaveImage', inputs: { images: ['1', 0] } } };
      const root = dirname(comfy.inputDir);
      const userOnB = await open(replicaB, user, `replica-failing-${mode}`);
      const adminOnB = await open(replicaB, admin, `replica-admin-failing-${mode}`);
      const ofUser = await submit(replicaA, user, { prompt: failing, client_id: `replica-failing-${mode}` });
      const ofAdmin = await submit(replicaA, admin, { prompt: failing, client_id: `replica-admin-failing-${mode}` });
      const errorOn = (socket: CollectingSocket, promptId: string): Promise<Message['data']> =>
        waitFor(() => eventsOf(socket, promptId).find((m) => m.type === 'execution_error')?.data, 'the execution_error on B', 20_000);
      const shown = JSON.stringify(await errorOn(userOnB, ofUser));
      assert.ok(!shown.includes(root) && shown.includes('custom_nodes/fake-pack/nodes.py'), shown);
      assert.ok(JSON.stringify(await errorOn(adminOnB, ofAdmin)).includes(`${root}/custom_nodes/fake-pack/nodes.py`));
    });
  });
}
