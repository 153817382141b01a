// The event hub's preview buffers, which it reads into again once sent: every socket gets its own job's previews intact, however long it holds them, and a buffer is reused only after every socket sent it has written it.

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
      observer: { started: () => undefined, executed: () => undefined, ended: () => undefined },
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

  test('slow and fast sockets of two keys each get their own previews intact, and the buffers are read into again', async () => {
    const slowA = new CheckingSink('job-a', true, () => 1 + Math.floor(Math.random() * 20));
    const plainA = new CheckingSink('job-a', false, () => 0);
    const fastB = new CheckingSink('job-b', true, () => 0);
    const unregister = [hub.register('key-a', 'client-a', slowA), hub.register('key-a', 'client-a', plainA), hub.register('key-b', 'client-b', fastB)];
    const expectedA: number[] = [];
    const expectedB: number[] = [];
    for (let index = 0; index < PREVIEWS_PER_JOB * 2; index += 1) {
      const forA = index % 2 === 0;
      const fill = index % 251;
      (forA ? expectedA : expectedB).push(fill);
      upstreamSocket.send(preview(forA ? 'job-a' : 'job-b', fill));
      if (index % 10 === 9) await sleep(2);
    }
    await waitFor(() => slowA.fills.length + slowA.problems.length === PREVIEWS_PER_JOB, 'the slow socket to write every preview');
    await waitFor(() => fastB.fills.length + fastB.problems.length === PREVIEWS_PER_JOB, 'the fast socket to write every preview');
    for (const stop of unregister) stop();
    for (const sink of [slowA, plainA, fastB]) assert.deepEqual(sink.problems, []);
    assert.deepEqual(
      slowA.fills.sort((x, y) => x - y),
      [...expectedA].sort((x, y) => x - y),
    );
    assert.deepEqual(plainA.fills, expectedA);
    assert.deepEqual(fastB.fills, expectedB);
    const memories = new Set([...slowA.memories, ...fastB.memories]);
    assert.ok(memories.size < PREVIEWS_PER_JOB * 2, `${memories.size} buffers for ${PREVIEWS_PER_JOB * 2} previews: buffers were read into again`);
  });
});
