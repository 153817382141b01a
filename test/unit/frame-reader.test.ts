// Unit and property tests of FrameReader: a server's WebSocket frames read from reads cut anywhere, into whole messages; protocol errors and close frames.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FrameError, FrameReader, OPCODE } from '../../src/events/frame-reader.js';

const { continuation: CONTINUATION, text: TEXT, binary: BINARY, close: CLOSE, ping: PING, pong: PONG } = OPCODE;

/** What the handlers received, in order; ping payloads and binary messages as they stand when read. */
type Delivered =
  | { kind: 'text'; text: string }
  | { kind: 'binary'; bytes: Buffer }
  | { kind: 'ping'; bytes: Buffer }
  | { kind: 'pong' }
  | { kind: 'close'; code: number | null; reason: string };

/** A reader that records everything its handlers get (a copy of each ping's payload, which is valid only during the call). */
function recordingReader(maxMessageBytes = 1 << 20): { reader: FrameReader; delivered: Delivered[] } {
  const delivered: Delivered[] = [];
  const reader = new FrameReader(
    {
      text: (text) => delivered.push({ kind: 'text', text }),
      binary: (bytes) => delivered.push({ kind: 'binary', bytes }),
      ping: (payload) => delivered.push({ kind: 'ping', bytes: Buffer.from(payload) }),
      pong: () => delivered.push({ kind: 'pong' }),
      close: (code, reason) => delivered.push({ kind: 'close', code, reason }),
    },
    maxMessageBytes,
  );
  return { reader, delivered };
}

interface FrameShape {
  final?: boolean;
  /** RSV1..3 as the bits 0x40, 0x20, 0x10 of the first byte. */
  reserved?: number;
  mask?: Buffer;
}

/** One frame as a server would write it (unmasked unless `mask`), its length in the shortest form. */
function frame(opcode: number, payload: Buffer | string, { final = true, reserved = 0, mask }: FrameShape = {}): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const lengthBytes = body.length < 126 ? 0 : body.length < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + lengthBytes + (mask ? 4 : 0));
  head[0] = (final ? 0x80 : 0) | reserved | opcode;
  head[1] = (mask ? 0x80 : 0) | (lengthBytes === 0 ? body.length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) head.writeUInt16BE(body.length, 2);
  if (lengthBytes === 8) head.writeBigUInt64BE(BigInt(body.length), 2);
  if (!mask) return Buffer.concat([head, body]);
  mask.copy(head, 2 + lengthBytes);
  return Buffer.concat([head, body.map((byte, i) => byte ^ mask[i & 3]!)]);
}

/** A close frame's payload: `code` and `reason`. */
function closePayload(code: number, reason: string | Buffer = ''): Buffer {
  const payload = Buffer.alloc(2);
  payload.writeUInt16BE(code);
  return Buffer.concat([payload, typeof reason === 'string' ? Buffer.from(reason) : reason]);
}

/** `length` bytes from a seeded xorshift generator: big payloads without drawing each byte from fast-check. */
function seededBytes(length: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  let state = seed | 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

/** Payload sizes: small and large at random, and the lengths where a frame's length changes form. */
const binarySize = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(0, 1, 125, 126, 127, 65535, 65536, 65537, 200 * 1024) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 200 * 1024 }) },
);
const message = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 400 }).map((text) => ({ kind: 'text' as const, text })),
  fc.record({ size: binarySize, seed: fc.integer() }).map(({ size, seed }) => ({ kind: 'binary' as const, bytes: seededBytes(size, seed) })),
);
/** Where a message's payload is cut into frames (taken modulo its length) and a ping, or none, after each frame but the last. */
const fragmentation = fc.array(fc.record({ cut: fc.nat(), ping: fc.option(fc.uint8Array({ maxLength: 125 }).map((bytes) => Buffer.from(bytes))) }), {
  maxLength: 4,
});
const sentMessage = fc.record({ message, fragmentation, pingAfter: fc.option(fc.uint8Array({ maxLength: 125 }).map((bytes) => Buffer.from(bytes))) });
/** Read sizes, used in turn: some small enough to split a frame's head, some larger than a frame. */
const readSizes = fc.array(fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 70_000 })), { minLength: 1, maxLength: 12 });

