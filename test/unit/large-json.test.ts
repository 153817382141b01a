// Unit tests of JsonRewriter: an admin's /history and /api/jobs rewritten in a worker thread are byte for byte what the request thread gives; large request bodies parsed in one read as parseExactJson reads them.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { IsolatedCaller, IsolationContext } from '../../src/isolation/context.js';
import { getHistoryList } from '../../src/isolation/history.js';
import { getJobList } from '../../src/isolation/jobs.js';
import { getQueue } from '../../src/isolation/queue.js';
import { JsonRewriter } from '../../src/isolation/large-json.js';
import { parseExactJson, stringifyExactJson } from '../../src/json/exact-json.js';
import type { BackendPool } from '../../src/backends/backend-pool.js';
import type { JobService } from '../../src/jobs/job-service.js';
import type { HttpProxy, UpstreamAnswer } from '../../src/proxy/http.js';
import { FileJobStore } from '../../src/store/file/file-job-store.js';
import { FileOwnershipStore } from '../../src/store/file/file-ownership-store.js';
import type { JobRecord, KeyRecord } from '../../src/store/types.js';
import { oneBackendJobService, oneBackendPool, quietEvents } from '../helpers/one-backend.js';
import { waitFor } from '../helpers/wait-for.js';

const ADMIN = { key_id: 'admin', role: 'admin' } as KeyRecord;
const ADMIN_CALLER: IsolatedCaller = { key: ADMIN, seesAll: true, upstreamHeaders: {} };
const GATEWAY_CLIENT_ID = 'gateway-socket';
const SECRETS = { api_key_comfy_org: 'secret-api-key', auth_token_comfy_org: 'secret-token' };
/** Other keys' entries, enough for an answer of a few hundred KB. */
const FOREIGN_ENTRIES = 2000;

function job(id: string, upstreamId: string, clientId: string | null): JobRecord {
  return {
    id,
    key_id: 'alice',
    client_id: clientId,
    backend: 'default',
    upstream_id: upstreamId,
    status: 'success',
    admitted_at: 1,
    forwarded_at: 1,
    started_at: 1,
    finished_at: 2,
    execution_seconds: 1,
    outputs: [],
    error: null,
    request: null,
    front: false,
    webhook: null,
  };
}

function historyEntry(upstreamId: string, image: string): unknown {
  return {
    prompt: [1, upstreamId, { '9': { class_type: 'SaveImage', inputs: {} } }, { client_id: GATEWAY_CLIENT_ID, ...SECRETS }, ['9']],
    outputs: { '9': { images: [{ filename: image, subfolder: '', type: 'output' }] } },
    status: { status_str: 'success', completed: true, messages: [] },
    meta: {},
  };
}

/** ComfyUI's history: alice's two jobs (one under another id in ComfyUI) among other keys' entries. */
function history(): Record<string, unknown> {
  const entries: Record<string, unknown> = {};
  for (let i = 0; i < FOREIGN_ENTRIES; i += 1) {
    entries[`foreign-${i}`] = historyEntry(`foreign-${i}`, `foreign-${i}.png`);
    if (i === FOREIGN_ENTRIES / 2) {
      entries['comfy-a'] = historyEntry('comfy-a', 'a.png');
      entries['job-b'] = historyEntry('job-b', 'b.png');
    }
  }
  return entries;
}

/** ComfyUI's job list for the same history. */
function jobList(): Record<string, unknown> {
  const jobs = Object.keys(history()).map((id) => ({ id, status: 'completed', outputs_count: 1 }));
  return { jobs, pagination: { offset: 0, limit: null, total: jobs.length, has_more: false } };
}

