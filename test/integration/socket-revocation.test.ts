// Open WebSockets are closed (1008) once their key is deleted, disabled, expired, rotated out or given another role, or their browser session ends; sockets of valid keys stay open.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type WebSocket from 'ws';
import { SOCKET_CREDENTIAL_CHECK_INTERVAL_MS } from '../../src/auth/socket-revocation.js';
import { freshPostgresDatabase } from '../contract/backends.js';
import { untilEveryReplicaKnows, startReplicas } from '../scale/replicas.js';
import { openCollectingSocket } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

/** Longest a socket may outlive a change of its credential: one sweep, and time for the close to arrive. */
const CLOSE_WITHIN_MS = SOCKET_CREDENTIAL_CHECK_INTERVAL_MS + 2000;
/** How long the gateway may take to pick up a change the CLI wrote to api_keys.json. */
const CLI_PICKUP_MS = 2500;
const POLICY_VIOLATION = 1008;

/** An open socket through the gateway, and how it closed once it has. */
interface WatchedSocket {
  ws: WebSocket;
  /** The close code and reason, once closed. */
  closed: { code: number; reason: string } | null;
}

/** Opens `/ws` on a gateway with `headers` (a key or a cookie) and the given clientId, and notes how it closes. */
async function openSocket(gatewayUrl: string, clientId: string, headers: Record<string, string>): Promise<WatchedSocket> {
  const { ws } = await openCollectingSocket(`${gatewayUrl.replace('http', 'ws')}/ws?clientId=${clientId}`, headers);
  const watched: WatchedSocket = { ws, closed: null };
  ws.once('close', (code, reason) => (watched.closed = { code, reason: reason.toString() }));
  return watched;
}

/** Waits until the gateway closes the socket as a policy violation, and checks the reason names no secret. */
async function assertClosedByPolicy(socket: WatchedSocket, what: string, timeoutMs = CLOSE_WITHIN_MS): Promise<void> {
  const closed = await waitFor(() => socket.closed ?? undefined, `${what}: the socket to be closed`, timeoutMs);
  assert.equal(closed.code, POLICY_VIOLATION, `${what}: close code`);
  assert.match(closed.reason, /^(key revoked|session ended|key role changed)$/, `${what}: close reason`);
}

function assertOpen(socket: WatchedSocket, what: string): void {
  assert.equal(socket.closed, null, `${what}: still open`);
}

/** Closes the test's end of every socket still open. */
function closeAll(sockets: WatchedSocket[]): void {
  for (const socket of sockets) if (!socket.closed) socket.ws.terminate();
}