describe('FrameReader', () => {
  test('messages, fragmented or not, with pings between frames and reads cut anywhere, arrive whole and in order', () => {
    fc.assert(
      fc.property(fc.array(sentMessage, { maxLength: 6 }), readSizes, fc.integer({ min: 0, max: 255 }), (sent, sizes, garbage) => {
        const frames: Buffer[] = [];
        const expected: Delivered[] = [];
        for (const { message, fragmentation, pingAfter } of sent) {
          const payload = message.kind === 'text' ? Buffer.from(message.text) : message.bytes;
          const cuts = fragmentation.map(({ cut }) => cut % (payload.length + 1)).sort((a, b) => a - b);
          const ends = [...cuts, payload.length];
          let from = 0;
          ends.forEach((end, i) => {
            const opcode = i > 0 ? CONTINUATION : message.kind === 'text' ? TEXT : BINARY;
            frames.push(frame(opcode, payload.subarray(from, end), { final: i === ends.length - 1 }));
            from = end;
            const ping = fragmentation[i]?.ping;
            if (i < cuts.length && ping) {
              frames.push(frame(PING, ping));
              expected.push({ kind: 'ping', bytes: ping });
            }
          });
          expected.push(message);
          if (pingAfter) {
            frames.push(frame(PING, pingAfter));
            expected.push({ kind: 'ping', bytes: pingAfter });
          }
        }
        const stream = Buffer.concat(frames);
        const { reader, delivered } = recordingReader();
        // One read buffer used again, as the socket does: overwritten as soon as each push returns.
        const readBuffer = Buffer.alloc(Math.max(...sizes));
        for (let at = 0, turn = 0; at < stream.length; turn++) {
          const size = Math.min(sizes[turn % sizes.length]!, stream.length - at);
          stream.copy(readBuffer, 0, at, at + size);
          reader.push(readBuffer.subarray(0, size));
          readBuffer.fill(garbage, 0, size);
          at += size;
        }
        assert.deepEqual(delivered, expected);
      }),
      { numRuns: 150 },
    );
  });

  test('a message of exactly maxMessageBytes is read, in one frame or several', () => {
    const { reader, delivered } = recordingReader(1000);
    reader.push(frame(BINARY, Buffer.alloc(1000, 7)));
    reader.push(Buffer.concat([frame(TEXT, 'a'.repeat(600), { final: false }), frame(CONTINUATION, 'b'.repeat(400))]));
    assert.deepEqual(delivered, [
      { kind: 'binary', bytes: Buffer.alloc(1000, 7) },
      { kind: 'text', text: 'a'.repeat(600) + 'b'.repeat(400) },
    ]);
  });

  test('a pong is reported', () => {
    const { reader, delivered } = recordingReader();
    reader.push(Buffer.concat([frame(PONG, 'payload'), frame(PONG, '')]));
    assert.deepEqual(delivered, [{ kind: 'pong' }, { kind: 'pong' }]);
  });
});

describe('FrameReader close frames', () => {
  test('a close frame gives its code and reason; frames after it, in the same read or later ones, are not read', () => {
    const { reader, delivered } = recordingReader();
    reader.push(Buffer.concat([frame(TEXT, 'before'), frame(CLOSE, closePayload(1001, 'going away ✓')), frame(TEXT, 'after')]));
    reader.push(frame(BINARY, Buffer.from([1, 2, 3])));
    reader.push(Buffer.from([0xff, 0xff, 0xff]));
    assert.deepEqual(delivered, [
      { kind: 'text', text: 'before' },
      { kind: 'close', code: 1001, reason: 'going away ✓' },
    ]);
  });

  test('an empty close frame gives code null and an empty reason', () => {
    const { reader, delivered } = recordingReader();
    reader.push(Buffer.concat([frame(CLOSE, Buffer.alloc(0)), frame(TEXT, 'after')]));
    assert.deepEqual(delivered, [{ kind: 'close', code: null, reason: '' }]);
  });

  test('a close frame between the frames of a message ends reading there', () => {
    const { reader, delivered } = recordingReader();
    reader.push(Buffer.concat([frame(TEXT, 'par', { final: false }), frame(CLOSE, closePayload(1000))]));
    reader.push(frame(CONTINUATION, 'tial'));
    assert.deepEqual(delivered, [{ kind: 'close', code: 1000, reason: '' }]);
  });
});

/**
 * Pushes `bytes` whole, then (to a new reader) one byte at a time: each time push must throw a FrameError
 * with `closeCode`, deliver nothing after the error, and read nothing more afterwards.
 */
