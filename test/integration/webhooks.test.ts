// Signed, durable webhooks through real gateway processes, a fake ComfyUI and a receiver on loopback: events, signatures, retries, restarts and refusals.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { runCli, startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { codeUnder, REPO_ROOT } from '../helpers/markdown.js';
import { waitFor } from '../helpers/wait-for.js';

const SECRET = 'test-webhook-secret-0123456789abcdef';
/** `--webhook-retry-base`: retries 0.2 s, 0.4 s, 0.8 s … after each failure. */
const RETRY_BASE = 0.2;
const STEP_MS = 25;

/** One request the receiver got. */
interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** When it arrived (ms). */
  at: number;
  /** The status the receiver answered. */
  status: number;
}

interface Event {
  id: string;
  type: string;
  created: number;
  data: { job: { id: string; key_id: string; status: string; outputs: Array<{ filename: string; url: string }>; error: { message: string } | null } };
}

interface Delivery {
  id: string;
  job_id: string;
  event: string;
  state: string;
  attempts: Array<{ at: number; status: number | null; error: string | null; duration_ms: number }>;
  attempt_count?: number;
  payload?: Event;
}

/**
 * A webhook receiver: answers 500 to a path's first `failures` requests (from `/fail/N/…`), 500 to
 * everything under `/down/` while `down` is set, 200 otherwise; keeps every request.
 */
