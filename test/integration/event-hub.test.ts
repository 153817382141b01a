// The event hub against the fake ComfyUI: each job's events reach only its key's and client's sinks, with the job's id, and the observer sees starts, outputs and ends.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { EventHub, type ClientSink, type EventHubOptions, type JobOutcome } from '../../src/events/event-hub.js';
import { binaryFrameType, readPreviewWithMetadata } from '../../src/events/preview-frames.js';
import type { JobError } from '../../src/store/types.js';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { PROMPT_ID_MODES, startFakeComfyUI, type FakeComfyUI, type FakeComfyUIOptions, type PromptIdMode } from '../helpers/fake-comfyui.js';
import { waitFor } from '../helpers/wait-for.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
/** KSampler → VAEDecode (made to fail) → SaveImage. */
const DECODE_WORKFLOW = {
  '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
  '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0] } },
  '9': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'ComfyUI' } },
};

interface Job {
  id: string;
  key_id: string;
  client_id: string | null;
}

type Observed =
  | { kind: 'started'; jobId: string; at: number }
  | { kind: 'executed'; jobId: string; node: string; output: unknown }
  | { kind: 'ended'; jobId: string; outcome: JobOutcome; at: number; error: JobError | null };

interface Message {
  type: string;
  data: Record<string, unknown>;
}

/** A sink that keeps what it is sent. */
class RecordingSink implements ClientSink {
  readonly texts: Message[] = [];
  readonly binaries: Buffer[] = [];
  constructor(private readonly metadata = false) {}
  send(data: Buffer | string, isBinary: boolean): void {
    if (isBinary) this.binaries.push(data as Buffer);
    else this.texts.push(JSON.parse(data.toString()) as Message);
  }
  wantsPreviewMetadata(): boolean {
    return this.metadata;
  }
  finished(jobId: string): boolean {
    return this.texts.some((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === jobId);
  }
  types(): string[] {
    return this.texts.map((m) => m.type);
  }
}

interface Stage {
  fake: FakeComfyUI;
  hub: EventHub;
  /** The registry, by ComfyUI's prompt_id. */
  jobs: Map<string, Job>;
  observed: Observed[];
  statuses: Array<Record<string, unknown>>;
  logs: Array<{ level: number; msg: string }>;
  connections: number;
}

const stages: Stage[] = [];

afterEach(async () => {
  for (const stage of stages.splice(0)) {
    stage.hub.close();
    await stage.fake.close();
  }
});

async function startStage(fakeOptions: FakeComfyUIOptions, hubOptions: Partial<EventHubOptions> = {}): Promise<Stage> {
  const fake = await startFakeComfyUI({ stepDelayMs: 2, ...fakeOptions });
  const logs: Stage['logs'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
      done();
    },
  });
  const jobs = new Map<string, Job>();
  const observed: Observed[] = [];
  const stage: Stage = { fake, jobs, observed, statuses: [], logs, connections: 0, hub: undefined as unknown as EventHub };
  stage.hub = new EventHub({
    backend: 'default',
    upstream: new URL(fake.url),
    jobs: { byUpstreamId: (backend, id) => (backend === 'default' ? jobs.get(id) : undefined) },
    observer: {
      started: (jobId, at) => observed.push({ kind: 'started', jobId, at }),
      cached: () => undefined,
      executed: (jobId, node, output) => observed.push({ kind: 'executed', jobId, node, output }),
      ended: (jobId, outcome, at, error) => observed.push({ kind: 'ended', jobId, outcome, at, error }),
    },
    isShownEarlierFile: () => true,
    log: pino({ level: 'warn' }, sink),
    socket: { reconnectMinMs: 20, reconnectMaxMs: 200 },
    onConnected: () => (stage.connections += 1),
    ...hubOptions,
  });
  stage.hub.start();
  stage.hub.onStatus((data) => stage.statuses.push(data));
  stages.push(stage);
  await waitFor(() => stage.hub.connected && stage.hub.status(), 'the hub to connect');
  return stage;
}

