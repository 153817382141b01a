// Unit tests of POST /prompt as a job, against ComfyUI's possible answers: queued under the id sent, refused, queued under another id, answer lost.

import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { upstreamUnavailable } from '../../src/errors.js';
import type { IsolatedCaller, IsolationContext } from '../../src/isolation/context.js';
import { JsonRewriter } from '../../src/isolation/large-json.js';
import { postPrompt } from '../../src/isolation/prompt.js';
import type { BackendPool } from '../../src/backends/backend-pool.js';
import type { JobService } from '../../src/jobs/job-service.js';
import type { HttpProxy, UpstreamAnswer } from '../../src/proxy/http.js';
import type { FileJobStore } from '../../src/store/file/file-job-store.js';
import type { FileOwnershipStore } from '../../src/store/file/file-ownership-store.js';
import type { KeyRecord } from '../../src/store/types.js';
import { oneBackendJobService, oneBackendPool, quietEvents } from '../helpers/one-backend.js';
import { jobRecord } from '../helpers/job-record.js';
import { openJobStores, type OpenJobStores } from '../helpers/job-stores.js';

const ALICE = { key_id: 'alice', role: 'user', max_queued: null, max_running: null, daily_execution_seconds: null } as KeyRecord;
const CALLER: IsolatedCaller = { key: ALICE, seesAll: false, upstreamHeaders: {} };
const PROMPT = { '9': { class_type: 'SaveImage', inputs: {} } };
const GATEWAY_CLIENT_ID = 'gateway-socket';