class Receiver {
  readonly received: Received[] = [];
  down = true;
  private readonly server: Server;
  private readonly seen = new Map<string, number>();

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const path = req.url ?? '/';
        const count = (this.seen.get(path) ?? 0) + 1;
        this.seen.set(path, count);
        const failures = Number(/^\/fail\/(\d+)\//.exec(path)?.[1] ?? 0);
        const status = count <= failures || (path.startsWith('/down/') && this.down) ? 500 : 200;
        this.received.push({ path, headers: req.headers, body: Buffer.concat(chunks), at: Date.now(), status });
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'not now');
      });
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  url(path: string): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}${path}`;
  }

  /** The requests to `path`, in order. */
  to(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** The README's `verify` in JavaScript, as a receiver would paste it. */
async function readmeVerifyInJs(): Promise<(secret: string, header: string, rawBody: string) => boolean> {
  const folder = await mkdtemp(join(tmpdir(), 'verify-'));
  const file = join(folder, 'verify.mjs');
  await writeFile(file, codeUnder(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'), '## Verify a webhook', 'js'));
  const module = (await import(pathToFileURL(file).href)) as { verify: (secret: string, header: string, rawBody: string) => boolean };
  await rm(folder, { recursive: true });
  return module.verify;
}

/** Checks a signature with the README's `verify` in Python (hmac and hashlib), as a receiver written in Python would: "valid" or "invalid". */
function verifyInPython(secret: string, header: string, body: Buffer): string {
  const script = [
    codeUnder(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'), '## Verify a webhook', 'python'),
    'import sys',
    "print('valid' if verify(sys.argv[1], sys.argv[2], sys.stdin.buffer.read()) else 'invalid')",
  ].join('\n');
  const result = spawnSync('python3', ['-c', script, secret, header], { input: body, encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout.trim();
}

/** Takes the deliveries to URLs ending in `path` out of a stopped gateway's outbox files, as if they had never been stored. */
async function forgetDeliveriesTo(directory: string, path: string): Promise<void> {
  const snapshot = join(directory, 'webhook-deliveries.json');
  const records = JSON.parse(await readFile(snapshot, 'utf8').catch(() => '{}')) as Record<string, { url: string }>;
  for (const [id, record] of Object.entries(records)) if (record.url.endsWith(path)) delete records[id];
  await writeFile(snapshot, JSON.stringify(records));
  // The journal, and the next journal a stop during a rewrite of the snapshot leaves.
  for (const journal of ['webhook-deliveries.journal', 'webhook-deliveries.journal.next'].map((name) => join(directory, name))) {
    const text = await readFile(journal, 'utf8').catch(() => null);
    if (text !== null)
      await writeFile(
        journal,
        text
          .split('\n')
          .filter((line) => !line.includes(path))
          .join('\n'),
      );
  }
}

/** A prompt that runs for a few seconds in the fake ComfyUI (each node takes about ten steps). */
function longPrompt(nodes: number): Record<string, unknown> {
  const prompt: Record<string, unknown> = {};
  for (let i = 1; i <= nodes; i += 1) prompt[String(i)] = { class_type: 'KSampler', inputs: { seed: i, steps: 2 } };
  prompt.save = { class_type: 'SaveImage', inputs: { images: [String(nodes), 0] } };
  return prompt;
}

describe('webhooks', () => {
  let comfy: FakeComfyUI;
  let receiver: Receiver;
  let gateway: GatewayProcess;
  let userDirectory: { path: string; remove(): Promise<void> };
  let admin: string;
  let alice: CreatedKey;
  const args = ['--require-api-auth', '--webhook-secret', SECRET, '--webhook-allow-private', '--webhook-retry-base', String(RETRY_BASE)];

  const run = (key: string, body: Record<string, unknown>): Promise<TestResponse> => send(gateway.url, '/api/gateway/run', { method: 'POST', key, body });
  const deliveriesOf = async (jobId: string): Promise<Delivery[]> => {
    const res = await send(gateway.url, `/api/gateway/webhooks/deliveries?job_id=${encodeURIComponent(jobId)}`, { key: admin });
    assert.equal(res.status, 200, res.text);
    return res.json<{ deliveries: Delivery[] }>().deliveries;
  };
  const delivery = async (id: string): Promise<Delivery> => {
    const res = await send(gateway.url, `/api/gateway/webhooks/deliveries/${id}`, { key: admin });
    assert.equal(res.status, 200, res.text);
    return res.json<Delivery>();
  };
  const webhookSecretOf = async (key: string, keyId: string): Promise<string> => {
    const res = await send(gateway.url, `/api/keys/${keyId}/webhook-secret`, { key });
    assert.equal(res.status, 200, res.text);
    return res.json<{ webhook_secret: string }>().webhook_secret;
  };
  const eventsAt = (path: string): Event[] => receiver.to(path).map((r) => JSON.parse(r.body.toString('utf8')) as Event);

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: STEP_MS, failingClassTypes: ['VAEDecode'], failuresNameFiles: true });
    receiver = new Receiver();
    await receiver.listen();
    userDirectory = await tempUserDirectory();
    gateway = await startGateway({ upstream: comfy.url, userDirectory: userDirectory.path, args });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 })).api_key;
    alice = await createKey(gateway.url, { name: 'alice', rate_limit: 10_000 }, admin);
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
    await receiver?.close();
    await userDirectory?.remove();
  });

  test('a run with webhook_url gets one job.succeeded, signed so that an independent implementation verifies it', async () => {
    const res = await run(alice.api_key, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiver.url('/ok/1') });
    assert.equal(res.status, 200, res.text);
    const job = res.json<{ id: string; outputs: Array<{ url: string }> }>();
    const [got] = await waitFor(() => receiver.to('/ok/1').length > 0 && receiver.to('/ok/1'), 'the event', 10_000);
    assert.equal(got!.headers['content-type'], 'application/json');
    assert.equal(got!.headers['user-agent'], 'comfy-gate-webhook');
    assert.equal(got!.headers['comfy-gate-event'], 'job.succeeded');
    const signature = String(got!.headers['comfy-gate-signature']);
    assert.match(signature, /^t=\d+,v1=[0-9a-f]{64}$/);
    const t = Number(/^t=(\d+)/.exec(signature)![1]);
    assert.ok(Math.abs(t - Date.now() / 1000) < 60, 't is the time of sending');
    const aliceSecret = await webhookSecretOf(alice.api_key, alice.key_id);
    assert.equal(verifyInPython(aliceSecret, signature, got!.body), 'valid');
    assert.equal(verifyInPython(aliceSecret, signature, Buffer.concat([got!.body, Buffer.from(' ')])), 'invalid', 'a changed body does not verify');
    const verify = await readmeVerifyInJs();
    assert.equal(verify(aliceSecret, signature, got!.body.toString('utf8')), true, "the README's JavaScript verifies it");
    assert.equal(verify(aliceSecret, signature, `${got!.body.toString('utf8')} `), false);

    const event = eventsAt('/ok/1')[0]!;
    assert.equal(event.type, 'job.succeeded');
    assert.equal(event.id, got!.headers['comfy-gate-delivery']);
    assert.ok(Number.isInteger(event.created));
    assert.equal(event.data.job.id, job.id);
    assert.equal(event.data.job.key_id, alice.key_id);
    assert.equal(event.data.job.status, 'success');
    assert.equal(event.data.job.outputs.length, 1);
    assert.equal(event.data.job.outputs[0]!.url, job.outputs[0]!.url, 'outputs as the jobs API shows them');

    const [stored] = await waitFor(async () => {
      const list = await deliveriesOf(job.id);
      return list[0]?.state === 'delivered' && list;
    }, 'the delivery to be recorded as delivered');
    assert.equal(stored!.event, 'job.succeeded');
    assert.equal(stored!.attempt_count, 1);
    const detail = await delivery(stored!.id);
    assert.equal(detail.attempts.length, 1);
    assert.equal(detail.attempts[0]!.status, 200);
    assert.equal(detail.attempts[0]!.error, null);
    assert.equal(typeof detail.attempts[0]!.duration_ms, 'number');
    assert.deepEqual(detail.payload, event, 'the payload is the body sent');
    assert.equal(receiver.to('/ok/1').length, 1, 'job.started is not sent unless asked for');
  });

  test("each key's deliveries verify only with its own signing secret; a key reads its own, an admin any key's, and each read is audited", async () => {
    const carol = await createKey(gateway.url, { name: 'carol', rate_limit: 10_000 }, admin);
    const res = await run(carol.api_key, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiver.url('/ok/carol') });
    assert.equal(res.status, 200, res.text);
    const [got] = await waitFor(() => receiver.to('/ok/carol').length > 0 && receiver.to('/ok/carol'), 'the event', 10_000);
    const signature = String(got!.headers['comfy-gate-signature']);
    const carolSecret = await webhookSecretOf(carol.api_key, carol.key_id);
    const aliceSecret = await webhookSecretOf(alice.api_key, alice.key_id);
    assert.match(carolSecret, /^whsec_[0-9a-f]{64}$/);
    assert.notEqual(carolSecret, aliceSecret);
    assert.equal(await webhookSecretOf(admin, carol.key_id), carolSecret, 'an admin reads the same secret');
    assert.equal(verifyInPython(carolSecret, signature, got!.body), 'valid');
    assert.equal(verifyInPython(aliceSecret, signature, got!.body), 'invalid', "another key's secret does not verify it");
    assert.equal(verifyInPython(SECRET, signature, got!.body), 'invalid', "nor does the gateway's own secret");

    const others = await send(gateway.url, `/api/keys/${carol.key_id}/webhook-secret`, { key: alice.api_key });
    assert.equal(others.status, 403, others.text);
    assert.equal(others.json<{ error_code: string }>().error_code, 'FORBIDDEN');
    assert.doesNotMatch(others.text, /whsec_/);
    assert.equal((await send(gateway.url, `/api/keys/${carol.key_id}/webhook-secret`)).status, 401);
    const unknown = await send(gateway.url, '/api/keys/nosuchkey0000000000000/webhook-secret', { key: admin });
    assert.equal(unknown.status, 404, unknown.text);
    assert.equal((await send(gateway.url, `/api/keys/${carol.key_id}/webhook-secret`, { method: 'POST', key: admin, body: {} })).status, 405);
    const bare = await send(gateway.url, `/keys/${carol.key_id}/webhook-secret`, { key: carol.api_key });
    assert.equal(bare.json<{ webhook_secret: string }>().webhook_secret, carolSecret, 'the bare path, as /keys is served');
    assert.equal(bare.headers['cache-control'], 'no-store');

    const audit = (await send(gateway.url, '/api/audit?limit=1000', { key: admin })).json<{
      entries: Array<{ actor: string; action: string; key_id: string }>;
    }>();
    const reads = audit.entries.filter((e) => e.action === 'key.webhook_secret' && e.key_id === carol.key_id);
    assert.deepEqual(reads.map((e) => (e.actor === carol.key_id ? 'carol' : e.actor === 'cli' ? 'cli' : 'admin')).sort(), ['admin', 'carol', 'carol']);
  });

  test('a rotation gives the key a new signing secret; during its grace each delivery is signed with both, after it with the new one only', async () => {
    const dave = await createKey(gateway.url, { name: 'dave', rate_limit: 10_000 }, admin);
    const before = await webhookSecretOf(dave.api_key, dave.key_id);
    const rotated = await send(gateway.url, `/api/keys/${dave.key_id}/rotate`, { method: 'POST', key: admin, body: { grace_seconds: 3600 } });
    assert.equal(rotated.status, 200, rotated.text);
    const newKey = rotated.json<{ api_key: string }>().api_key;
    const after = await webhookSecretOf(newKey, dave.key_id);
    assert.notEqual(after, before);
    const graced = await run(newKey, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiver.url('/ok/dave-grace') });
    assert.equal(graced.status, 200, graced.text);
    const [inGrace] = await waitFor(() => receiver.to('/ok/dave-grace').length > 0 && receiver.to('/ok/dave-grace'), 'the event', 10_000);
    const both = String(inGrace!.headers['comfy-gate-signature']);
    assert.match(both, /^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
    assert.equal(verifyInPython(after, both, inGrace!.body), 'valid');
    assert.equal(verifyInPython(before, both, inGrace!.body), 'valid', 'a receiver not yet switched over still verifies');
    const verify = await readmeVerifyInJs();
    assert.equal(verify(after, both, inGrace!.body.toString('utf8')), true);
    assert.equal(verify(before, both, inGrace!.body.toString('utf8')), true);

    const again = await send(gateway.url, `/api/keys/${dave.key_id}/rotate`, { method: 'POST', key: admin, body: {} });
    const latestKey = again.json<{ api_key: string }>().api_key;
    const latest = await webhookSecretOf(latestKey, dave.key_id);
    const done = await run(latestKey, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiver.url('/ok/dave-done') });
    assert.equal(done.status, 200, done.text);
    const [afterGrace] = await waitFor(() => receiver.to('/ok/dave-done').length > 0 && receiver.to('/ok/dave-done'), 'the event', 10_000);
    const one = String(afterGrace!.headers['comfy-gate-signature']);
    assert.match(one, /^t=\d+,v1=[0-9a-f]{64}$/);
    assert.equal(verifyInPython(latest, one, afterGrace!.body), 'valid');
    for (const old of [before, after]) assert.equal(verifyInPython(old, one, afterGrace!.body), 'invalid', 'a replaced secret no longer verifies');
  });

  test("a rotated-out API key reads the secret it signs with, never its replacement's: once the grace ends, a leaked key can forge nothing", async () => {
    const gina = await createKey(gateway.url, { name: 'gina', rate_limit: 10_000 }, admin);
    const before = await webhookSecretOf(gina.api_key, gina.key_id);
    const login = await send(gateway.url, '/login', { method: 'POST', body: { api_key: gina.api_key } });
    assert.equal(login.status, 200, login.text);
    const oldSession = String(login.headers['set-cookie']).split(';')[0]!;
    const rotated = await send(gateway.url, `/api/keys/${gina.key_id}/rotate`, { method: 'POST', key: admin, body: { grace_seconds: 3600 } });
    assert.equal(rotated.status, 200, rotated.text);
    const after = await webhookSecretOf(rotated.json<{ api_key: string }>().api_key, gina.key_id);
    assert.notEqual(after, before);
    assert.equal(await webhookSecretOf(admin, gina.key_id), after, 'an admin reads the current secret');

    const byOldKey = await send(gateway.url, `/api/keys/${gina.key_id}/webhook-secret`, { key: gina.api_key });
    assert.equal(byOldKey.status, 200, byOldKey.text);
    assert.equal(byOldKey.json<{ webhook_secret: string }>().webhook_secret, before, 'the rotated-out API key reads the secret that ends with its grace');
    assert.doesNotMatch(byOldKey.text, new RegExp(after));
    const bySession = await send(gateway.url, `/api/keys/${gina.key_id}/webhook-secret`, { headers: { cookie: oldSession } });
    assert.equal(bySession.status, 200, bySession.text);
    assert.equal(bySession.json<{ webhook_secret: string }>().webhook_secret, before, 'so does a session signed in with it');
  });

  test("a deleted key's pending deliveries are given up without being sent", async () => {
    receiver.down = true;
    const erin = await createKey(gateway.url, { name: 'erin', rate_limit: 10_000 }, admin);
    const res = await run(erin.api_key, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiver.url('/down/erin') });
    const jobId = res.json<{ id: string }>().id;
    await waitFor(() => receiver.to('/down/erin').length >= 1, 'a failed attempt', 10_000);
    assert.equal((await send(gateway.url, `/api/keys/${erin.key_id}`, { method: 'DELETE', key: admin })).status, 200);
    receiver.down = false;
    const [given] = await waitFor(
      async () => {
        const list = await deliveriesOf(jobId);
        return list[0]?.state === 'failed' && list;
      },
      'the delivery to be given up',
      10_000,
    );
    const detail = await delivery(given!.id);
    assert.match(detail.attempts.at(-1)!.error ?? '', /key was deleted/);
    assert.equal(detail.attempts.at(-1)!.status, null);
    assert.ok(
      receiver.to('/down/erin').every((r) => r.status === 500),
      'no attempt reached the receiver after the deletion',
    );
    const sent = receiver.to('/down/erin').length;
    await new Promise((resolve) => setTimeout(resolve, 4 * RETRY_BASE * 1000));
    assert.equal(receiver.to('/down/erin').length, sent, 'nothing more was sent');
  });

  test('a receiver that fails twice gets the event a third time, after a backoff that doubles; all three attempts are recorded', async () => {
    const path = '/fail/2/a';
    const res = await run(alice.api_key, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiver.url(path) });
    const jobId = res.json<{ id: string }>().id;
    const [stored] = await waitFor(
      async () => {
        const list = await deliveriesOf(jobId);
        return list[0]?.state === 'delivered' && list;
      },
      'the third attempt to succeed',
      15_000,
    );
    const tries = receiver.to(path);
    assert.deepEqual(
      tries.map((r) => r.status),
      [500, 500, 200],
    );
    const gaps = [tries[1]!.at - tries[0]!.at, tries[2]!.at - tries[1]!.at];
    assert.ok(gaps[0]! >= RETRY_BASE * 1000 - 20, `first retry after about ${RETRY_BASE} s: ${gaps[0]} ms`);
    assert.ok(gaps[1]! >= 2 * RETRY_BASE * 1000 - 20, `second retry after about twice that: ${gaps[1]} ms`);
    assert.equal(new Set(tries.map((r) => r.headers['comfy-gate-delivery'])).size, 1, 'one delivery id on every attempt');
    const aliceSecret = await webhookSecretOf(alice.api_key, alice.key_id);
    for (const attempt of tries) assert.equal(verifyInPython(aliceSecret, String(attempt.headers['comfy-gate-signature']), attempt.body), 'valid');
    const detail = await delivery(stored!.id);
    assert.deepEqual(
      detail.attempts.map((a) => a.status),
      [500, 500, 200],
    );
    assert.ok(detail.attempts[1]!.at > detail.attempts[0]!.at && detail.attempts[2]!.at > detail.attempts[1]!.at);
  });

  test('a webhook_url on a ComfyUI backend is never POSTed to, even with --webhook-allow-private: the attempt fails before sending', async () => {
    const res = await run(alice.api_key, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: `${comfy.url}/api/interrupt` });
    assert.equal(res.status, 200, res.text);
    const jobId = res.json<{ id: string }>().id;
    const [stored] = await waitFor(async () => ((await deliveriesOf(jobId))[0]?.attempt_count ?? 0) > 0 && deliveriesOf(jobId), 'the first attempt', 10_000);
    const attempt = (await delivery(stored!.id)).attempts[0]!;
    assert.equal(attempt.status, null);
    assert.match(attempt.error ?? '', /ComfyUI backend/);
    assert.equal(comfy.requests.filter((r) => r.method === 'POST' && r.url === '/api/interrupt').length, 0, 'ComfyUI got no interrupt');
  });

  test('job.started when asked for, and job.failed with the error of a job that failed', async () => {
    const res = await run(alice.api_key, {
      prompt: SAVE_WORKFLOW,
      wait: 30,
      webhook_url: receiver.url('/ok/started'),
      webhook_events: ['job.started', 'job.succeeded'],
    });
    assert.equal(res.status, 200, res.text);
    await waitFor(() => receiver.to('/ok/started').length >= 2, 'two events', 10_000);
    assert.deepEqual(
      eventsAt('/ok/started').map((e) => [e.type, e.data.job.status]),
      [
        ['job.started', 'running'],
        ['job.succeeded', 'success'],
      ],
    );
    const failing = { '1': { class_type: 'VAEDecode', inputs: {} }, '2': { class_type: 'SaveImage', inputs: { images: ['1', 0] } } };
    const failed = await run(alice.api_key, {
      prompt: failing,
      wait: 30,
      webhook_url: receiver.url('/ok/failed'),
      webhook_events: ['job.succeeded', 'job.failed'],
    });
    assert.equal(failed.json<{ status: string }>().status, 'error');
    const [event] = await waitFor(() => eventsAt('/ok/failed').length > 0 && eventsAt('/ok/failed'), 'job.failed', 10_000);
    assert.equal(event!.type, 'job.failed');
    assert.equal(event!.data.job.status, 'error');
    assert.match(event!.data.job.error?.message ?? '', /VAEDecode failed/);
  });

  test("a user key's job.failed names no server path; an admin key's names it whole", async () => {
    const failing = { '1': { class_type: 'VAEDecode', inputs: {} }, '2': { class_type: 'SaveImage', inputs: { images: ['1', 0] } } };
    for (const [who, key] of [
      ['user', alice.api_key],
      ['admin', admin],
    ]) {
      const res = await run(key!, { prompt: failing, wait: 30, webhook_url: receiver.url(`/ok/paths-${who}`) });
      assert.equal(res.json<{ status: string }>().status, 'error', res.text);
    }
    const messageAt = async (path: string): Promise<string> =>
      (await waitFor(() => eventsAt(path)[0], `job.failed at ${path}`, 10_000)).data.job.error?.message ?? '';
    const missing = join(comfy.inputDir, 'missing file.png');
    assert.equal(await messageAt('/ok/paths-user'), "VAEDecode failed: [Errno 2] No such file or directory: 'missing file.png'");
    assert.equal(await messageAt('/ok/paths-admin'), `VAEDecode failed: [Errno 2] No such file or directory: '${missing}'`);
  });

  test('an interrupted job gets job.cancelled', async () => {
    const res = await run(alice.api_key, {
      prompt: longPrompt(20),
      wait: 0,
      webhook_url: receiver.url('/ok/cancel'),
      webhook_events: ['job.started', 'job.cancelled'],
    });
    assert.equal(res.status, 202, res.text);
    const jobId = res.json<{ id: string }>().id;
    await waitFor(() => eventsAt('/ok/cancel').length > 0, 'job.started', 10_000);
    assert.equal((await send(gateway.url, '/api/interrupt', { method: 'POST', key: alice.api_key, body: { prompt_id: jobId } })).status, 200);
    await waitFor(() => eventsAt('/ok/cancel').length >= 2, 'job.cancelled', 10_000);
    const [, cancelled] = eventsAt('/ok/cancel');
    assert.equal(cancelled!.type, 'job.cancelled');
    assert.equal(cancelled!.data.job.id, jobId);
    assert.equal(cancelled!.data.job.status, 'interrupted');
  });

  test("a key's webhook_url applies to its jobs from POST /prompt; a run's own webhook_url replaces it", async () => {
    const bob = await createKey(gateway.url, { name: 'bob', rate_limit: 10_000, webhook_url: receiver.url('/ok/bob') }, admin);
    const queued = await send(gateway.url, '/api/prompt', { method: 'POST', key: bob.api_key, body: { prompt: SAVE_WORKFLOW } });
    assert.equal(queued.status, 200, queued.text);
    const promptId = queued.json<{ prompt_id: string }>().prompt_id;
    const [event] = await waitFor(() => eventsAt('/ok/bob').length > 0 && eventsAt('/ok/bob'), "the key's webhook", 10_000);
    assert.equal(event!.type, 'job.succeeded');
    assert.equal(event!.data.job.id, promptId);
    const own = await run(bob.api_key, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiver.url('/ok/bob-run') });
    await waitFor(() => receiver.to('/ok/bob-run').length > 0, "the run's own webhook", 10_000);
    assert.equal(eventsAt('/ok/bob-run')[0]!.data.job.id, own.json<{ id: string }>().id);
    assert.equal(receiver.to('/ok/bob').length, 1, "the run's job is not sent to the key's URL");
  });

  test('the admin API lists deliveries newest first with filters and pages; user keys get 403; an unknown id is 404', async () => {
    const all = await send(gateway.url, '/api/gateway/webhooks/deliveries?limit=2', { key: admin });
    assert.equal(all.status, 200, all.text);
    const page = all.json<{ deliveries: Array<Delivery & { created_at: number }>; pagination: { offset: number; limit: number; has_more: boolean } }>();
    assert.equal(page.deliveries.length, 2);
    assert.deepEqual(page.pagination, { offset: 0, limit: 2, has_more: true });
    assert.ok(page.deliveries[0]!.created_at >= page.deliveries[1]!.created_at, 'newest first');
    assert.equal((page.deliveries[0] as unknown as Record<string, unknown>).body, undefined, 'a listing leaves out the body');
    const next = (await send(gateway.url, '/api/gateway/webhooks/deliveries?limit=2&offset=2', { key: admin })).json<{ deliveries: Delivery[] }>();
    assert.ok(!next.deliveries.some((d) => page.deliveries.some((p) => p.id === d.id)), 'the next page holds other deliveries');
    const delivered = (await send(gateway.url, '/api/gateway/webhooks/deliveries?state=delivered&limit=500', { key: admin })).json<{
      deliveries: Delivery[];
    }>();
    assert.ok(delivered.deliveries.length >= 5);
    assert.ok(delivered.deliveries.every((d) => d.state === 'delivered'));
    assert.equal((await send(gateway.url, '/api/gateway/webhooks/deliveries?state=done', { key: admin })).status, 400);
    assert.equal((await send(gateway.url, '/api/gateway/webhooks/deliveries?limit=0', { key: admin })).status, 400);
    assert.equal((await send(gateway.url, '/api/gateway/webhooks/deliveries', { key: alice.api_key })).status, 403);
    assert.equal((await send(gateway.url, `/api/gateway/webhooks/deliveries/${page.deliveries[0]!.id}`, { key: alice.api_key })).status, 403);
    assert.equal((await send(gateway.url, '/api/gateway/webhooks/deliveries')).status, 401);
    const missing = await send(gateway.url, '/api/gateway/webhooks/deliveries/whd_0000', { key: admin });
    assert.equal(missing.status, 404);
    assert.equal(missing.json<{ error_code: string }>().error_code, 'DELIVERY_NOT_FOUND');
    assert.equal((await send(gateway.url, '/api/gateway/webhooks/deliveries', { method: 'POST', key: admin, body: {} })).status, 405);
  });

  test('the OpenAPI document describes the deliveries API and the events POSTed', async () => {
    const doc = (await send(gateway.url, '/api/gateway/openapi.json')).json<{
      components: { schemas: Record<string, unknown> };
      paths: Record<string, { get: { responses: Record<string, { content: { 'application/json': { schema: unknown } } }> } }>;
    }>();
    const ajv = new Ajv2020({ strict: false });
    ajv.addSchema({ $id: 'openapi', components: doc.components });
    const check = (schema: unknown, value: unknown, what: string): void => {
      const validate = ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi#/components/')) as object);
      assert.ok(validate(value), `${what}: ${JSON.stringify(validate.errors)}`);
    };
    const list = await send(gateway.url, '/api/gateway/webhooks/deliveries?limit=500', { key: admin });
    check(doc.paths['/api/gateway/webhooks/deliveries']!.get.responses['200']!.content['application/json'].schema, list.json(), 'the listing');
    const [first] = list.json<{ deliveries: Delivery[] }>().deliveries;
    const detail = await send(gateway.url, `/api/gateway/webhooks/deliveries/${first!.id}`, { key: admin });
    check(doc.paths['/api/gateway/webhooks/deliveries/{id}']!.get.responses['200']!.content['application/json'].schema, detail.json(), 'a delivery');
    assert.ok(receiver.received.length > 0);
    for (const got of receiver.received)
      check({ $ref: '#/components/schemas/WebhookEvent' }, JSON.parse(got.body.toString('utf8')), `the event to ${got.path}`);
  });

  test('strict run bodies: webhook_events must be known events, with a webhook_url', async () => {
    for (const body of [
      { webhook_url: receiver.url('/ok/x'), webhook_events: ['job.done'] },
      { webhook_url: receiver.url('/ok/x'), webhook_events: [] },
      { webhook_url: receiver.url('/ok/x'), webhook_events: 'job.started' },
      { webhook_events: ['job.started'] },
      { webhook_url: 42 },
      { webhook_url: 'ftp://127.0.0.1/in' },
    ]) {
      const res = await run(alice.api_key, { prompt: SAVE_WORKFLOW, ...body });
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      const error = res.json<{ error_code: string; details: Array<{ field: string }> }>();
      assert.equal(error.error_code, 'INVALID_REQUEST');
      assert.ok(
        error.details.some((d) => d.field === 'webhook_events' || d.field === 'webhook_url'),
        res.text,
      );
    }
  });

  test('a delivery pending when the gateway stops is sent once after it starts again; an event lost before it was stored is enqueued at start-up', async () => {
    receiver.down = true;
    const first = await run(alice.api_key, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiver.url('/down/restart') });
    const firstId = first.json<{ id: string }>().id;
    await waitFor(() => receiver.to('/down/restart').length >= 1, 'a failed attempt', 10_000);
    assert.equal((await deliveriesOf(firstId))[0]?.state, 'pending');
    assert.equal(await gateway.stop(), 0);

    // An event whose delivery never reached the outbox (a crash between the job's write and the enqueue).
    gateway = await startGateway({ upstream: comfy.url, userDirectory: userDirectory.path, args });
    const second = await run(alice.api_key, { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiver.url('/down/lost') });
    const secondId = second.json<{ id: string }>().id;
    await waitFor(() => receiver.to('/down/lost').length >= 1, 'a failed attempt of the second job', 10_000);
    assert.equal(await gateway.stop(), 0);
    await forgetDeliveriesTo(userDirectory.path, '/down/lost');

    receiver.down = false;
    const before = receiver.received.length;
    gateway = await startGateway({ upstream: comfy.url, userDirectory: userDirectory.path, args });
    await waitFor(
      () => receiver.to('/down/restart').some((r) => r.status === 200) && receiver.to('/down/lost').some((r) => r.status === 200),
      'both events delivered after the restart',
      10_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 4 * RETRY_BASE * 1000));
    assert.equal(receiver.to('/down/restart').filter((r) => r.status === 200).length, 1, 'delivered once');
    assert.equal(receiver.to('/down/lost').filter((r) => r.status === 200).length, 1, 'delivered once');
    assert.equal(receiver.received.length - before, 2, 'nothing else was sent again');
    const [restarted] = await deliveriesOf(firstId);
    assert.equal(restarted!.state, 'delivered');
    assert.equal((await delivery(restarted!.id)).attempts.at(-1)!.status, 200);
    const [lost] = await deliveriesOf(secondId);
    assert.equal(lost!.state, 'delivered');
    assert.equal(lost!.attempt_count, 1, 'enqueued afresh at start-up');
  });
});

describe('webhook refusals', () => {
  let comfy: FakeComfyUI;
  let receiver: Receiver;

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 5 });
    receiver = new Receiver();
    await receiver.listen();
  });
  after(async () => {
    await comfy?.close();
    await receiver?.close();
  });

  test('without --webhook-allow-private, loopback, private and link-local URLs are refused at submission, in a run and in a key', async () => {
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--webhook-secret', SECRET] });
    try {
      const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 })).api_key;
      for (const url of [receiver.url('/ok/private'), 'http://localhost:9/in', 'http://10.1.2.3/in', 'http://169.254.169.254/latest', 'http://[::1]:9/in']) {
        const res = await send(gateway.url, '/api/gateway/run', { method: 'POST', key: admin, body: { prompt: SAVE_WORKFLOW, webhook_url: url } });
        assert.equal(res.status, 400, `${url}: ${res.text}`);
        const error = res.json<{ error: string; error_code: string; details: Array<{ field: string }> }>();
        assert.equal(error.error_code, 'INVALID_REQUEST');
        assert.deepEqual(
          error.details.map((d) => d.field),
          ['webhook_url'],
        );
        assert.match(error.error, /--webhook-allow-private/);
        const key = await send(gateway.url, '/api/keys', { method: 'POST', key: admin, body: { name: 'k', webhook_url: url } });
        assert.equal(key.status, 400, `${url}: ${key.text}`);
        assert.equal(key.json<{ details: Array<{ field: string }> }>().details[0]!.field, 'webhook_url');
      }
      const jobs = (await send(gateway.url, '/api/gateway/jobs', { key: admin })).json<{ pagination: { total: number } }>();
      assert.equal(jobs.pagination.total, 0, 'a refused run leaves no job');
      const user = await createKey(gateway.url, { name: 'user' }, admin);
      const patch = await send(gateway.url, `/api/keys/${user.key_id}`, { method: 'PATCH', key: admin, body: { webhook_url: 'http://192.168.1.10/in' } });
      assert.equal(patch.status, 400, patch.text);
      const fine = await send(gateway.url, `/api/keys/${user.key_id}`, { method: 'PATCH', key: admin, body: { webhook_url: 'https://93.184.216.34/in' } });
      assert.equal(fine.status, 200, fine.text);
      assert.equal(fine.json<{ key: { webhook_url: string } }>().key.webhook_url, 'https://93.184.216.34/in');
      const cleared = await send(gateway.url, `/api/keys/${user.key_id}`, { method: 'PATCH', key: admin, body: { webhook_url: null } });
      assert.equal(cleared.json<{ key: { webhook_url: string | null } }>().key.webhook_url, null);
    } finally {
      await gateway.stop();
    }
    assert.equal(receiver.received.length, 0);
  });

  test("without --webhook-allow-private, a URL to one of the gateway machine's own addresses is refused, a public one too", async () => {
    // The preload makes the gateway see this public address on one of its interfaces, as on a host with a public address.
    const ownPublic = '93.184.216.34';
    const gateway = await startGateway({
      upstream: comfy.url,
      args: ['--require-api-auth', '--webhook-secret', SECRET],
      env: { NODE_OPTIONS: `--import ${new URL('../helpers/extra-interface.js', import.meta.url).href}`, TEST_EXTRA_INTERFACE_ADDRESS: ownPublic },
    });
    const nonLoopback = Object.values(networkInterfaces())
      .flatMap((entries) => entries ?? [])
      .filter((entry) => !entry.internal && !entry.address.startsWith('fe80:'))
      .map((entry) => (entry.family === 'IPv6' ? `[${entry.address}]` : entry.address));
    try {
      const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 })).api_key;
      // The gateway's own key management, reached through an address of its machine.
      for (const url of [ownPublic, ...nonLoopback].map((host) => `http://${host}:${gateway.port}/api/keys`)) {
        const key = await send(gateway.url, '/api/keys', { method: 'POST', key: admin, body: { name: 'k', webhook_url: url } });
        assert.equal(key.status, 400, `${url}: ${key.text}`);
        const run = await send(gateway.url, '/api/gateway/run', { method: 'POST', key: admin, body: { prompt: SAVE_WORKFLOW, webhook_url: url } });
        assert.equal(run.status, 400, `${url}: ${run.text}`);
        for (const error of [key, run].map((res) => res.json<{ error: string; error_code: string; details: Array<{ field: string }> }>())) {
          assert.equal(error.error_code, 'INVALID_REQUEST');
          assert.deepEqual(
            error.details.map((d) => d.field),
            ['webhook_url'],
          );
          assert.match(error.error, /this machine.*--webhook-allow-private/);
        }
      }
      const elsewhere = await send(gateway.url, '/api/keys', { method: 'POST', key: admin, body: { name: 'k', webhook_url: 'https://93.184.216.35/in' } });
      assert.equal(elsewhere.status, 200, `another public address is allowed: ${elsewhere.text}`);
    } finally {
      await gateway.stop();
    }
  });

  test("without --webhook-secret, a run's webhook_url is 400 WEBHOOKS_DISABLED and a key's webhook_url is not used", async () => {
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--webhook-allow-private'] });
    try {
      const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 })).api_key;
      const res = await send(gateway.url, '/api/gateway/run', {
        method: 'POST',
        key: admin,
        body: { prompt: SAVE_WORKFLOW, webhook_url: receiver.url('/ok/off') },
      });
      assert.equal(res.status, 400, res.text);
      const error = res.json<{ error: string; error_code: string }>();
      assert.equal(error.error_code, 'WEBHOOKS_DISABLED');
      assert.match(error.error, /--webhook-secret/);
      const user = await createKey(gateway.url, { name: 'user', webhook_url: receiver.url('/ok/key-off') }, admin);
      const ran = await send(gateway.url, '/api/gateway/run', { method: 'POST', key: user.api_key, body: { prompt: SAVE_WORKFLOW, wait: 30 } });
      assert.equal(ran.json<{ status: string }>().status, 'success');
      const list = await send(gateway.url, '/api/gateway/webhooks/deliveries', { key: admin });
      assert.deepEqual(list.json<{ deliveries: unknown[] }>().deliveries, [], 'no delivery was enqueued');
      const secret = await send(gateway.url, `/api/keys/${user.key_id}/webhook-secret`, { key: user.api_key });
      assert.equal(secret.status, 400, secret.text);
      assert.equal(secret.json<{ error_code: string }>().error_code, 'WEBHOOKS_DISABLED');
      assert.match(secret.json<{ error: string }>().error, /start the gateway with --webhook-secret/);
    } finally {
      await gateway.stop();
    }
    assert.equal(receiver.received.length, 0);
  });
});

