// Self-check of the fake ComfyUI server used by the gateway tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { waitFor } from '../helpers/wait-for.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}
interface Frame {
  type: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the fake's answers are read as loosely as a client would
  data: any;
}

/** Raw HTTP request (node:http, so Host/Origin and odd paths are sent as given). Body chunks are written one by one. */
function request(
  fake: FakeComfyUI,
  method: string,
  target: string,
  opts: { headers?: http.OutgoingHttpHeaders; body?: string | Buffer | AsyncIterable<Buffer> } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: fake.port, method, path: target, headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    const body = opts.body;
    if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) {
      req.end(body);
      return;
    }
    void (async () => {
      for await (const chunk of body) if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
      req.end();
    })().catch(reject);
  });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = (reply: Reply): any => JSON.parse(reply.body.toString('utf8'));

/** Opens /ws and records every frame (JSON frames parsed, binary frames as Buffers). */
async function connect(fake: FakeComfyUI, target = '/ws'): Promise<{ ws: WebSocket; frames: Array<Frame | Buffer> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${fake.port}${target}`);
  const frames: Array<Frame | Buffer> = [];
  ws.on('message', (data, isBinary) => frames.push(isBinary ? (data as Buffer) : JSON.parse(data.toString())));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  await waitFor(() => frames.length > 0, 'first frame');
  return { ws, frames };
}

const jsonFrames = (frames: Array<Frame | Buffer>): Frame[] => frames.filter((f): f is Frame => !Buffer.isBuffer(f));

const WORKFLOW = {
  '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'v1-5-pruned-emaonly.safetensors' } },
  '3': { class_type: 'KSampler', inputs: { model: ['4', 0], seed: 1 } },
  '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'ComfyUI' } },
};

test('runs a prompt: WS events in §7 order, preview frames, history and /view', async (t) => {
  const fake = await startFakeComfyUI({ previewFrames: true, stepDelayMs: 1 });
  t.after(() => fake.close());
  const { ws, frames } = await connect(fake, '/ws?clientId=alice');
  const other = await connect(fake, '/api/ws');
  assert.deepEqual(frames[0], { type: 'status', data: { status: { exec_info: { queue_remaining: 0 } }, sid: 'alice' } });
  assert.match((other.frames[0] as Frame).data.sid, /^[0-9a-f]{32}$/);

  ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
  await waitFor(() => jsonFrames(frames).find((f) => f.type === 'feature_flags'), 'feature_flags reply');

  const submitted = await request(fake, 'POST', '/api/prompt', {
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: JSON.stringify({ prompt: WORKFLOW, client_id: 'alice', extra_data: { auth_token_comfy_org: 'secret' } }),
  });
  assert.equal(submitted.status, 200);
  assert.equal(submitted.headers['content-type'], 'application/json; charset=utf-8');
  const { prompt_id: promptId, number, node_errors: nodeErrors } = json(submitted);
  assert.match(promptId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(number, 0);
  assert.deepEqual(nodeErrors, {});

  const queue = json(await request(fake, 'GET', '/queue'));
  assert.equal(queue.queue_running[0][1], promptId);
  assert.equal(queue.queue_running[0][3].auth_token_comfy_org, 'secret');

  await waitFor(() => jsonFrames(frames).some((f) => f.type === 'executing' && f.data.node === null), 'completion');
  const types = jsonFrames(frames)
    .map((f) => f.type)
    .filter((type) => type !== 'feature_flags');
  assert.deepEqual(types.slice(0, 5), ['status', 'status', 'status', 'execution_start', 'execution_cached']);
  assert.deepEqual(types.slice(-3), ['execution_success', 'status', 'executing']);
  const perNode = [
    'progress_state',
    'executing',
    'progress',
    'progress_state',
    'progress',
    'progress_state',
    'progress',
    'progress_state',
    'executed',
    'progress_state',
  ];
  assert.deepEqual(types.slice(5, -3), [...perNode, ...perNode, ...perNode]);
  const executing = jsonFrames(frames)
    .filter((f) => f.type === 'executing')
    .map((f) => f.data.node);
  assert.deepEqual(executing, ['4', '3', '9', null]);

  const previews = frames.filter((f): f is Buffer => Buffer.isBuffer(f));
  assert.equal(previews.length, 1);
  assert.equal(previews[0]!.readUInt32BE(0), 4);
  const metaLength = previews[0]!.readUInt32BE(4);
  assert.deepEqual(JSON.parse(previews[0]!.subarray(8, 8 + metaLength).toString()).node_id, '3');
  assert.equal(other.frames.filter((f) => Buffer.isBuffer(f)).length, 0, 'previews of a client prompt are not broadcast');
  assert.deepEqual(
    jsonFrames(other.frames).map((f) => f.type),
    ['status', 'status', 'status', 'status'],
  );

  const history = json(await request(fake, 'GET', `/history/${promptId}`))[promptId];
  assert.equal(history.status.status_str, 'success');
  assert.deepEqual(
    history.status.messages.map((m: [string, unknown]) => m[0]),
    ['execution_start', 'execution_cached', 'execution_success'],
  );
  assert.deepEqual(history.prompt[3], { client_id: 'alice' }, 'history redacts auth tokens');
  assert.deepEqual(history.outputs['9'], { images: [{ filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }] });

  const image = await request(fake, 'GET', '/view?filename=ComfyUI_00001_.png&type=output&subfolder=');
  assert.equal(image.status, 200);
  assert.equal(image.headers['content-type'], 'image/png');
  assert.equal(image.headers['content-disposition'], 'filename="ComfyUI_00001_.png"');
  assert.deepEqual(image.body, await readFile(path.join(fake.outputDir, 'ComfyUI_00001_.png')));
  ws.close();
  other.ws.close();
});

test('prompt without client_id broadcasts progress and type-1 previews only; interrupt ends it with an error', async (t) => {
  const fake = await startFakeComfyUI({ previewFrames: true, stepDelayMs: 1 });
  t.after(() => fake.close());
  const { ws, frames } = await connect(fake);
  const first = json(await request(fake, 'POST', '/prompt', { body: JSON.stringify({ prompt: WORKFLOW }) }));
  await waitFor(() => fake.history.has(first.prompt_id), 'first prompt in history');
  const types = new Set(jsonFrames(frames).map((f) => f.type));
  assert.deepEqual([...types].sort(), ['progress', 'progress_state', 'status']);
  const previews = frames.filter((f): f is Buffer => Buffer.isBuffer(f));
  assert.equal(previews.length, 1);
  assert.equal(previews[0]!.readUInt32BE(0), 1);
  assert.equal(previews[0]!.readUInt32BE(4), 2);

  const slow = await startFakeComfyUI({ stepDelayMs: 20 });
  t.after(() => slow.close());
  const second = json(await request(slow, 'POST', '/prompt', { body: JSON.stringify({ prompt: WORKFLOW, client_id: 'x' }) }));
  await sleep(100);
  assert.equal((await request(slow, 'POST', '/interrupt', { body: 'not json' })).status, 200);
  await waitFor(() => slow.history.has(second.prompt_id), 'interrupted prompt in history');
  const entry = slow.history.get(second.prompt_id) as { status: { status_str: string; messages: Array<[string, unknown]> } };
  assert.equal(entry.status.status_str, 'error');
  assert.equal(entry.status.messages.at(-1)?.[0], 'execution_interrupted');
  ws.close();
});

test('POST /prompt errors, queue and history endpoints', async (t) => {
  const fake = await startFakeComfyUI({ stepDelayMs: 1, promptIdFormat: 'any' });
  t.after(() => fake.close());
  const post = (body: string): Promise<Reply> => request(fake, 'POST', '/prompt', { body });

  const bad = await post('{nope');
  assert.equal(bad.status, 500);
  assert.equal(bad.body.toString(), '500 Internal Server Error\n\nServer got itself in trouble');
  assert.equal(json(await post('{}')).error.type, 'no_prompt');
  assert.equal(json(await post(JSON.stringify({ prompt: { 1: { inputs: {} } } }))).error.details, "Node ID '#1'");
  assert.equal(json(await post(JSON.stringify({ prompt: { 1: { class_type: 'Nope' } } }))).error.type, 'invalid_prompt');
  assert.equal(json(await post(JSON.stringify({ prompt: {} }))).error.type, 'prompt_no_outputs');
  const noOutputs = await post(JSON.stringify({ prompt: { 1: { class_type: 'KSampler' } } }));
  assert.equal(noOutputs.status, 400);
  assert.deepEqual(json(noOutputs), {
    error: { type: 'prompt_no_outputs', message: 'Prompt has no outputs', details: '', extra_info: {} },
    node_errors: {},
  });

  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const reply = json(await post(JSON.stringify({ prompt: { 1: { class_type: 'PreviewImage' } }, prompt_id: `p${i}` })));
    ids.push(reply.prompt_id);
  }
  assert.deepEqual(ids, ['p0', 'p1', 'p2']);
  await waitFor(() => fake.history.size === 3, 'three prompts done');
  assert.deepEqual(json(await request(fake, 'GET', '/prompt')), { exec_info: { queue_remaining: 0 } });
  assert.deepEqual(Object.keys(json(await request(fake, 'GET', '/history?max_items=2'))), ['p1', 'p2']);
  assert.deepEqual(Object.keys(json(await request(fake, 'GET', '/api/history?offset=1&max_items=1'))), ['p1']);
  assert.equal((await request(fake, 'GET', '/history?max_items=x')).status, 500);
  assert.deepEqual(json(await request(fake, 'GET', '/history/unknown')), {});
  assert.deepEqual((fake.history.get('p2') as { outputs: Record<string, { images: unknown[] }> }).outputs['1']!.images[0], {
    filename: 'ComfyUI_00003_.png',
    subfolder: '',
    type: 'temp',
  });
  assert.ok((await stat(path.join(fake.tempDir, 'ComfyUI_00003_.png'))).size > 0);
  assert.equal((await request(fake, 'POST', '/history', { body: '{"delete":["p0"]}' })).status, 200);
  assert.deepEqual(Object.keys(json(await request(fake, 'GET', '/history'))), ['p1', 'p2']);
  assert.equal((await request(fake, 'POST', '/queue', { body: '{"clear":true}' })).status, 200);
  assert.deepEqual(json(await request(fake, 'GET', '/queue')), { queue_running: [], queue_pending: [] });
});

test("the jobs API's cancel routes: a pending job taken out of the queue, a running one interrupted, a finished or unknown one left; malformed lists refused", async (t) => {
  let letRun!: () => void;
  const runHeld = new Promise<void>((resolve) => (letRun = resolve));
  const fake = await startFakeComfyUI({ stepDelayMs: 1, beforeRun: () => runHeld });
  t.after(() => {
    letRun();
    return fake.close();
  });
  const { ws, frames } = await connect(fake);
  const queue = async (): Promise<string> => json(await request(fake, 'POST', '/prompt', { body: JSON.stringify({ prompt: WORKFLOW }) })).prompt_id;
  const [running, pending, kept] = [await queue(), await queue(), await queue()];
  const cancelList = (body: string): Promise<Reply> => request(fake, 'POST', '/api/jobs/cancel', { body });

  assert.deepEqual(json(await cancelList('{nope')), { error: 'Request body must be valid JSON' });
  assert.deepEqual(json(await cancelList('{"job_ids": "x"}')), { error: 'job_ids must be a list' });
  const malformed = await cancelList(JSON.stringify({ job_ids: [pending, pending.toUpperCase(), 7] }));
  assert.equal(malformed.status, 400);
  assert.deepEqual(json(malformed), { error: 'job_ids contains invalid id(s)', invalid_ids: [pending.toUpperCase(), '7'] });
  assert.equal(fake.inFlight().length, 3, 'a refused list cancels nothing');

  const remaining = (): number[] => jsonFrames(frames).flatMap((f) => (f.type === 'status' ? [f.data.status.exec_info.queue_remaining] : []));
  const seen = (await waitFor(() => remaining().includes(3) && remaining(), 'the broadcast of the third prompt queued')).length;
  assert.deepEqual(json(await request(fake, 'POST', `/api/jobs/${pending}/cancel`)), { cancelled: true });
  assert.deepEqual(
    fake.inFlight().map((item) => item.id),
    [running, kept],
  );
  assert.deepEqual(await waitFor(() => remaining().length > seen && remaining().slice(seen), "the queue's new length broadcast"), [2]);
  assert.deepEqual(json(await cancelList(JSON.stringify({ job_ids: [pending, '00000000-0000-4000-8000-000000000000'] }))), { cancelled: false });

  assert.deepEqual(json(await cancelList(JSON.stringify({ job_ids: [running] }))), { cancelled: true });
  letRun();
  await waitFor(() => fake.history.has(running) && fake.history.has(kept), 'both prompts done');
  const entry = fake.history.get(running) as { status: { messages: Array<[string, unknown]> } };
  assert.equal(entry.status.messages.at(-1)?.[0], 'execution_interrupted');
  assert.deepEqual(json(await request(fake, 'POST', `/api/jobs/${kept}/cancel`)), { cancelled: false });
  ws.close();
});

test('/view path checks, Range, conditional requests and HEAD', async (t) => {
  const fake = await startFakeComfyUI();
  t.after(() => fake.close());
  const content = randomBytes(1000);
  await writeFile(path.join(fake.outputDir, 'a.bin'), content);
  const view = (query: string, headers: http.OutgoingHttpHeaders = {}): Promise<Reply> => request(fake, 'GET', `/api/view?${query}`, { headers });

  assert.equal((await view('type=output')).status, 404);
  assert.equal((await view('filename=a.bin&type=models')).status, 400);
  assert.equal((await view('filename=../a.bin')).status, 400);
  assert.equal((await view('filename=%2Fa.bin')).status, 400);
  const escape = await view('filename=a.bin&subfolder=../input/../..');
  assert.equal(escape.status, 403);
  assert.equal(escape.body.length, 0);
  assert.equal((await view('filename=missing.png')).status, 404);
  assert.equal((await view('filename=a.bin&subfolder=sub/..')).status, 200);
  assert.equal((await view('filename=a.bin%20[output]&type=temp')).status, 200);

  const full = await view('filename=a.bin');
  assert.equal(full.headers['content-type'], 'application/octet-stream');
  assert.deepEqual(full.body, content);
  const etag = full.headers.etag;
  assert.ok(etag && full.headers['last-modified']);

  const part = await view('filename=a.bin', { Range: 'bytes=10-19' });
  assert.equal(part.status, 206);
  assert.equal(part.headers['content-range'], 'bytes 10-19/1000');
  assert.deepEqual(part.body, content.subarray(10, 20));
  assert.deepEqual((await view('filename=a.bin', { Range: 'bytes=-5' })).body, content.subarray(995));
  const unsatisfiable = await view('filename=a.bin', { Range: 'bytes=1000-' });
  assert.equal(unsatisfiable.status, 416);
  assert.equal(unsatisfiable.headers['content-range'], 'bytes */1000');
  assert.equal((await view('filename=a.bin', { 'If-None-Match': etag })).status, 304);

  const head = await request(fake, 'HEAD', '/view?filename=a.bin');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '1000');
  assert.equal(head.body.length, 0);
});

test('release differences: prompt_id format, jobs API, assets, active content', async (t) => {
  const newer = await startFakeComfyUI({ stepDelayMs: 1 });
  const older = await startFakeComfyUI({ stepDelayMs: 1, promptIdFormat: 'any', jobsApi: false, assets: false, activeContent: 'inline' });
  t.after(() => Promise.all([newer.close(), older.close()]));
  const post = (fake: FakeComfyUI, body: Record<string, unknown>): Promise<Reply> => request(fake, 'POST', '/prompt', { body: JSON.stringify(body) });
  const prompt = { 1: { class_type: 'PreviewImage' } };

  for (const id of ['mine', 'A1B2C3D4-0000-4000-8000-000000000000', '{a1b2c3d4-0000-4000-8000-000000000000}', 'a1b2c3d400004000800000000000000']) {
    const refused = await post(newer, { prompt, prompt_id: id });
    assert.equal(refused.status, 400, id);
    assert.equal(json(refused).error.type, 'invalid_prompt_id');
    assert.equal(json(await post(older, { prompt, prompt_id: id })).prompt_id, id);
  }
  const canonical = 'a1b2c3d4-0000-4000-8000-000000000000';
  assert.equal(json(await post(newer, { prompt, prompt_id: canonical })).prompt_id, canonical);
  assert.match(json(await post(newer, { prompt, prompt_id: null })).prompt_id, /^[0-9a-f-]{36}$/);
  await waitFor(() => newer.history.size === 2 && older.history.size === 4, 'prompts done');

  assert.equal((await request(newer, 'GET', `/api/jobs/${canonical}`)).status, 200);
  assert.equal((await request(older, 'GET', '/api/jobs')).status, 404);

  const legacy = await startFakeComfyUI({ frontend: 'legacy' });
  t.after(() => legacy.close());
  const files = (await request(legacy, 'GET', '/')).body.toString().match(/(?<=(?:src|href)="\.)[^"]+/g) ?? [];
  assert.deepEqual(files, ['/style.css', '/lib/litegraph.core.js', '/scripts/app.js']);
  for (const file of files) assert.equal((await request(legacy, 'GET', file)).status, 200, file);
  assert.equal((await request(legacy, 'GET', '/assets/index.js')).status, 404);
  assert.equal((await request(older, 'GET', '/api/jobs/mine')).status, 404);
  assert.equal((await request(older, 'POST', '/api/jobs/mine/cancel')).status, 405);

  const svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>';
  for (const fake of [newer, older]) {
    await writeFile(path.join(fake.outputDir, 'a.svg'), svg);
    await writeFile(path.join(fake.outputDir, 'a.html'), '<script>alert(1)</script>');
  }
  const page = await request(newer, 'GET', '/view?filename=a.svg', { headers: { 'Sec-Fetch-Dest': 'document' } });
  assert.equal(page.headers['content-type'], 'application/octet-stream');
  assert.equal(page.headers['content-disposition'], 'attachment; filename="a.svg"');
  assert.equal(page.headers['cache-control'], 'no-store');
  assert.equal(page.headers.vary, 'Sec-Fetch-Dest');
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  const image = await request(newer, 'GET', '/view?filename=a.svg', { headers: { 'Sec-Fetch-Dest': 'image' } });
  assert.equal(image.headers['content-type'], 'image/svg+xml');
  assert.equal(image.headers['content-disposition'], 'filename="a.svg"');
  const oldPage = await request(older, 'GET', '/view?filename=a.svg', { headers: { 'Sec-Fetch-Dest': 'document' } });
  assert.equal(oldPage.headers['content-type'], 'image/svg+xml');
  assert.equal(oldPage.headers['content-disposition'], 'filename="a.svg"');
  assert.equal(oldPage.headers['x-content-type-options'], undefined);
  assert.equal(oldPage.headers['cache-control'], undefined);
  assert.equal((await request(older, 'GET', '/view?filename=a.html')).headers['content-type'], 'application/octet-stream');

  await request(newer, 'POST', '/userdata/a.svg', { body: svg });
  await request(older, 'POST', '/userdata/a.svg', { body: svg });
  const saved = await request(newer, 'GET', '/userdata/a.svg');
  assert.deepEqual([saved.headers['content-type'], saved.headers['content-disposition']], ['application/octet-stream', 'attachment']);
  assert.equal((await request(older, 'GET', '/userdata/a.svg')).headers['content-type'], 'image/svg+xml');

  const boundary = 'b0undary';
  const form = `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="up.png"\r\n\r\nUPLOADED\r\n--${boundary}--\r\n`;
  const upload = (fake: FakeComfyUI): Promise<Reply> =>
    request(fake, 'POST', '/upload/image', { headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` }, body: form });
  const hash = `blake3:${createHash('sha256').update('UPLOADED').digest('hex')}`;
  const stored = json(await upload(newer));
  assert.equal(stored.asset.asset_hash, hash);
  const byHash = await request(newer, 'GET', `/view?filename=${hash}`);
  assert.equal(byHash.body.toString(), 'UPLOADED', 'found by its content, in input though /view reads output by default');
  assert.deepEqual(json(await upload(older)), { name: 'up.png', subfolder: '', type: 'input' });
  assert.equal((await request(older, 'GET', `/view?filename=${hash}`)).status, 404);
});