describe('POST /prompt admits a job', () => {
  let stores: OpenJobStores;
  let ownership: FileOwnershipStore;
  let jobs: FileJobStore;
  let service: JobService;
  let pool: BackendPool;
  /** How the fake ComfyUI answers the next prompt. */
  let answer: (sent: Record<string, unknown>) => UpstreamAnswer;
  let sent: Record<string, unknown>[];
  const answered: string[] = [];

  beforeEach(async () => {
    stores = await openJobStores('prompt-admission');
    ({ jobs, ownership } = stores);
    sent = [];
    answered.length = 0;
    const proxy = {
      fetch: async (_req: IncomingMessage | null, overrides: { body?: string }): Promise<UpstreamAnswer> => {
        const body = JSON.parse(String(overrides.body)) as Record<string, unknown>;
        sent.push(body);
        return answer(body);
      },
    } as unknown as HttpProxy;
    pool = oneBackendPool(
      proxy,
      quietEvents(GATEWAY_CLIENT_ID, {
        answered: (id: string) => {
          answered.push(id);
        },
      }),
    );
    service = oneBackendJobService({ jobs, ownership, pool, clientId: GATEWAY_CLIENT_ID, key: ALICE });
  });
  afterEach(async () => {
    service.close();
    await stores.close();
  });

  const ok = (promptId: unknown): UpstreamAnswer => ({
    status: 200,
    headers: {},
    body: Buffer.from(JSON.stringify({ prompt_id: promptId, number: 1, node_errors: {} })),
  });

  /** Posts `body` as alice; resolves the status and body relayed to the client. */
  async function post(body: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> {
    const ctx: IsolationContext = {
      pool,
      ownership,
      jobs: service,
      rewriter: new JsonRewriter(),
      defaultPolicy: null,
      nodeReplacements: async () => new Map(),
    };
    const req = Object.assign(Readable.from([Buffer.from(JSON.stringify(body))]), { headers: {} }) as unknown as IncomingMessage;
    let status = 0;
    let text = '';
    const res = { writeHead: (code: number) => (status = code), end: (chunk?: Buffer) => (text = chunk ? chunk.toString() : '') } as unknown as ServerResponse;
    await postPrompt(ctx, req, res, CALLER);
    return { status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  test("a queued prompt is the key's job under the id sent, and ComfyUI sees the gateway's client_id", async () => {
    answer = (s) => ok(s.prompt_id);
    const { status, body } = await post({ prompt: PROMPT, client_id: 'c1', front: true, number: -1 });
    assert.equal(status, 200);
    const job = jobs.get(String(body.prompt_id))!;
    assert.equal(job.key_id, 'alice');
    assert.equal(job.status, 'queued');
    assert.equal(job.client_id, 'c1');
    assert.equal(job.upstream_id, job.id);
    assert.equal(sent[0]!.client_id, GATEWAY_CLIENT_ID);
    assert.equal(sent[0]!.front, undefined, "a user key's front is dropped");
    assert.equal(sent[0]!.number, undefined, "a user key's number is dropped");
    assert.equal(ownership.ownerOf('client', 'c1'), 'alice');
    assert.deepEqual(answered, [job.id]);
  });

  test('a prompt ComfyUI queued under another prompt_id becomes the job of that id', async () => {
    answer = () => ok('made-by-comfyui');
    const { status, body } = await post({ prompt: PROMPT, prompt_id: 'mine' });
    assert.equal(status, 200);
    assert.equal(body.prompt_id, 'made-by-comfyui');
    assert.equal(jobs.get('mine'), undefined);
    assert.equal(jobs.get('made-by-comfyui')!.key_id, 'alice');
    assert.equal(jobs.byUpstreamId('default', 'made-by-comfyui')!.id, 'made-by-comfyui');
  });

  test('a refused prompt is relayed and leaves no job: its id may be sent again', async () => {
    answer = () => ({
      status: 400,
      headers: {},
      body: Buffer.from(JSON.stringify({ error: { type: 'invalid_prompt', message: 'bad' }, node_errors: { '9': {} } })),
    });
    const first = await post({ prompt: PROMPT, prompt_id: 'p1' });
    assert.equal(first.status, 400);
    assert.equal(jobs.get('p1'), undefined);
    assert.equal(jobs.count({}), 0);
    answer = (s) => ok(s.prompt_id);
    assert.equal((await post({ prompt: PROMPT, prompt_id: 'p1' })).status, 200);
    assert.equal(jobs.get('p1')!.status, 'queued');
  });

  test("another key's prompt_id is refused and ComfyUI never sees the prompt", async () => {
    answer = (s) => ok(s.prompt_id);
    await jobs.create(baseJob('taken', 'bob'));
    await assert.rejects(post({ prompt: PROMPT, prompt_id: 'taken' }), (error: { status: number }) => error.status === 403);
    assert.equal(sent.length, 0);
    assert.equal(jobs.get('taken')!.key_id, 'bob');
  });

  test('a lost answer leaves the job queued under the id sent, for reconciliation', async () => {
    answer = () => {
      throw upstreamUnavailable(new Error('reset'));
    };
    await assert.rejects(post({ prompt: PROMPT, prompt_id: 'lost' }), (error: { status: number }) => error.status === 502);
    assert.equal(jobs.get('lost')!.status, 'queued');
    assert.equal(jobs.get('lost')!.upstream_id, 'lost');
  });

  test("the gateway's clientId is claimed at start and again at each tick, so that its claim is renewed while the gateway runs", (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const claims: string[] = [];
    const watched = Object.create(ownership, {
      claim: { value: (kind: 'client', id: string, keyId: string) => (claims.push(`${kind} ${id} ${keyId}`), ownership.claim(kind, id, keyId)) },
    }) as FileOwnershipStore;
    const quiet = { fetch: async (): Promise<UpstreamAnswer> => ({ status: 404, headers: {}, body: Buffer.from('{}') }) } as unknown as HttpProxy;
    const ticking = oneBackendJobService({ jobs, ownership: watched, pool: oneBackendPool(quiet, pool.any().events), clientId: 'gateway-2', key: ALICE });
    ticking.start();
    t.mock.timers.tick(30_000);
    t.mock.timers.tick(30_000);
    ticking.close();
    assert.deepEqual(
      claims.filter((claim) => claim.startsWith('client gateway-2')),
      Array(3).fill('client gateway-2 :gateway'),
    );
  });
});

function baseJob(id: string, keyId: string): Parameters<FileJobStore['create']>[0] {
  return jobRecord(id, { key_id: keyId });
}