async function postPrompt(fake: FakeComfyUI, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${fake.url}/prompt`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { prompt_id: string }).prompt_id;
}

/**
 * Forwards a prompt as the gateway will: the gateway proposes the job's id as prompt_id (a release that
 * ignores it answers with its own, and the job keeps the id its key was told), the prompt carries the
 * hub's clientId, the job is in the registry once ComfyUI has answered, and the hub is told ComfyUI accepted it.
 */
async function submit(
  stage: Stage,
  keyId: string,
  clientId: string | null,
  prompt: Record<string, unknown> = SAVE_WORKFLOW,
): Promise<Job & { upstreamId: string }> {
  const job: Job = { id: randomUUID(), key_id: keyId, client_id: clientId };
  const done = stage.hub.expectAnswer();
  try {
    const receivedBefore = stage.hub.messagesReceived;
    const upstreamId = await postPrompt(stage.fake, { prompt, client_id: stage.hub.clientId, prompt_id: job.id });
    stage.jobs.set(upstreamId, job);
    stage.hub.answered(upstreamId);
    stage.hub.promptAccepted(receivedBefore);
    return { ...job, upstreamId };
  } finally {
    done();
  }
}

async function historyEntry(
  fake: FakeComfyUI,
  upstreamId: string,
): Promise<{ status: { messages: Array<[string, { timestamp: number }]> }; outputs: Record<string, unknown> }> {
  for (;;) {
    const res = await fetch(`${fake.url}/history/${upstreamId}`);
    const body = (await res.json()) as Record<string, never>;
    if (body[upstreamId]) return body[upstreamId];
    await sleep(10);
  }
}

/**
 * Resolves once the hub has read everything the fake sent before this call, the queue being empty: it
 * queues a prompt of nobody's and waits for the status broadcast that says so, sent after them.
 */
async function settle(stage: Stage): Promise<void> {
  const before = stage.statuses.length;
  await postPrompt(stage.fake, { prompt: SAVE_WORKFLOW });
  const queued = (data: Record<string, unknown>): boolean => ((data.status as { exec_info: { queue_remaining: number } }).exec_info.queue_remaining ?? 0) > 0;
  await waitFor(() => stage.statuses.slice(before).some(queued), 'a status broadcast');
}

const ofJob = (observed: Observed[], jobId: string): Observed[] => observed.filter((o) => o.jobId === jobId);

/** The types of the events a job gets when nothing is held (`sink` registered for alice's `clientId` receives them). */
async function referenceEventTypes(stage: Stage, sink: RecordingSink, clientId: string): Promise<string[]> {
  stage.hub.register('alice', clientId, sink);
  const reference = await submit(stage, 'alice', clientId);
  await waitFor(() => sink.finished(reference.id), 'the reference job to finish');
  return sink.types();
}
const timestampOf = (messages: Array<[string, { timestamp: number }]>, type: string): number => messages.find(([t]) => t === type)![1].timestamp / 1000;

for (const mode of PROMPT_ID_MODES) {
  describe(`event hub, ComfyUI that ${mode === 'honoured' ? 'honours' : 'ignores'} client prompt ids`, () => {
    const renamed = mode === 'ignored';

    test('each job reaches only the sinks of its key and client, with its id; status stays out of sinks', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode });
      const aliceOne = new RecordingSink();
      const aliceTwo = new RecordingSink();
      const bobOne = new RecordingSink();
      const unregister = stage.hub.register('alice', 'one', aliceOne);
      stage.hub.register('alice', 'two', aliceTwo);
      stage.hub.register('bob', 'one', bobOne);
      const gone = new RecordingSink();
      stage.hub.register('alice', 'one', gone)();

      const alice = await submit(stage, 'alice', 'one');
      const bob = await submit(stage, 'bob', 'one');
      const nobody = await submit(stage, 'alice', null);
      await waitFor(() => aliceOne.finished(alice.id) && bobOne.finished(bob.id), 'both jobs to finish');
      await waitFor(() => ofJob(stage.observed, nobody.id).some((o) => o.kind === 'ended'), 'the third job to end');

      assert.equal(alice.upstreamId === alice.id, !renamed, 'the fake treats prompt ids as configured');
      for (const [sink, job] of [
        [aliceOne, alice],
        [bobOne, bob],
      ] as const) {
        const types = sink.types();
        assert.equal(types[0], 'execution_start');
        assert.deepEqual(types.slice(-2), ['execution_success', 'executing']);
        for (const type of ['execution_cached', 'executing', 'progress', 'progress_state', 'executed']) assert.ok(types.includes(type), `${type} delivered`);
        assert.ok(!types.includes('status'), 'status broadcasts are not sent to sinks');
        for (const message of sink.texts) {
          assert.equal(message.data.prompt_id, job.id, `${message.type} names the job`);
          for (const node of Object.values((message.data.nodes ?? {}) as Record<string, { prompt_id: string }>)) assert.equal(node.prompt_id, job.id);
        }
      }
      assert.deepEqual(aliceOne.types(), bobOne.types(), 'both got the whole sequence');
      assert.equal(aliceTwo.texts.length, 0, "the key's other client got nothing");
      assert.equal(gone.texts.length, 0, 'an unregistered sink got nothing');

      unregister();
      const later = await submit(stage, 'alice', 'one');
      await waitFor(() => ofJob(stage.observed, later.id).some((o) => o.kind === 'ended'), 'the later job to end');
      assert.ok(!aliceOne.texts.some((m) => m.data.prompt_id === later.id), 'nothing after unregistering');

      assert.ok((stage.hub.status()?.status as { exec_info?: unknown } | undefined)?.exec_info, 'the latest status is kept');
      assert.ok(stage.statuses.length >= 2, 'status subscribers are called');
    });

    test('the observer gets ComfyUI times, outputs and the success', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode });
      const job = await submit(stage, 'alice', 'one');
      await waitFor(() => ofJob(stage.observed, job.id).some((o) => o.kind === 'ended'), 'the job to end');
      const entry = await historyEntry(stage.fake, job.upstreamId);
      assert.deepEqual(ofJob(stage.observed, job.id), [
        { kind: 'started', jobId: job.id, at: timestampOf(entry.status.messages, 'execution_start') },
        { kind: 'executed', jobId: job.id, node: '3', output: null },
        { kind: 'executed', jobId: job.id, node: '9', output: entry.outputs['9'] },
        { kind: 'ended', jobId: job.id, outcome: 'success', at: timestampOf(entry.status.messages, 'execution_success'), error: null },
      ]);
    });

    test('a node that fails ends the job with the error', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode, failingClassTypes: ['VAEDecode'] });
      const sink = new RecordingSink();
      stage.hub.register('alice', 'one', sink);
      const job = await submit(stage, 'alice', 'one', DECODE_WORKFLOW);
      await waitFor(() => sink.finished(job.id), 'the job to finish');
      const entry = await historyEntry(stage.fake, job.upstreamId);
      const ended = ofJob(stage.observed, job.id).filter((o) => o.kind === 'ended');
      assert.deepEqual(ended, [
        {
          kind: 'ended',
          jobId: job.id,
          outcome: 'error',
          at: timestampOf(entry.status.messages, 'execution_error'),
          error: { message: 'VAEDecode failed', node_id: '8', node_type: 'VAEDecode', exception_type: 'RuntimeError' },
        },
      ]);
      assert.equal(sink.texts.find((m) => m.type === 'execution_error')?.data.prompt_id, job.id);
      assert.ok(!sink.types().includes('execution_success'));
    });

    test('an interrupted job ends interrupted', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode, stepDelayMs: 20 });
      const sink = new RecordingSink();
      stage.hub.register('alice', 'one', sink);
      const job = await submit(stage, 'alice', 'one');
      await waitFor(() => ofJob(stage.observed, job.id).some((o) => o.kind === 'started'), 'the job to start');
      await fetch(`${stage.fake.url}/interrupt`, { method: 'POST', body: '{}' });
      await waitFor(() => sink.finished(job.id), 'the job to finish');
      const ended = ofJob(stage.observed, job.id).filter((o) => o.kind === 'ended');
      assert.equal(ended.length, 1);
      assert.equal(ended[0]!.kind === 'ended' && ended[0]!.outcome, 'interrupted');
      assert.equal(sink.texts.find((m) => m.type === 'execution_interrupted')?.data.prompt_id, job.id);
    });

    test('events that come before the job is known are held while an answer is awaited, and delivered in order once answered', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode });
      const sink = new RecordingSink();
      const referenceTypes = await referenceEventTypes(stage, sink, 'one');
      sink.texts.length = 0;

      const done = stage.hub.expectAnswer();
      const jobId = randomUUID();
      const upstreamId = await postPrompt(stage.fake, { prompt: SAVE_WORKFLOW, client_id: stage.hub.clientId, prompt_id: jobId });
      const entry = await historyEntry(stage.fake, upstreamId);
      await settle(stage);
      assert.equal(sink.texts.length, 0, 'nothing is delivered before the job is known');
      assert.equal(ofJob(stage.observed, jobId).length, 0);

      stage.jobs.set(upstreamId, { id: jobId, key_id: 'alice', client_id: 'one' });
      stage.hub.answered(upstreamId);
      done();
      assert.deepEqual(sink.types(), referenceTypes, 'every held event, in order');
      assert.ok(sink.texts.every((m) => m.data.prompt_id === jobId));
      const observed = ofJob(stage.observed, jobId);
      assert.deepEqual(observed[0], { kind: 'started', jobId, at: timestampOf(entry.status.messages, 'execution_start') }, 'the time is when it happened');
      const last = observed.at(-1);
      assert.equal(last?.kind === 'ended' ? last.outcome : last?.kind, 'success');
    });

    test('the held events of several prompts go each to its own job, whichever is answered first', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode });
      const referenceTypes = await referenceEventTypes(stage, new RecordingSink(), 'reference');

      // Enough prompts that the delivered events outnumber the held ones several times over as they are answered.
      const answerAwaited = stage.hub.expectAnswer();
      const prompts: Array<{ jobId: string; upstreamId: string; sink: RecordingSink }> = [];
      for (let i = 0; i < 12; i += 1) {
        const sink = new RecordingSink();
        stage.hub.register('alice', `client-${i}`, sink);
        const jobId = randomUUID();
        const upstreamId = await postPrompt(stage.fake, { prompt: SAVE_WORKFLOW, client_id: stage.hub.clientId, prompt_id: jobId });
        await historyEntry(stage.fake, upstreamId);
        prompts.push({ jobId, upstreamId, sink });
      }
      await settle(stage);
      const answerOrder = prompts.map((_, i) => (i * 5) % prompts.length);
      for (const [step, i] of answerOrder.entries()) {
        const { jobId, upstreamId, sink } = prompts[i]!;
        assert.equal(sink.texts.length, 0, `prompt ${i} has nothing before its answer`);
        stage.jobs.set(upstreamId, { id: jobId, key_id: 'alice', client_id: `client-${i}` });
        stage.hub.answered(upstreamId);
        assert.deepEqual(sink.types(), referenceTypes, `prompt ${i} (answered ${step + 1}.) gets its events, in order`);
        assert.ok(
          sink.texts.every((m) => m.data.prompt_id === undefined || m.data.prompt_id === jobId),
          `prompt ${i} gets no other prompt's events`,
        );
      }
      answerAwaited();
      assert.ok(ofJob(stage.observed, prompts[0]!.jobId).some((o) => o.kind === 'ended'));
    });

    test('events of a prompt nobody awaits are dropped', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode });
      const sink = new RecordingSink();
      stage.hub.register('alice', 'one', sink);
      const upstreamId = await postPrompt(stage.fake, { prompt: SAVE_WORKFLOW, client_id: stage.hub.clientId });
      await historyEntry(stage.fake, upstreamId);
      await settle(stage);
      stage.jobs.set(upstreamId, { id: upstreamId, key_id: 'alice', client_id: 'one' });
      stage.hub.answered(upstreamId);
      assert.equal(sink.texts.length, 0);
      assert.equal(ofJob(stage.observed, upstreamId).length, 0);
    });

    test('held events are dropped when their time is up, and at most the bound is held', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode }, { hold: { maxMs: 100 } });
      const sink = new RecordingSink();
      stage.hub.register('alice', 'one', sink);
      const done = stage.hub.expectAnswer();
      const upstreamId = await postPrompt(stage.fake, { prompt: SAVE_WORKFLOW, client_id: stage.hub.clientId });
      await historyEntry(stage.fake, upstreamId);
      await settle(stage);
      await sleep(300);
      stage.jobs.set(upstreamId, { id: upstreamId, key_id: 'alice', client_id: 'one' });
      stage.hub.answered(upstreamId);
      done();
      assert.equal(sink.texts.length, 0, 'expired events are not delivered');

      const bounded = await startStage({ promptIds: mode as PromptIdMode }, { hold: { maxMessages: 5 } });
      const boundedSink = new RecordingSink();
      bounded.hub.register('alice', 'one', boundedSink);
      const boundedDone = bounded.hub.expectAnswer();
      const boundedId = await postPrompt(bounded.fake, { prompt: SAVE_WORKFLOW, client_id: bounded.hub.clientId });
      await historyEntry(bounded.fake, boundedId);
      await settle(bounded);
      bounded.jobs.set(boundedId, { id: boundedId, key_id: 'alice', client_id: 'one' });
      bounded.hub.answered(boundedId);
      boundedDone();
      assert.deepEqual(boundedSink.types(), ['execution_start', 'execution_cached', 'progress_state', 'executing', 'progress'], 'the first 5');
    });

    test('previews with metadata name the job, and reach a client that asked for none as plain previews', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode, previewFrames: true });
      const withMetadata = new RecordingSink(true);
      const plain = new RecordingSink(false);
      const other = new RecordingSink(true);
      stage.hub.register('alice', 'one', withMetadata);
      stage.hub.register('alice', 'one', plain);
      stage.hub.register('bob', 'one', other);
      const job = await submit(stage, 'alice', 'one');
      await waitFor(() => withMetadata.finished(job.id) && plain.finished(job.id), 'the job to finish');
      assert.deepEqual(stage.hub.featureFlags(), { supports_preview_metadata: true, max_upload_size: 104857600, assets: true });

      assert.equal(withMetadata.binaries.length, 1);
      const preview = readPreviewWithMetadata(withMetadata.binaries[0]!);
      assert.ok(preview, 'a type 4 frame');
      assert.equal(preview.metadata.prompt_id, job.id);
      assert.equal(preview.metadata.node_id, '3');
      assert.ok(preview.image.subarray(0, 4).equals(PNG_SIGNATURE));

      assert.equal(plain.binaries.length, 1);
      const frame = plain.binaries[0]!;
      assert.equal(binaryFrameType(frame), 1);
      assert.equal(frame.readUInt32BE(4), 2, 'PNG');
      assert.ok(frame.subarray(8).equals(preview.image));
      assert.equal(other.binaries.length, 0);
    });

    test('a release without preview metadata: plain previews and progress text go to the running job', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode, previewFrames: true, progressText: true, featureFlags: false });
      const alice = new RecordingSink(true);
      const bob = new RecordingSink(true);
      stage.hub.register('alice', 'one', alice);
      stage.hub.register('bob', 'one', bob);
      const aliceJob = await submit(stage, 'alice', 'one');
      const bobJob = await submit(stage, 'bob', 'one');
      await waitFor(() => alice.finished(aliceJob.id) && bob.finished(bobJob.id), 'both jobs to finish');
      assert.equal(stage.hub.featureFlags(), null, 'this release never answers feature_flags');
      for (const sink of [alice, bob]) assert.deepEqual(sink.binaries.map(binaryFrameType), [1, 3], 'each job got its own preview and text');
    });

    test('the hub reconnects when ComfyUI restarts, and gets the events of prompts sent after', async () => {
      const stage = await startStage({ promptIds: mode as PromptIdMode });
      const sink = new RecordingSink();
      stage.hub.register('alice', 'one', sink);
      const port = stage.fake.port;
      await stage.fake.close();
      await waitFor(() => !stage.hub.connected, 'the hub to notice');
      await sleep(100);
      stage.fake = await startFakeComfyUI({ stepDelayMs: 2, promptIds: mode as PromptIdMode, port });
      await waitFor(() => stage.hub.connected && stage.connections === 2, 'the hub to reconnect', 10_000);
      assert.ok(
        stage.logs.some((line) => line.level === 40 && /reconnecting|retrying/.test(line.msg)),
        'the drop is logged at warn',
      );
      const job = await submit(stage, 'alice', 'one');
      await waitFor(() => sink.finished(job.id), 'the job to finish');
      assert.equal(sink.texts[0]?.type, 'execution_start');
    });
  });
}