/** A multipart body generated in small pieces; the `image` part is `size` pseudo-random bytes full of near-boundaries. */
async function* multipartBody(
  boundary: string,
  size: number,
  fieldsAfter: Record<string, string>,
  hash: ReturnType<typeof createHash>,
): AsyncGenerator<Buffer> {
  yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\nfalse\r\n`);
  yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n`);
  const trap = Buffer.from(`\r\n--${boundary.slice(0, -1)}!`); // one byte short of a delimiter
  for (let sent = 0; sent < size;) {
    const piece = Buffer.concat([randomBytes(7919), trap]).subarray(0, Math.min(7919 + trap.length, size - sent));
    hash.update(piece);
    sent += piece.length;
    yield piece;
  }
  for (const [name, value] of Object.entries(fieldsAfter)) {
    yield Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}`);
  }
  yield Buffer.from(`\r\n--${boundary}--\r\n`);
}

test('uploads stream multipart into inputDir, with text fields after the file and name clashes', async (t) => {
  const fake = await startFakeComfyUI();
  t.after(() => fake.close());
  const boundary = '----fakeBoundary7MA4YWxkTrZu0gW';
  const headers = { 'Content-Type': `multipart/form-data; boundary=${boundary}` };
  const size = 8 * 1024 * 1024 + 13;
  const hash = createHash('sha256');
  let spoolSeen = 0;
  async function* slowBody(): AsyncGenerator<Buffer> {
    let i = 0;
    for await (const piece of multipartBody(boundary, size, { subfolder: 'sub', type: 'input' }, hash)) {
      yield piece;
      if (++i === 500) {
        // mid-file: the server must already be writing the part to disk
        await sleep(50);
        const spool = (await readdir(path.dirname(fake.inputDir))).find((f) => f.endsWith('.part'));
        spoolSeen = spool ? (await stat(path.join(path.dirname(fake.inputDir), spool))).size : 0;
      }
    }
  }
  const reply = await request(fake, 'POST', '/upload/image', { headers, body: slowBody() });
  assert.equal(reply.status, 200, reply.body.toString());
  const { asset, ...answer } = json(reply);
  assert.deepEqual(answer, { name: 'big.png', subfolder: 'sub', type: 'input' });
  assert.equal(asset.size, size);
  assert.ok(spoolSeen > 1024 * 1024, `part was streamed to disk before the request ended (${spoolSeen} bytes)`);
  assert.equal(fake.lastUploadBytes, size);
  const stored = await readFile(path.join(fake.inputDir, 'sub', 'big.png'));
  assert.equal(createHash('sha256').update(stored).digest('hex'), hash.digest('hex'));

  const small = (content: string, extra = ''): Promise<Reply> =>
    request(fake, 'POST', '/api/upload/image', {
      headers,
      body: `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n${content}\r\n${extra}--${boundary}--\r\n`,
    });
  assert.equal(json(await small('one')).name, 'x.png');
  assert.equal(json(await small('one')).name, 'x.png', 'same content reuses the name');
  assert.equal(json(await small('two')).name, 'x (1).png');
  assert.equal(fake.lastUploadBytes, 3);
  const temp = json(await small('three', `--${boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ntemp\r\n`));
  assert.deepEqual([temp.name, temp.subfolder, temp.type], ['x.png', '', 'temp']);
  assert.equal(await readFile(path.join(fake.tempDir, 'x.png'), 'utf8'), 'three');

  const missing = await request(fake, 'POST', '/upload/image', {
    headers,
    body: `--${boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n--${boundary}--\r\n`,
  });
  assert.equal(missing.status, 400);
  const escape = await request(fake, 'POST', '/upload/image', {
    headers,
    body:
      `--${boundary}\r\nContent-Disposition: form-data; name="subfolder"\r\n\r\n../..\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="e.png"\r\n\r\nx\r\n--${boundary}--\r\n`,
  });
  assert.equal(escape.status, 400);
  assert.deepEqual(
    (await readdir(path.dirname(fake.inputDir))).filter((f) => f.endsWith('.part')),
    [],
    'spool files removed',
  );
});

test('origin check, routing quirks and static files', async (t) => {
  const fake = await startFakeComfyUI();
  t.after(() => fake.close());
  const host = `127.0.0.1:${fake.port}`;
  const forbidden = await request(fake, 'POST', '/prompt', { headers: { Host: host, Origin: 'https://gw.example' }, body: '{}' });
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.body.length, 0);
  assert.equal((await request(fake, 'GET', '/', { headers: { Host: host, Origin: `http://${host}` } })).status, 200);
  assert.equal((await request(fake, 'GET', '/', { headers: { Host: 'localhost', Origin: 'http://localhost:3000' } })).status, 200);
  assert.equal((await request(fake, 'GET', '/', { headers: { Host: 'gw.example', Origin: 'https://evil.example' } })).status, 200);
  assert.equal((await request(fake, 'GET', '/', { headers: { 'Sec-Fetch-Site': 'cross-site' } })).status, 403);

  const ws = new WebSocket(`ws://${host}/ws`, { headers: { Origin: 'https://gw.example' } });
  const rejected = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
  assert.equal(rejected, 403);
  assert.equal(fake.requests.at(-1)?.url, '/ws');

  const root = await request(fake, 'GET', '/api/');
  assert.equal(root.headers['cache-control'], 'no-cache');
  assert.match(root.body.toString(), /<title>ComfyUI<\/title>/);
  assert.match(root.body.toString(), /src="\.\/assets\/index\.js"/);
  assert.equal((await request(fake, 'GET', '/assets/index.js')).headers['content-type'], 'application/javascript; charset=utf-8');
  assert.equal((await request(fake, 'GET', '/api/assets/index.js')).status, 404);
  assert.equal((await request(fake, 'GET', '/scripts/app.js')).status, 404);
  assert.equal((await request(fake, 'GET', '/api')).status, 404);
  assert.deepEqual(json(await request(fake, 'GET', '/%70rompt')), { exec_info: { queue_remaining: 0 } });
  assert.equal((await request(fake, 'GET', '//prompt')).status, 404);
  const notAllowed = await request(fake, 'POST', '/nope');
  assert.equal(notAllowed.status, 405);
  assert.equal(notAllowed.body.toString(), '405: Method Not Allowed');
  assert.equal((await request(fake, 'DELETE', '/prompt')).status, 405);
  assert.equal((await request(fake, 'HEAD', '/system_stats')).status, 200);
  assert.deepEqual(json(await request(fake, 'GET', '/system_stats')).system.argv, ['main.py', '--port', '8189']);
  assert.deepEqual(Object.keys(json(await request(fake, 'GET', '/api/object_info/KSampler'))), ['KSampler']);
  assert.deepEqual(json(await request(fake, 'GET', '/object_info/Nope')), {});
  assert.equal((await request(fake, 'GET', '/api/internal/logs')).status, 404);
  assert.equal(typeof json(await request(fake, 'GET', '/internal/logs')), 'string');
  assert.deepEqual(json(await request(fake, 'GET', '/internal/files/models')), { error: 'Invalid directory type' });
});