function assertProtocolError(bytes: Buffer, closeCode: number, maxMessageBytes?: number): void {
  for (const readSize of [bytes.length, 1]) {
    const { reader, delivered } = recordingReader(maxMessageBytes);
    let error: unknown = null;
    for (let at = 0; at < bytes.length && error === null; at += readSize) {
      try {
        reader.push(bytes.subarray(at, at + readSize));
      } catch (thrown) {
        error = thrown;
      }
    }
    assert.ok(error instanceof FrameError, `read ${readSize} bytes at a time: ${String(error)}`);
    assert.equal(error.closeCode, closeCode);
    const deliveredAtError = delivered.length;
    reader.push(frame(TEXT, 'after the error'));
    assert.equal(delivered.length, deliveredAtError);
  }
}

describe('FrameReader protocol errors', () => {
  test('a masked frame: 1002', () => {
    assertProtocolError(frame(TEXT, 'masked', { mask: Buffer.from([1, 2, 3, 4]) }), 1002);
  });

  test('a frame with any reserved bit set: 1002', () => {
    for (const reserved of [0x40, 0x20, 0x10]) assertProtocolError(frame(TEXT, 'x', { reserved }), 1002);
  });

  test('frames of reserved opcodes, data (3 to 7) and control (11 to 15): 1002', () => {
    for (const opcode of [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf]) assertProtocolError(frame(opcode, 'x'), 1002);
  });

  test('a fragmented control frame: 1002', () => {
    for (const opcode of [PING, PONG, CLOSE]) assertProtocolError(frame(opcode, Buffer.alloc(0), { final: false }), 1002);
  });

  test('a control frame of over 125 bytes: 1002', () => {
    for (const opcode of [PING, PONG]) assertProtocolError(frame(opcode, Buffer.alloc(126)), 1002);
    assertProtocolError(frame(CLOSE, closePayload(1000, 'r'.repeat(124))), 1002);
  });

  test('a continuation frame with no message to continue: 1002', () => {
    assertProtocolError(frame(CONTINUATION, 'orphan'), 1002);
    assertProtocolError(Buffer.concat([frame(TEXT, 'whole'), frame(CONTINUATION, 'orphan')]), 1002);
  });

  test('a new text or binary frame inside a fragmented message: 1002', () => {
    for (const opcode of [TEXT, BINARY]) assertProtocolError(Buffer.concat([frame(BINARY, 'first', { final: false }), frame(opcode, 'second')]), 1002);
  });

  test('a message over maxMessageBytes, in one frame, over several, or with a 64-bit length: 1009', () => {
    assertProtocolError(frame(BINARY, Buffer.alloc(1001)), 1009, 1000);
    assertProtocolError(Buffer.concat([frame(TEXT, 'a'.repeat(600), { final: false }), frame(CONTINUATION, 'b'.repeat(401))]), 1009, 1000);
    const huge = Buffer.from([0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assertProtocolError(huge, 1009, 1000);
  });

  test('a text message that is not UTF-8, whole or once its fragments are joined: 1007', () => {
    assertProtocolError(frame(TEXT, Buffer.from([0x61, 0xff, 0x62])), 1007);
    assertProtocolError(frame(TEXT, Buffer.from([0xed, 0xa0, 0x80])), 1007);
    assertProtocolError(Buffer.concat([frame(TEXT, Buffer.from([0xe2, 0x9c]), { final: false }), frame(CONTINUATION, Buffer.from([0x41]))]), 1007);
  });

  test('a close frame of one byte: 1002', () => {
    assertProtocolError(frame(CLOSE, Buffer.from([0x03])), 1002);
  });

  test('a close reason that is not UTF-8: 1007', () => {
    assertProtocolError(frame(CLOSE, closePayload(1000, Buffer.from([0xc3]))), 1007);
  });

  test('messages before the error are delivered, nothing after it', () => {
    const { reader, delivered } = recordingReader();
    assert.throws(
      () => reader.push(Buffer.concat([frame(TEXT, 'kept'), frame(0x3, 'bad'), frame(TEXT, 'dropped')])),
      (error) => error instanceof FrameError && error.closeCode === 1002,
    );
    assert.deepEqual(delivered, [{ kind: 'text', text: 'kept' }]);
  });
});