describe("event hub, a socket ComfyUI stopped sending to (its clientId taken back by an earlier connection's handler)", () => {
  const silenceLimitMs = 400;

  /** A stage whose socket is open but no longer held by ComfyUI: its connection was cut, and ComfyUI noticed only after the hub reconnected. */
  async function silentStage(): Promise<Stage> {
    // About 1.4 s a prompt, so a prompt accepted while the socket is silent still runs once it is reopened.
    const stage = await startStage({ stepDelayMs: 60 }, { socket: { reconnectMinMs: 20, reconnectMaxMs: 200, silenceLimitMs } });
    stage.fake.cutSocket(stage.hub.clientId, 300);
    await waitFor(() => stage.connections === 2, 'the hub to reconnect');
    await waitFor(() => !stage.fake.openSockets().includes(stage.hub.clientId), "the old connection's handler to remove the clientId");
    assert.equal(stage.hub.connected, true, 'the socket is open: only its place in ComfyUI is gone');
    return stage;
  }

  test('the socket is reopened with the same clientId once a prompt is accepted and nothing comes, and the prompt then reaches its job', async () => {
    const stage = await silentStage();
    const sink = new RecordingSink();
    stage.hub.register('alice', 'one', sink);
    const accepted = Date.now();
    const job = await submit(stage, 'alice', 'one');
    await waitFor(() => stage.connections === 3, 'the silent socket to be reopened', 5000);
    const reopenedAfter = Date.now() - accepted;
    assert.ok(reopenedAfter >= silenceLimitMs - 20 && reopenedAfter < silenceLimitMs + 1500, `reopened ${reopenedAfter} ms after the prompt was accepted`);
    assert.deepEqual(stage.fake.openSockets(), [stage.hub.clientId], 'ComfyUI knows the same clientId again');
    assert.ok(
      stage.logs.some((line) => line.level === 40 && /got nothing after ComfyUI accepted a prompt/.test(line.msg)),
      'the silence is logged at warn',
    );
    await waitFor(() => sink.finished(job.id), "the job's events after the reopen", 5000);
    assert.ok(
      ofJob(stage.observed, job.id).some((o) => o.kind === 'ended' && o.outcome === 'success'),
      'the job ends through its events',
    );
  });

  test('a socket that gets a message after each accepted prompt is left open', async () => {
    const stage = await startStage({}, { socket: { silenceLimitMs } });
    const sink = new RecordingSink();
    stage.hub.register('alice', 'one', sink);
    const first = await submit(stage, 'alice', 'one');
    const second = await submit(stage, 'alice', 'one');
    await waitFor(() => sink.finished(first.id) && sink.finished(second.id), 'both jobs to finish');
    await sleep(silenceLimitMs * 2);
    assert.equal(stage.connections, 1);
    assert.ok(!stage.logs.some((line) => /got nothing/.test(line.msg)));
  });
});