describe('comfy-gate keys --webhook-url and webhook-secret', () => {
  test('create and update take a URL or none; a URL that is not http(s) exits with 2 and changes nothing', async () => {
    const dir = await tempUserDirectory();
    try {
      const keys = (...args: string[]) => runCli(['keys', ...args, '--user-directory', dir.path]);
      const created = await keys('create', '--name', 'cli', '--webhook-url', 'https://hooks.example.com/comfy', '--json');
      assert.equal(created.code, 0, created.stderr);
      const { key_id: keyId, webhook_url: url } = JSON.parse(created.stdout) as { key_id: string; webhook_url: string };
      assert.equal(url, 'https://hooks.example.com/comfy');
      assert.match((await keys('show', keyId)).stdout, /^webhook url: +https:\/\/hooks\.example\.com\/comfy$/m);
      for (const value of ['ftp://hooks.example.com/', 'not a url', 'https://user:pass@hooks.example.com/']) {
        const refused = await keys('update', keyId, '--webhook-url', value);
        assert.equal(refused.code, 2, refused.stderr);
        assert.match(refused.stderr, /webhook.url/);
      }
      const cleared = await keys('update', keyId, '--webhook-url', 'none', '--json');
      assert.equal(cleared.code, 0, cleared.stderr);
      assert.equal((JSON.parse(cleared.stdout) as { key: { webhook_url: unknown } }).key.webhook_url, null);
    } finally {
      await dir.remove();
    }
  });

  test("keys webhook-secret prints the key's signing secret as the gateway serves it, given the gateway's secret, and audits the read", async () => {
    const dir = await tempUserDirectory();
    const comfy = await startFakeComfyUI({ stepDelayMs: 5 });
    try {
      const keys = (args: string[], env: Record<string, string> = {}) => runCli(['keys', ...args, '--user-directory', dir.path], env);
      const created = await keys(['create', '--name', 'cli', '--json']);
      const { key_id: keyId, api_key: apiKey } = JSON.parse(created.stdout) as { key_id: string; api_key: string };
      const missing = await keys(['webhook-secret', keyId]);
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, /COMFY_GATE_WEBHOOK_SECRET/);
      const short = await keys(['webhook-secret', keyId, '--webhook-secret', 'short']);
      assert.equal(short.code, 2, short.stderr);
      assert.match(short.stderr, /at least 16 characters/);
      const printed = await keys(['webhook-secret', keyId], { COMFY_GATE_WEBHOOK_SECRET: SECRET });
      assert.equal(printed.code, 0, printed.stderr);
      assert.match(printed.stdout.trim(), /^whsec_[0-9a-f]{64}$/);
      const json = await keys(['webhook-secret', keyId, '--webhook-secret', SECRET, '--json']);
      assert.deepEqual(JSON.parse(json.stdout), { key_id: keyId, webhook_secret: printed.stdout.trim() });
      const unknown = await keys(['webhook-secret', 'nosuchkey0000000000000'], { COMFY_GATE_WEBHOOK_SECRET: SECRET });
      assert.notEqual(unknown.code, 0);

      const gateway = await startGateway({ upstream: comfy.url, userDirectory: dir.path, args: ['--require-api-auth', '--webhook-secret', SECRET] });
      try {
        const served = await send(gateway.url, `/api/keys/${keyId}/webhook-secret`, { key: apiKey });
        assert.equal(served.json<{ webhook_secret: string }>().webhook_secret, printed.stdout.trim());
      } finally {
        await gateway.stop();
      }
      const audit = await runCli(['audit', '--user-directory', dir.path, '--json']);
      const reads = (JSON.parse(audit.stdout) as { entries: Array<{ actor: string; action: string }> }).entries.filter(
        (e) => e.action === 'key.webhook_secret',
      );
      assert.deepEqual(
        reads.map((e) => e.actor),
        ['cli', 'cli', keyId],
      );
    } finally {
      await comfy.close();
      await dir.remove();
    }
  });
});