describe('open sockets lose a revoked credential (JSON files)', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: CreatedKey;
  const sockets: WatchedSocket[] = [];

  const open = async (clientId: string, headers: Record<string, string>): Promise<WatchedSocket> => {
    const socket = await openSocket(gateway.url, clientId, headers);
    sockets.push(socket);
    return socket;
  };
  const userKey = (name: string, fields: object = {}): Promise<CreatedKey> => createKey(gateway.url, { name, rate_limit: 100_000, ...fields }, admin.api_key);
  const patch = (keyId: string, body: object): Promise<TestResponse> => send(gateway.url, `/api/keys/${keyId}`, { method: 'PATCH', key: admin.api_key, body });

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    admin = await createKey(gateway.url, { name: 'admin', rate_limit: 100_000 });
    assert.equal(admin.role, 'admin');
  });
  after(async () => {
    closeAll(sockets);
    await gateway.stop();
    await comfy.close();
  });

  test("a deleted admin key's relayed socket is closed, and so is its socket to ComfyUI", async () => {
    const doomed = await userKey('doomed admin', { role: 'admin' });
    const socket = await open('doomed-admin', { 'x-api-key': doomed.api_key });
    await waitFor(() => comfy.openSockets().includes('doomed-admin'), 'the relayed socket at ComfyUI');
    assert.equal((await send(gateway.url, `/api/keys/${doomed.key_id}`, { method: 'DELETE', key: admin.api_key })).status, 200);
    await assertClosedByPolicy(socket, 'deleted');
    await waitFor(() => !comfy.openSockets().includes('doomed-admin'), 'the socket at ComfyUI to be closed');
  });

  test("an admin key made a user key loses its relayed socket, which saw every key's events", async () => {
    const demoted = await userKey('demoted admin', { role: 'admin' });
    const socket = await open('demoted-admin', { 'x-api-key': demoted.api_key });
    await waitFor(() => comfy.openSockets().includes('demoted-admin'), 'the relayed socket at ComfyUI');
    assert.equal((await patch(demoted.key_id, { role: 'user' })).status, 200);
    await assertClosedByPolicy(socket, 'demoted');
    assert.equal(socket.closed!.reason, 'key role changed');
    const again = await open('demoted-admin-again', { 'x-api-key': demoted.api_key });
    await sleep(SOCKET_CREDENTIAL_CHECK_INTERVAL_MS + 500);
    assertOpen(again, 'a socket the key opens as a user key');
  });

  test("a disabled user key's socket is closed", async () => {
    const key = await userKey('disabled');
    const socket = await open('disabled-user', { 'x-api-key': key.api_key });
    assert.equal((await patch(key.key_id, { is_active: false })).status, 200);
    await assertClosedByPolicy(socket, 'disabled');
  });

  test("a key's socket is closed once its expires_at passes", async () => {
    const expiresAt = Math.floor(Date.now() / 1000) + 2;
    const key = await userKey('expiring', { expires_at: expiresAt });
    const socket = await open('expiring-user', { 'x-api-key': key.api_key });
    assertOpen(socket, 'before the expiry');
    await assertClosedByPolicy(socket, 'expired', expiresAt * 1000 - Date.now() + CLOSE_WITHIN_MS);
  });

  test('after a rotation, sockets of the old secret are closed once the grace period ends; sockets of the new one stay', async () => {
    const key = await userKey('rotated');
    const old = await open('rotated-old', { 'x-api-key': key.api_key });
    const rotated = await send(gateway.url, `/api/keys/${key.key_id}/rotate`, { method: 'POST', key: admin.api_key, body: { grace_seconds: 2 } });
    assert.equal(rotated.status, 200, rotated.text);
    const { api_key: newSecret, previous_key_valid_until: graceEnds } = rotated.json<{ api_key: string; previous_key_valid_until: number }>();
    const renewed = await open('rotated-new', { 'x-api-key': newSecret });
    await sleep(500);
    assertOpen(old, 'the old secret during the grace period');
    await assertClosedByPolicy(old, 'the old secret after the grace period', graceEnds * 1000 - Date.now() + CLOSE_WITHIN_MS);
    await sleep(SOCKET_CREDENTIAL_CHECK_INTERVAL_MS + 500);
    assertOpen(renewed, 'the new secret');
  });

  test("a signed-in browser's socket is closed when it signs out", async () => {
    const key = await userKey('browser');
    const signIn = await send(gateway.url, '/login', { method: 'POST', body: { api_key: key.api_key } });
    assert.equal(signIn.status, 200, signIn.text);
    const cookie = String(signIn.headers['set-cookie']).split(';')[0]!;
    const socket = await open('browser-user', { cookie, origin: gateway.url });
    const signOut = await send(gateway.url, '/logout', { method: 'POST', headers: { cookie, origin: gateway.url } });
    assert.equal(signOut.status, 200, signOut.text);
    await assertClosedByPolicy(socket, 'signed out');
  });

  test('a key disabled with the CLI beside the gateway loses its socket', async () => {
    const key = await userKey('cli disabled');
    const socket = await open('cli-user', { 'x-api-key': key.api_key });
    assert.equal((await runCli(['keys', 'disable', key.key_id, '--user-directory', gateway.userDirectory])).code, 0);
    await assertClosedByPolicy(socket, 'disabled with the CLI', CLI_PICKUP_MS + CLOSE_WITHIN_MS);
  });

  test('sockets of keys that stay valid stay open through sweeps and changes to other keys and to their own limits', async () => {
    const key = await userKey('steady');
    const user = await open('steady-user', { 'x-api-key': key.api_key });
    const adminSocket = await open('steady-admin', { 'x-api-key': admin.api_key });
    const other = await userKey('removed beside');
    assert.equal((await send(gateway.url, `/api/keys/${other.key_id}`, { method: 'DELETE', key: admin.api_key })).status, 200);
    assert.equal((await patch(key.key_id, { rate_limit: 50_000 })).status, 200);
    await sleep(2 * SOCKET_CREDENTIAL_CHECK_INTERVAL_MS + 500);
    assertOpen(user, 'the user key');
    assertOpen(adminSocket, 'the admin key');
    assert.ok(comfy.openSockets().includes('steady-admin'), "the admin's socket to ComfyUI is still open");
  });
});

const fresh = await freshPostgresDatabase();

describe('open sockets lose a credential revoked on another replica (PostgreSQL)', { skip: 'skip' in fresh ? fresh.skip : false }, () => {
  let comfy: FakeComfyUI;
  let replicas: GatewayProcess[];
  let stopReplicas: () => Promise<void>;

  before(async () => {
    if ('skip' in fresh) return;
    comfy = await startFakeComfyUI();
    ({ replicas, stop: stopReplicas } = await startReplicas(2, comfy.url, () => ['--require-api-auth', '--database-url', fresh.url]));
  });
  after(async () => {
    if ('skip' in fresh) return;
    await stopReplicas();
    await comfy.close();
    await fresh.drop();
  });

  test('a key deleted through one replica loses its sockets on the other, relayed and served from the event hub', async () => {
    const [first, second] = replicas as [GatewayProcess, GatewayProcess];
    const admin = await createKey(first.url, { name: 'admin', rate_limit: 100_000 });
    const doomedAdmin = await createKey(first.url, { name: 'doomed admin', role: 'admin' }, admin.api_key);
    const doomedUser = await createKey(first.url, { name: 'doomed user' }, admin.api_key);
    await untilEveryReplicaKnows(replicas, doomedUser.key_id, admin.api_key);
    await untilEveryReplicaKnows(replicas, doomedAdmin.key_id, admin.api_key);
    const sockets = [
      await openSocket(second.url, 'replica-admin', { 'x-api-key': doomedAdmin.api_key }),
      await openSocket(second.url, 'replica-user', { 'x-api-key': doomedUser.api_key }),
    ];
    const steady = await openSocket(second.url, 'replica-steady', { 'x-api-key': admin.api_key });
    try {
      for (const key of [doomedAdmin, doomedUser]) {
        assert.equal((await send(first.url, `/api/keys/${key.key_id}`, { method: 'DELETE', key: admin.api_key })).status, 200);
      }
      for (const socket of sockets) await assertClosedByPolicy(socket, 'deleted on the other replica');
      assertOpen(steady, 'a key that stays valid');
    } finally {
      closeAll([...sockets, steady]);
    }
  });
});