describe('JsonRewriter', () => {
  let dir: string;
  let ownership: FileOwnershipStore;
  let jobs: FileJobStore;
  let service: JobService;
  let pool: BackendPool;
  let proxy: HttpProxy;
  /** ComfyUI's next answer, made anew for every request (a worker thread takes its buffer). */
  let upstream: () => UpstreamAnswer;
  const rewriters: JsonRewriter[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-large-json-'));
    ownership = new FileOwnershipStore({ directory: dir });
    jobs = new FileJobStore({ directory: dir });
    await Promise.all([ownership.open(), jobs.open()]);
    await jobs.create(job('job-a', 'comfy-a', 'alice-client'));
    await jobs.create(job('job-b', 'job-b', null));
    proxy = { fetch: async (): Promise<UpstreamAnswer> => upstream() } as unknown as HttpProxy;
    pool = oneBackendPool(proxy, quietEvents(GATEWAY_CLIENT_ID));
    service = oneBackendJobService({ jobs, ownership, pool, clientId: GATEWAY_CLIENT_ID, key: ADMIN });
  });
  afterEach(async () => {
    await Promise.all(rewriters.splice(0).map((rewriter) => rewriter.close()));
    service.close();
    await Promise.all([ownership.close(), jobs.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  function contextWith(rewriter: JsonRewriter): IsolationContext {
    rewriters.push(rewriter);
    return { pool, ownership, jobs: service, rewriter, defaultPolicy: null, nodeReplacements: async () => new Map() };
  }
  /** Rewrites every answer on the request thread. */
  const onRequestThread = (): IsolationContext => contextWith(new JsonRewriter({ fromBytes: Number.POSITIVE_INFINITY }));
  /** Rewrites every answer in a worker thread. */
  const inWorker = (): IsolationContext => contextWith(new JsonRewriter({ fromBytes: 0 }));

  function json(body: unknown, headers: UpstreamAnswer['headers'] = { 'content-type': 'application/json; charset=utf-8', etag: '"comfyui"' }): UpstreamAnswer {
    return { status: 200, headers, body: Buffer.from(JSON.stringify(body)) };
  }

  /** Runs a handler with a response that records what is written. */
  async function answerOf(
    handler: typeof getHistoryList,
    ctx: IsolationContext,
    path: string,
    caller = ADMIN_CALLER,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
    const sent: { status: number; headers: Record<string, unknown>; body: Buffer } = { status: 0, headers: {}, body: Buffer.alloc(0) };
    const res = {
      writeHead: (status: number, headers: Record<string, unknown>) => Object.assign(sent, { status, headers }),
      end: (body?: Buffer) => (sent.body = body ?? Buffer.alloc(0)),
    } as unknown as ServerResponse;
    await handler(ctx, { url: path } as IncomingMessage, res, caller, path, new URLSearchParams());
    return sent;
  }

  test("an admin's /history: the same bytes from the worker thread, each job as its key knows it, no secrets", async () => {
    upstream = () => json(history());
    const here = await answerOf(getHistoryList, onRequestThread(), '/api/history');
    const worker = inWorker();
    const there = await answerOf(getHistoryList, worker, '/api/history');
    assert.equal(worker.rewriter.threadCount, 1, 'the worker thread rewrote it');
    assert.equal(there.status, 200);
    assert.deepEqual(there.headers, here.headers);
    assert.ok(there.body.equals(here.body), 'byte for byte the same answer');
    assert.deepEqual(there.headers, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(there.body.length) });

    const text = there.body.toString();
    for (const secret of Object.values(SECRETS)) assert.ok(!text.includes(secret), 'no secret is left');
    const body = JSON.parse(text) as Record<string, { prompt: [number, string, unknown, Record<string, unknown>, unknown] }>;
    assert.equal(Object.keys(body).length, FOREIGN_ENTRIES + 2);
    assert.equal(body['comfy-a'], undefined, 'a job is listed under the id its key knows');
    assert.equal(body['job-a']!.prompt[1], 'job-a');
    assert.deepEqual(body['job-a']!.prompt[3], { client_id: 'alice-client' }, "the client's own client_id");
    assert.deepEqual(body['job-b']!.prompt[3], {}, 'no client_id for a job sent without one');
    assert.deepEqual(body['foreign-7']!.prompt[3], { client_id: GATEWAY_CLIENT_ID }, 'an entry that is no job keeps its client_id');
    assert.deepEqual(
      Object.keys(body).slice(FOREIGN_ENTRIES / 2, FOREIGN_ENTRIES / 2 + 4),
      ['foreign-1000', 'job-a', 'job-b', 'foreign-1001'],
      "ComfyUI's order",
    );
    await waitFor(
      () => ownership.ownerOf('file', 'output//a.png') === 'alice' && ownership.ownerOf('file', 'output//b.png') === 'alice',
      "the jobs' outputs claimed",
    );
  });

  test('an answer with numbers as Python writes them: the same bytes from the worker thread, each number as ComfyUI wrote it', async () => {
    const pythonNumbers = (answer: UpstreamAnswer): UpstreamAnswer => ({
      ...answer,
      body: Buffer.from(answer.body.toString().replaceAll('"inputs":{}', '"inputs": {"seed": 18446744073709551615, "cfg": 7.0, "denoise": 1e-05}')),
    });
    upstream = () => pythonNumbers(json(history()));
    const here = await answerOf(getHistoryList, onRequestThread(), '/api/history');
    const there = await answerOf(getHistoryList, inWorker(), '/api/history');
    assert.ok(there.body.equals(here.body), 'byte for byte the same answer');
    const text = here.body.toString();
    assert.equal(text.match(/"inputs":\{"seed":18446744073709551615,"cfg":7\.0,"denoise":1e-05\}/g)?.length, FOREIGN_ENTRIES + 2, text.slice(0, 300));
  });

  test("an admin's /api/jobs: the same bytes from the worker thread, each job's id as its key knows it", async () => {
    upstream = () => json(jobList());
    const here = await answerOf(getJobList, onRequestThread(), '/api/jobs');
    const there = await answerOf(getJobList, inWorker(), '/api/jobs');
    assert.ok(there.body.equals(here.body), 'byte for byte the same answer');
    assert.deepEqual(there.headers, here.headers);
    const ids = JSON.parse(there.body.toString()).jobs.map((item: { id: string }) => item.id) as string[];
    assert.equal(ids.length, FOREIGN_ENTRIES + 2);
    assert.deepEqual(ids.slice(FOREIGN_ENTRIES / 2 + 1, FOREIGN_ENTRIES / 2 + 3), ['job-a', 'job-b']);
    assert.ok(!ids.includes('comfy-a'));
  });

  test('an answer that is not the expected JSON comes back from the worker thread as it was, and so does an error', async () => {
    const notJson = Buffer.from('x'.repeat(100_000) + ' not JSON');
    upstream = () => ({ status: 200, headers: { 'content-type': 'text/plain', etag: '"e"' }, body: Buffer.from(notJson) });
    const worker = inWorker();
    const relayed = await answerOf(getHistoryList, worker, '/api/history');
    assert.equal(worker.rewriter.threadCount, 1);
    assert.ok(relayed.body.equals(notJson));
    assert.deepEqual(relayed.headers, { 'content-type': 'text/plain', etag: '"e"', 'content-length': String(notJson.length) });
    upstream = () => json({ jobs: 'none' });
    assert.deepEqual(JSON.parse((await answerOf(getJobList, worker, '/api/jobs')).body.toString()), { jobs: 'none' });
    upstream = () => ({ status: 500, headers: {}, body: Buffer.from('{"error": "boom"}') });
    assert.equal((await answerOf(getHistoryList, worker, '/api/history')).body.toString(), '{"error": "boom"}');
  });

  test('a failed lookup fails only its request; the thread goes on with the next, and a closed rewriter works without threads', async () => {
    const rewriter = new JsonRewriter({ fromBytes: 0 });
    rewriters.push(rewriter);
    const answer = (): UpstreamAnswer => json(jobList());
    await assert.rejects(
      rewriter.rewrite(answer(), 'admin-jobs', () => Promise.reject(new Error('lookup failed'))),
      /lookup failed/,
    );
    const ids = new Map([['comfy-a', 'job-a']]);
    const rewritten = await rewriter.rewrite(answer(), 'admin-jobs', async () => ids);
    assert.ok(rewritten.body.toString().includes('"job-a"'));
    assert.equal(rewriter.threadCount, 1, 'the same thread');
    await rewriter.close();
    assert.equal(rewriter.threadCount, 0);
    const afterClose = await rewriter.rewrite(answer(), 'admin-jobs', async () => ids);
    assert.ok(afterClose.body.equals(rewritten.body));
  });

  test("a held job's large body, listed in /queue and a user key's /api/jobs, is parsed in a worker thread, each number as written", async () => {
    const numbers = Array(100_000).fill('7.0').join(', ');
    const body = `{"prompt": {"3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615, "cfg": 7.0, "values": [${numbers}]}}}, "extra_data": {"create_time": 17}}`;
    await jobs.create({ ...job('job-held', 'job-held', null), status: 'held', upstream_id: null, request: { body, headers: {} } });
    upstream = () => json({ queue_running: [], queue_pending: [], jobs: [] });
    const ALICE: IsolatedCaller = { key: { key_id: 'alice', role: 'user' } as KeyRecord, seesAll: false, upstreamHeaders: {} };
    // The gateway's own thresholds: a body of 128 KiB or more with such numbers goes to a worker thread.
    const forQueue = contextWith(new JsonRewriter());
    const queue = await answerOf(getQueue, forQueue, '/api/queue');
    assert.equal(forQueue.rewriter.threadCount, 1, 'the held body was parsed in a worker thread');
    const [held] = (parseExactJson(queue.body.toString()) as { queue_pending: unknown[][] }).queue_pending;
    assert.equal(held![1], 'job-held');
    assert.match(queue.body.toString(), /"seed":18446744073709551615,"cfg":7\.0,"values":\[7\.0,7\.0,/);
    const forJobs = contextWith(new JsonRewriter());
    const list = await answerOf(getJobList, forJobs, '/api/jobs', ALICE);
    assert.equal(forJobs.rewriter.threadCount, 1, 'the held body was parsed in a worker thread');
    const item = (JSON.parse(list.body.toString()) as { jobs: Array<Record<string, unknown>> }).jobs.find((listed) => listed.id === 'job-held');
    assert.deepEqual([item?.status, item?.create_time], ['pending', 17], 'its create_time read from the held body');
  });

  test('requests at once use at most the threads allowed', async () => {
    const rewriter = new JsonRewriter({ fromBytes: 0, threads: 2 });
    rewriters.push(rewriter);
    const ids = new Map([['comfy-a', 'job-a']]);
    const answers = await Promise.all(Array.from({ length: 5 }, () => rewriter.rewrite(json(jobList()), 'admin-jobs', async () => ids)));
    assert.equal(rewriter.threadCount, 2);
    for (const answer of answers) assert.ok(answer.body.equals(answers[0]!.body));
  });
});

describe('JsonRewriter.parseBody', () => {
  const rewriters: JsonRewriter[] = [];
  afterEach(() => Promise.all(rewriters.splice(0).map((rewriter) => rewriter.close())));
  /** A rewriter with the gateway's thresholds. */
  function rewriter(): JsonRewriter {
    const made = new JsonRewriter();
    rewriters.push(made);
    return made;
  }
  /** A prompt as Python's json.dumps writes one, of about `count` × 5 bytes: floats with a `.0`, a look-alike of an ExactNumber, a long string. */
  const pythonPrompt = (count: number, number = '7.0', seed = '18446744073709551615'): string =>
    `{"prompt": {"3": {"class_type": "KSampler", "inputs": {"seed": ${seed}, "cfg": ${number}, "values": [${Array(count).fill(number).join(', ')}]}}}, ` +
    `"look_alike": {"value": "7.0", "isLosslessNumber": true}, "image": "${'A'.repeat(5000)}"}`;
  /** Resolves `parsing` and says whether the event loop turned before it settled. */
  async function withTurns(parsing: () => Promise<unknown>): Promise<{ document: unknown; turned: boolean }> {
    let turned = false;
    setImmediate(() => (turned = true));
    const document = await parsing();
    return { document, turned };
  }

  test('a large body that needs the exact reader is parsed in a worker thread, as parseExactJson reads it, while the event loop turns', async () => {
    const parser = rewriter();
    const text = pythonPrompt(100_000);
    const { document, turned } = await withTurns(() => parser.parseBody(text));
    assert.ok(turned, 'other work ran while the body was parsed');
    assert.equal(parser.threadCount, 1);
    assert.deepStrictEqual(document, parseExactJson(text));
    assert.equal(stringifyExactJson(document), stringifyExactJson(parseExactJson(text)));
    assert.equal(Object.getPrototypeOf((document as { look_alike: object }).look_alike), Object.prototype);
  });

  test('a small body, and a large one without such numbers, are parsed on the request thread', async () => {
    const parser = rewriter();
    for (const text of [pythonPrompt(10), pythonPrompt(100_000, '7.5', '42')]) {
      const { document, turned } = await withTurns(() => parser.parseBody(text));
      assert.equal(turned, false);
      assert.deepStrictEqual(document, parseExactJson(text));
    }
    assert.equal(parser.threadCount, 0, 'no thread was started');
  });

  test('a large body nested deeper than structured clone reads is parsed on the request thread, as before', async () => {
    const parser = rewriter();
    const depth = 20_000;
    const text = pythonPrompt(100_000).replace('"cfg": 7.0', `"cfg": ${'['.repeat(depth)}7.0${']'.repeat(depth)}`);
    const leaf = (document: unknown): unknown => {
      let cfg = (document as { prompt: Record<string, { inputs: { cfg: unknown } }> }).prompt['3']!.inputs.cfg;
      for (let level = 0; level < depth; level += 1) cfg = (cfg as unknown[])[0];
      return cfg;
    };
    // So deep, the exact reader gives out too, and parseExactJson reads the body with JSON.parse.
    assert.equal(leaf(await parser.parseBody(text)), leaf(parseExactJson(text)));
    assert.equal(parser.threadCount, 1, 'the worker thread parsed it first');
  });

  test('a body that is not JSON fails with the SyntaxError JSON.parse gives it, either way', async () => {
    const parser = rewriter();
    for (const text of [pythonPrompt(10).slice(0, -1), pythonPrompt(100_000).slice(0, -1), `${pythonPrompt(100_000)} NaN`]) {
      const failure = (await parser.parseBody(text).then(
        () => undefined,
        (error: unknown) => error,
      )) as SyntaxError;
      assert.ok(failure instanceof SyntaxError);
      assert.throws(() => JSON.parse(text), { name: 'SyntaxError', message: failure.message });
    }
    assert.equal(parser.threadCount, 1);
  });
});