test('WebSocket echo hook, feature flags only on the first message, reused clientId', async (t) => {
  const fake = await startFakeComfyUI();
  t.after(() => fake.close());
  const { ws, frames } = await connect(fake, '/ws?clientId=c1');
  ws.send(JSON.stringify({ type: 'echo', data: { hello: [1, 2] } }));
  ws.send(Buffer.from([0, 0, 0, 3, 9, 9]));
  ws.send(JSON.stringify({ type: 'feature_flags', data: {} }));
  ws.send(JSON.stringify({ type: 'feature_flags', data: {} }));
  await waitFor(() => frames.length >= 4, 'echoes and flags');
  await sleep(20);
  assert.deepEqual(frames.slice(1), [
    { type: 'echo', data: { hello: [1, 2] } },
    Buffer.from([0, 0, 0, 3, 9, 9]),
    { type: 'feature_flags', data: { supports_preview_metadata: true, max_upload_size: 104857600, assets: true } },
  ]);

  const replacement = await connect(fake, '/ws?clientId=c1');
  await request(fake, 'POST', '/prompt', { body: JSON.stringify({ prompt: { 1: { class_type: 'SaveImage' } }, client_id: 'c1' }) });
  await waitFor(() => fake.history.size === 1, 'prompt done');
  await sleep(10);
  assert.ok(jsonFrames(replacement.frames).some((f) => f.type === 'execution_success'));
  assert.ok(!jsonFrames(frames).some((f) => f.type === 'execution_success'), 'old socket no longer registered');
  ws.close();
  replacement.ws.close();
});

