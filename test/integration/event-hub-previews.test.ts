// The event hub's preview buffers, which it reads into again once sent: every socket gets its own job's previews intact (with metadata, or plain), however long it holds them, and a buffer is reused only after every socket sent it has written it.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { EventHub, type ClientSink } from '../../src/events/event-hub.js';
import { binaryFrameType, readPreviewWithMetadata } from '../../src/events/preview-frames.js';
import { waitFor } from '../helpers/wait-for.js';

const IMAGE_BYTES = 100_000;
const PREVIEWS_PER_JOB = 60;
const JOBS = [
  { id: 'job-a', key_id: 'key-a', client_id: 'client-a' },
  { id: 'job-b', key_id: 'key-b', client_id: 'client-b' },
  { id: 'job-c', key_id: 'key-c', client_id: 'client-c' },
];

/** A type 4 preview of `promptId` whose image is `IMAGE_BYTES` bytes of `fill` (so a frame overwritten by another shows). */
function preview(promptId: string, fill: number): Buffer {
  const metadata = Buffer.from(JSON.stringify({ node_id: '3', prompt_id: promptId, image_type: 'image/jpeg', fill }));
  const head = Buffer.alloc(8);
  head.writeUInt32BE(4, 0);
  head.writeUInt32BE(metadata.length, 4);
  return Buffer.concat([head, metadata, Buffer.alloc(IMAGE_BYTES, fill)]);
}

/** The fill of a frame's image, checked byte by byte: null when the image is not one fill throughout. */
function fillOf(image: Buffer): number | null {
  return image.length === IMAGE_BYTES && image.every((byte) => byte === image[0]) ? image[0]! : null;
}

/**
 * A socket that checks each preview when it has written it, as a client socket's write calls back:
 * after `holdMs` (a slow client), the bytes must still be those it was sent, of its own job.
 */
class CheckingSink implements ClientSink {
  readonly fills: number[] = [];
  readonly problems: string[] = [];
  readonly memories = new Set<ArrayBufferLike>();
  /** Frames sent in memory of their own (a copy), not as a view of a larger buffer. */
  copies = 0;
  constructor(
    private readonly job: string,
    private readonly metadata: boolean,
    private readonly holdMs: () => number,
  ) {}
  wantsPreviewMetadata(): boolean {
    return this.metadata;
  }
  send(data: Buffer | string, isBinary: boolean, written?: () => void): void {
    if (!isBinary) return written?.();
    const frame = data as Buffer;
    const sentFill = this.read(frame);
    this.memories.add(frame.buffer);
    if (frame.byteOffset === 0 && frame.buffer.byteLength === frame.length) this.copies += 1;
    const check = (): void => {
      const fill = this.read(frame);
      if (fill === null || fill !== sentFill) this.problems.push(`frame of fill ${String(sentFill)} read ${String(fill)} when written`);
      else this.fills.push(fill);
      written?.();
    };
    const holdMs = this.holdMs();
    if (holdMs === 0) check();
    else setTimeout(check, holdMs);
  }
  /** The frame's fill, or null when it is not a whole preview of this sink's job and preview type. */
  private read(frame: Buffer): number | null {
    if (!this.metadata) return binaryFrameType(frame) === 1 ? fillOf(frame.subarray(8)) : null;
    const preview = readPreviewWithMetadata(frame);
    return preview?.metadata.prompt_id === this.job ? fillOf(preview.image) : null;
  }
}

describe('event hub previews from reused buffers', () => {
  let server: Server;
  let upstreamSocket: WebSocket;
  let hub: EventHub;

  before(async () => {
    server = createServer();
    const sockets = new WebSocketServer({ server });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const connected = once(sockets, 'connection');
    hub = new EventHub({
      backend: 'default',
      upstream: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
      jobs: { byUpstreamId: (_backend, id) => JOBS.find((job) => job.id === id) },
      observer: { started: () => undefined, cached: () => undefined, executed: () => undefined, ended: () => undefined },
      isShownEarlierFile: () => true,
      log: pino({ level: 'silent' }),
    });
    hub.start();
    [upstreamSocket] = (await connected) as [WebSocket];
    await waitFor(() => hub.connected, 'the hub to connect');
  });

  after(async () => {
    hub.close();
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });

  test('slow and fast sockets of three keys each get their own previews intact, and the buffers are read into again', async () => {
    const slowA = new CheckingSink('job-a', true, () => 1 + Math.floor(Math.random() * 20));
    const plainA = new CheckingSink('job-a', false, () => 0);
    const fastB = new CheckingSink('job-b', true, () => 0);
    // Key c's sockets both want plain previews: theirs are made in the frame's own buffer.
    const slowPlainC = new CheckingSink('job-c', false, () => 1 + Math.floor(Math.random() * 20));
    const fastPlainC = new CheckingSink('job-c', false, () => 0);
    const unregister = [
      hub.register('key-a', 'client-a', slowA),
      hub.register('key-a', 'client-a', plainA),
      hub.register('key-b', 'client-b', fastB),
      hub.register('key-c', 'client-c', slowPlainC),
      hub.register('key-c', 'client-c', fastPlainC),
    ];
    const expected = new Map<string, number[]>(JOBS.map((job) => [job.id, []]));
    for (let index = 0; index < PREVIEWS_PER_JOB * JOBS.length; index += 1) {
      const job = JOBS[index % JOBS.length]!.id;
      const fill = index % 251;
      expected.get(job)!.push(fill);
      upstreamSocket.send(preview(job, fill));
      if (index % 10 === 9) await sleep(2);
    }
    const sinks = [slowA, plainA, fastB, slowPlainC, fastPlainC];
    await waitFor(() => sinks.every((sink) => sink.fills.length + sink.problems.length === PREVIEWS_PER_JOB), 'every socket to write every preview');
    for (const stop of unregister) stop();
    for (const sink of sinks) assert.deepEqual(sink.problems, []);
    const inOrder = (fills: number[]): number[] => [...fills].sort((x, y) => x - y);
    assert.deepEqual(inOrder(slowA.fills), inOrder(expected.get('job-a')!));
    assert.deepEqual(plainA.fills, expected.get('job-a'));
    assert.deepEqual(fastB.fills, expected.get('job-b'));
    assert.deepEqual(inOrder(slowPlainC.fills), inOrder(expected.get('job-c')!));
    assert.deepEqual(fastPlainC.fills, expected.get('job-c'));
    const memories = new Set([...slowA.memories, ...fastB.memories, ...slowPlainC.memories]);
    const pooled = PREVIEWS_PER_JOB * JOBS.length;
    assert.ok(memories.size < pooled, `${memories.size} buffers for ${pooled} previews: buffers were read into again`);
    assert.deepEqual([slowPlainC.copies, fastPlainC.copies], [0, 0], "key c's plain previews are views of the frames read, not copies");
    assert.equal(plainA.copies, PREVIEWS_PER_JOB, "key a's plain previews are copies: its other socket reads the metadata");
  });
});