describe("event hub, the running prompt read from ComfyUI's queue", () => {
  test('a reading is taken when the socket heard nothing of which prompt runs while it was read, and not otherwise', async () => {
    const stage = await startStage({ stepDelayMs: 20 });
    const olderThanEvents = stage.hub.runningFromQueue();
    const job = await submit(stage, 'alice', null);
    await waitFor(() => stage.hub.runningPrompt() === job.upstreamId, 'the job to run');
    olderThanEvents(null);
    assert.equal(stage.hub.runningPrompt(), job.upstreamId, 'a reading taken before an event of the job is not used');

    await waitFor(() => ofJob(stage.observed, job.id).some((o) => o.kind === 'ended'), 'the job to end');
    const olderThanClose = stage.hub.runningFromQueue();
    stage.fake.cutSocket(stage.hub.clientId, 0);
    await waitFor(() => stage.connections === 2 && stage.hub.connected, 'the hub to reconnect');
    olderThanClose('read-before-the-close');
    assert.equal(stage.hub.runningPrompt(), null, 'a reading taken before the socket closed is not used');

    const fresh = stage.hub.runningFromQueue();
    fresh('running-now');
    assert.equal(stage.hub.runningPrompt(), 'running-now', 'a reading with nothing heard meanwhile is used');
  });
});