test("a clientId is dropped when any of its connections ends, as ComfyUI's handler does; cutSocket's end is noticed late", async (t) => {
  const fake = await startFakeComfyUI();
  t.after(() => fake.close());
  const first = await connect(fake, '/ws?clientId=c2');
  const replacement = await connect(fake, '/ws?clientId=c2');
  const firstClosed = new Promise((resolve) => first.ws.once('close', resolve));
  first.ws.close();
  await firstClosed;
  await waitFor(() => !fake.openSockets().includes('c2'), "the first connection's end to drop c2");
  assert.equal(replacement.ws.readyState, WebSocket.OPEN, 'the replacement stays open');
  await request(fake, 'POST', '/prompt', { body: JSON.stringify({ prompt: { 1: { class_type: 'SaveImage' } }, client_id: 'c2' }) });
  await waitFor(() => fake.history.size === 1, 'prompt done');
  await sleep(10);
  assert.ok(!jsonFrames(replacement.frames).some((f) => f.type === 'execution_start'), 'the replacement is sent no event of its clientId');
  replacement.ws.close();

  const cut = await connect(fake, '/ws?clientId=c3');
  fake.cutSocket('c3', 300);
  await new Promise((resolve) => cut.ws.once('close', resolve));
  assert.deepEqual(fake.openSockets(), ['c3'], 'the fake has not noticed the cut yet');
  const again = await connect(fake, '/ws?clientId=c3');
  assert.deepEqual(fake.openSockets(), ['c3']);
  await waitFor(() => fake.openSockets().length === 0, 'the cut connection to be noticed', 2000);
  assert.equal(again.ws.readyState, WebSocket.OPEN, 'the new connection is open, but no longer holds c3');
  again.ws.close();
});

