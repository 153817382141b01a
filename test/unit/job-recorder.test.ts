// Unit tests of the job recorder: a job's events become writes of its record, in order, with its files claimed for its key before the record lists them.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { earlierFileCheck } from '../../src/isolation/cached-outputs.js';
import { fileId } from '../../src/isolation/files.js';
import { createJobRecorder } from '../../src/jobs/job-events.js';
import { createLogger } from '../../src/log/logger.js';
import type { FileJobStore } from '../../src/store/file/file-job-store.js';
import type { FileOwnershipStore } from '../../src/store/file/file-ownership-store.js';
import type { JobObserver } from '../../src/events/event-hub.js';
import type { JobPatch, JobRecord } from '../../src/store/types.js';
import { jobRecord } from '../helpers/job-record.js';
import { openJobStores, type OpenJobStores } from '../helpers/job-stores.js';
import { waitFor } from '../helpers/wait-for.js';

const IMAGE_A = { filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' };
const IMAGE_B = { filename: 'ComfyUI_00002_.png', subfolder: 'faces', type: 'output' };
const idOf = (image: typeof IMAGE_A): string => fileId(image.type, image.subfolder, image.filename);

describe('job recorder', () => {
  let stores: OpenJobStores;
  let jobs: FileJobStore;
  let ownership: FileOwnershipStore;
  let patches: JobPatch[];
  let ended: JobRecord[];
  let recorder: JobObserver;
  /** The jobs whose start was read from ComfyUI's history, and what that read answers (by default: it cannot tell). */
  let lookups: string[];
  let startInHistory: (job: JobRecord) => Promise<number | undefined>;

  beforeEach(async () => {
    stores = await openJobStores('recorder');
    ({ jobs, ownership } = stores);
    patches = [];
    ended = [];
    lookups = [];
    startInHistory = () => Promise.resolve(undefined);
    // The registry as the recorder sees it, with every update it asks for noted.
    const noted = Object.create(jobs, {
      update: { value: (...args: Parameters<FileJobStore['update']>) => (patches.push(args[1]), jobs.update(...args)) },
    }) as FileJobStore;
    const isOwnEarlierFile = earlierFileCheck(ownership, (type, subfolder, filename) => jobs.producerOf(type, subfolder, filename), false);
    recorder = createJobRecorder({
      jobs: noted,
      ownership,
      isOwnEarlierFile,
      log: createLogger('silent'),
      onEnded: (job) => ended.push(job),
      startInHistory: (job) => (lookups.push(job.id), startInHistory(job)),
    });
    await jobs.create(jobRecord('j1'));
  });
  afterEach(() => stores.close());

  const kinds = (): string[] => patches.map((patch) => patch.status ?? (patch.outputs ? 'outputs' : 'other'));

  /** Ends job j1 and resolves the names of the files its record then lists. */
  async function endedOutputNames(): Promise<string[]> {
    recorder.ended('j1', 'success', 101, null);
    await waitFor(() => ended.length === 1, 'the job to end');
    return ended[0]!.outputs.map((output) => output.filename);
  }

  test('files reported together with the end are written with it: running, then ended with every file, each claimed for the key', async () => {
    recorder.started('j1', 100);
    recorder.executed('j1', '9', { images: [IMAGE_A] });
    recorder.executed('j1', '12', { images: [IMAGE_B], text: ['not a file'] });
    recorder.ended('j1', 'success', 103, null);
    await waitFor(() => ended.length === 1, 'the job to end');
    assert.deepEqual(kinds(), ['running', 'success']);
    assert.deepEqual(ended[0]!.outputs, [
      { node: '9', ...IMAGE_A },
      { node: '12', ...IMAGE_B },
    ]);
    assert.equal(ended[0]!.execution_seconds, 3);
    for (const image of [IMAGE_A, IMAGE_B]) assert.equal(ownership.ownerOf('file', fileId(image.type, image.subfolder, image.filename)), 'alice');
  });

  test('files reported while the job runs are written as they come, before its end, and kept by it', async () => {
    recorder.started('j1', 100);
    await waitFor(() => jobs.get('j1')?.status === 'running', 'the job to run');
    recorder.executed('j1', '9', { images: [IMAGE_A] });
    await waitFor(() => jobs.get('j1')?.outputs.length === 1, 'the first file to be written');
    assert.equal(ownership.ownerOf('file', fileId(IMAGE_A.type, IMAGE_A.subfolder, IMAGE_A.filename)), 'alice', 'claimed before the record lists it');
    recorder.executed('j1', '12', { images: [IMAGE_B] });
    recorder.ended('j1', 'error', 104, { message: 'out of memory' });
    await waitFor(() => ended.length === 1, 'the job to end');
    assert.deepEqual(kinds(), ['running', 'outputs', 'error']);
    assert.deepEqual(
      ended[0]!.outputs.map((output) => output.filename),
      [IMAGE_A.filename, IMAGE_B.filename],
    );
    assert.deepEqual(ended[0]!.error, { message: 'out of memory' });
  });

  test('events of an ended job change nothing', async () => {
    recorder.ended('j1', 'interrupted', 101, null);
    await waitFor(() => ended.length === 1, 'the job to end');
    recorder.executed('j1', '9', { images: [IMAGE_A] });
    recorder.ended('j1', 'success', 102, null);
    recorder.started('j1', 103);
    // Let any write the late events might wrongly make go through.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(kinds(), ['interrupted']);
    assert.equal(jobs.get('j1')?.status, 'interrupted');
    assert.deepEqual(jobs.get('j1')?.outputs, []);
  });

  test("a cached node's files (an earlier prompt's) are the job's only when they are its key's own, made last by its jobs on its backend", async () => {
    // bob's earlier job made IMAGE_A; alice's earlier job made IMAGE_B on this backend.
    await jobs.create(jobRecord('bobs', { key_id: 'bob', status: 'success', outputs: [{ node: '9', ...IMAGE_A }] }));
    await jobs.create(jobRecord('alices', { status: 'success', outputs: [{ node: '12', ...IMAGE_B }] }));
    await ownership.claim('file', idOf(IMAGE_A), 'bob');
    await ownership.claim('file', idOf(IMAGE_B), 'alice');
    const IMAGE_C = { filename: 'ComfyUI_00003_.png', subfolder: '', type: 'output' };
    recorder.started('j1', 100);
    recorder.cached('j1', ['9', '12']);
    recorder.executed('j1', '9', { images: [IMAGE_A] });
    recorder.executed('j1', '12', { images: [IMAGE_B] });
    recorder.executed('j1', '13', { images: [IMAGE_C] });
    assert.deepEqual(
      await endedOutputNames(),
      [IMAGE_B.filename, IMAGE_C.filename],
      "bob's cached file is left out; alice's own cached file and the new one are kept",
    );
    assert.equal(ownership.ownerOf('file', idOf(IMAGE_A)), 'bob', 'and it stays his');

    // With several backends a name is another file on each: alice's own name, last made on another backend, is not this backend's file.
    await jobs.create(jobRecord('j2', { backend: 'gpu1' }));
    recorder.cached('j2', ['12']);
    recorder.executed('j2', '12', { images: [IMAGE_B] });
    recorder.ended('j2', 'success', 102, null);
    await waitFor(() => ended.length === 2, 'the second job to end');
    assert.deepEqual(ended[1]!.outputs, []);
  });

  test("without the job's execution_cached (sent while the socket to ComfyUI was cut), a file another key owns is left out and stays his", async () => {
    await ownership.claim('file', idOf(IMAGE_A), 'bob');
    recorder.started('j1', 100);
    recorder.executed('j1', '9', { images: [IMAGE_A] });
    recorder.executed('j1', '13', { images: [IMAGE_B] });
    assert.deepEqual(await endedOutputNames(), [IMAGE_B.filename]);
    assert.equal(ownership.ownerOf('file', idOf(IMAGE_A)), 'bob');
    assert.equal(ownership.ownerOf('file', idOf(IMAGE_B)), 'alice', 'a file nobody owns is the one the job made');
  });

  test("a start seen as an event is kept; one a comparison estimated, or none seen, is read from ComfyUI's history once at the end and metered from", async () => {
    startInHistory = (job) => Promise.resolve(job.id === 'j1' ? 90 : 145);
    recorder.started('j1', 100);
    recorder.ended('j1', 'success', 103, null);
    await waitFor(() => ended.length === 1, 'the job to end');
    assert.deepEqual([ended[0]!.started_at, ended[0]!.execution_seconds, lookups], [100, 3, []]);

    await jobs.create(jobRecord('j2'));
    recorder.started('j2', 150, true);
    recorder.ended('j2', 'success', 160, null);
    await jobs.create(jobRecord('j3'));
    recorder.ended('j3', 'error', 160, { message: 'out of memory' });
    await waitFor(() => ended.length === 3, 'the two other jobs to end');
    const byId = new Map(ended.map((job) => [job.id, job]));
    assert.deepEqual([byId.get('j2')!.started_at, byId.get('j2')!.execution_seconds], [145, 15], "estimated start replaced by ComfyUI's");
    assert.deepEqual([byId.get('j3')!.started_at, byId.get('j3')!.execution_seconds], [145, 15], 'an unseen start found in the history');
    assert.deepEqual(lookups.sort(), ['j2', 'j3']);
  });

  test('a history read that fails or never answers leaves the job metered from what is known, its end written once', async () => {
    startInHistory = (job) => (job.id === 'j1' ? new Promise<undefined>(() => undefined) : Promise.reject(new Error('ComfyUI could not be reached.')));
    recorder.started('j1', 100, true);
    recorder.ended('j1', 'success', 103, null);
    await jobs.create(jobRecord('j2'));
    recorder.ended('j2', 'success', 103, null);
    await waitFor(() => ended.length === 2, 'both jobs to end');
    const byId = new Map(ended.map((job) => [job.id, job]));
    assert.deepEqual([byId.get('j1')!.started_at, byId.get('j1')!.execution_seconds], [100, 3], 'the estimated start');
    assert.deepEqual([byId.get('j2')!.started_at, byId.get('j2')!.execution_seconds], [null, 0], 'no start known');
    assert.deepEqual(kinds(), ['running', 'success', 'success']);
  });
});