test('users, settings and userdata (with %2F) per Comfy-User in multi-user mode', async (t) => {
  const fake = await startFakeComfyUI({ multiUser: true });
  t.after(() => fake.close());
  const user = json(await request(fake, 'POST', '/users', { body: JSON.stringify({ username: 'Ann B' }) }));
  assert.match(user, /^Ann-B_[0-9a-f-]{36}$/);
  assert.deepEqual(json(await request(fake, 'POST', '/users', { body: '{"username":"Ann B"}' })), { error: 'Duplicate username.' });
  assert.deepEqual(json(await request(fake, 'GET', '/api/users')), { storage: 'server', users: { [user]: 'Ann B' } });

  const as = { 'Comfy-User': user };
  assert.equal((await request(fake, 'GET', '/settings')).status, 401, 'default user does not exist in multi-user mode');
  assert.equal((await request(fake, 'POST', '/api/settings/Comfy.Theme', { headers: as, body: '"dark"' })).status, 200);
  assert.deepEqual(json(await request(fake, 'GET', '/settings', { headers: as })), { 'Comfy.Theme': 'dark' });
  assert.equal(json(await request(fake, 'GET', '/settings/Comfy.Theme', { headers: as })), 'dark');

  const saved = await request(fake, 'POST', '/api/userdata/workflows%2Fa.json', { headers: as, body: '{"nodes":[]}' });
  assert.equal(json(saved), 'workflows/a.json');
  assert.equal(fake.requests.at(-1)?.url, '/api/userdata/workflows%2Fa.json');
  assert.equal(await readFile(path.join(fake.userDir, user, 'workflows', 'a.json'), 'utf8'), '{"nodes":[]}');
  assert.equal((await request(fake, 'POST', '/userdata/workflows%2Fa.json?overwrite=false', { headers: as, body: 'x' })).status, 409);
  assert.deepEqual(json(await request(fake, 'GET', '/userdata?dir=workflows', { headers: as })), ['a.json']);
  const listed = json(await request(fake, 'GET', '/api/v2/userdata', { headers: as }));
  assert.deepEqual(
    listed.map((item: { path: string; type: string }) => [item.path, item.type]),
    [
      ['workflows', 'directory'],
      ['workflows/a.json', 'file'],
      ['comfy.settings.json', 'file'],
    ],
    'folders first, then files by name',
  );
  assert.equal(listed[1].size, 12);
  assert.equal((await request(fake, 'GET', '/v2/userdata?path=..%2Fx', { headers: as })).status, 400);
  assert.equal((await request(fake, 'GET', '/v2/userdata?path=nope', { headers: as })).status, 404);
  assert.equal((await request(fake, 'GET', '/v2/userdata', { headers: { 'Comfy-User': 'mallory' } })).status, 403);
  assert.equal((await request(fake, 'GET', '/userdata/workflows%2Fa.json', { headers: as })).body.toString(), '{"nodes":[]}');
  assert.equal((await request(fake, 'GET', '/userdata/workflows/a.json', { headers: as })).status, 404, 'a real / is two segments');
  assert.equal((await request(fake, 'GET', '/userdata/..%2F..%2Fx', { headers: as })).status, 403);
  assert.equal((await request(fake, 'DELETE', '/userdata/workflows%2Fa.json', { headers: as })).status, 204);
  assert.equal((await request(fake, 'GET', '/userdata/workflows%2Fa.json', { headers: as })).status, 404);
  assert.equal((await request(fake, 'GET', '/userdata/x.json', { headers: { 'Comfy-User': 'mallory' } })).status, 500);
});
