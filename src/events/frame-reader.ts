// Reads what a WebSocket server sends (RFC 6455 §5) from reads that may split it anywhere, into whole messages, copying each payload once at most.

import { isUtf8 } from 'node:buffer';

/** What the reader finds, in the order the server sent it. */
export interface FrameHandlers {
  /** A whole text message. */
  text(text: string): void;
  /** A whole binary message, in a buffer of its own (see FrameReader's `allocate`) that the handler may keep. */
  binary(message: Buffer): void;
  /** A ping; `payload` is valid during the call only. */
  ping(payload: Buffer): void;
  pong(): void;
  /** The server's close frame: its status code (null when it gave none) and reason. Nothing after it is read. */
  close(code: number | null, reason: string): void;
}

/** The server broke the protocol; `closeCode` is the status to close the connection with (RFC 6455 §7.4.1). */
export class FrameError extends Error {
  constructor(
    message: string,
    readonly closeCode: number,
  ) {
    super(message);
  }
}

/** The opcodes of RFC 6455 §5.2 (the others are reserved). */
export const OPCODE = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;
const { continuation: CONTINUATION, text: TEXT, binary: BINARY, close: CLOSE, ping: PING, pong: PONG } = OPCODE;
/** The longest a frame's head is from a server, which never masks: 2 bytes and a 64-bit length. */
const MAX_HEAD_BYTES = 10;
/** A control frame's largest payload. */
const MAX_CONTROL_PAYLOAD = 125;

/**
 * Feed it every read with `push`. A message that arrives whole in one read is read from that read's
 * buffer (a text message is decoded in place, a binary one copied once into a buffer from
 * `allocate`); a frame split across reads is gathered into a buffer of its size as its bytes come. The
 * caller may use the read's buffer again as soon as `push` returns. `push` throws FrameError when
 * the server breaks the protocol (a masked or reserved frame, a message over `maxMessageBytes`, text
 * that is not UTF-8, …); after that, or after a close frame, nothing more is read.
 */
export class FrameReader {
  private readonly head = Buffer.alloc(MAX_HEAD_BYTES);
  private headBytes = 0;
  /** The frame whose payload is being read: its opcode, whether it ends its message, its length and how much is read. */
  private opcode = 0;
  private final = false;
  private frameBytes = 0;
  private filled = 0;
  /** Where a frame split across reads is gathered; null while reading a head, or when the whole payload came in one read. */
  private payload: Buffer | null = null;
  private readingPayload = false;
  /** The opcode of a fragmented message in progress (0 when none), and its frames so far. */
  private messageOpcode = 0;
  private fragments: Buffer[] = [];
  private fragmentBytes = 0;
  private stopped = false;

  constructor(
    private readonly handlers: FrameHandlers,
    private readonly maxMessageBytes: number,
    /** Makes the buffer of a binary message sent in one frame (a fragmented one is joined into a new buffer). */
    private readonly allocate: (bytes: number) => Buffer = (bytes) => Buffer.allocUnsafeSlow(bytes),
  ) {}

  /** Reads `bytes` (the view of one read); throws FrameError when the server breaks the protocol. */
  push(bytes: Buffer): void {
    let at = 0;
    try {
      while (at < bytes.length && !this.stopped) {
        if (!this.readingPayload) {
          at = this.readHead(bytes, at);
          continue;
        }
        const wanted = this.frameBytes - this.filled;
        if (this.payload === null && bytes.length - at >= wanted) {
          this.endFrame(bytes.subarray(at, at + wanted), false);
          at += wanted;
          continue;
        }
        this.payload ??= this.opcode === BINARY && this.final ? this.allocate(this.frameBytes) : Buffer.allocUnsafe(this.frameBytes);
        const taken = Math.min(wanted, bytes.length - at);
        bytes.copy(this.payload, this.filled, at, at + taken);
        this.filled += taken;
        at += taken;
        if (this.filled === this.frameBytes) this.endFrame(this.payload, true);
      }
    } catch (error) {
      this.stopped = true;
      throw error;
    }
  }

  /** Takes head bytes from `bytes` at `at` until the head is whole (then starts its frame); returns where it stopped. */
  private readHead(bytes: Buffer, at: number): number {
    while (at < bytes.length) {
      this.head[this.headBytes++] = bytes[at++]!;
      if (this.headBytes >= 2 && this.headBytes === headLength(this.head[1]!)) {
        this.startFrame();
        return at;
      }
    }
    return at;
  }

  private startFrame(): void {
    const first = this.head[0]!;
    const second = this.head[1]!;
    this.headBytes = 0;
    if ((first & 0x70) !== 0) throw new FrameError('ComfyUI sent a frame with reserved bits set (no extension was agreed)', 1002);
    if ((second & 0x80) !== 0) throw new FrameError('ComfyUI sent a masked frame', 1002);
    this.final = (first & 0x80) !== 0;
    this.opcode = first & 0x0f;
    const length = second & 0x7f;
    let frameBytes = length;
    if (length === 126) frameBytes = this.head.readUInt16BE(2);
    else if (length === 127) {
      const high = this.head.readUInt32BE(2);
      // Anything of 2^53 bytes or more is over every limit; the bound is checked below.
      frameBytes = high >= 0x200000 ? Number.MAX_SAFE_INTEGER : high * 2 ** 32 + this.head.readUInt32BE(6);
    }
    if (this.opcode >= CLOSE) {
      if (this.opcode > PONG) throw new FrameError(`ComfyUI sent a frame of reserved opcode ${this.opcode}`, 1002);
      if (!this.final || frameBytes > MAX_CONTROL_PAYLOAD) throw new FrameError('ComfyUI sent a fragmented or oversized control frame', 1002);
    } else if (this.opcode === CONTINUATION) {
      if (this.messageOpcode === 0) throw new FrameError('ComfyUI sent a continuation frame with no message to continue', 1002);
    } else if (this.opcode === TEXT || this.opcode === BINARY) {
      if (this.messageOpcode !== 0) throw new FrameError('ComfyUI began a message before ending the one before', 1002);
    } else throw new FrameError(`ComfyUI sent a frame of reserved opcode ${this.opcode}`, 1002);
    if (this.opcode < CLOSE && this.fragmentBytes + frameBytes > this.maxMessageBytes) {
      throw new FrameError(`ComfyUI sent a message over ${this.maxMessageBytes} bytes`, 1009);
    }
    this.frameBytes = frameBytes;
    this.filled = 0;
    this.payload = null;
    this.readingPayload = true;
    if (frameBytes === 0) this.endFrame(Buffer.alloc(0), true);
  }

  /** A frame's whole payload: `owned` when it is a buffer of the frame's own, or else a view of the read, valid only now. */
  private endFrame(payload: Buffer, owned: boolean): void {
    this.readingPayload = false;
    this.payload = null;
    const { opcode, handlers } = this;
    if (opcode === PING) return handlers.ping(payload);
    if (opcode === PONG) return handlers.pong();
    if (opcode === CLOSE) return this.readClose(payload);
    if (!this.final) {
      if (opcode !== CONTINUATION) this.messageOpcode = opcode;
      this.fragments.push(owned ? payload : Buffer.from(payload));
      this.fragmentBytes += payload.length;
      return;
    }
    if (opcode === CONTINUATION) {
      this.fragments.push(payload);
      const message = Buffer.concat(this.fragments, this.fragmentBytes + payload.length);
      const messageOpcode = this.messageOpcode;
      this.fragments = [];
      this.fragmentBytes = 0;
      this.messageOpcode = 0;
      return this.message(messageOpcode, message, true);
    }
    this.message(opcode, payload, owned);
  }

  private message(opcode: number, bytes: Buffer, owned: boolean): void {
    if (opcode === BINARY) return this.handlers.binary(owned ? bytes : this.copyOf(bytes));
    if (!isUtf8(bytes)) throw new FrameError('ComfyUI sent a text message that is not UTF-8', 1007);
    this.handlers.text(bytes.toString('utf8'));
  }

  /** A copy of `bytes` in a buffer from `allocate`. */
  private copyOf(bytes: Buffer): Buffer {
    const copy = this.allocate(bytes.length);
    bytes.copy(copy);
    return copy;
  }

  private readClose(payload: Buffer): void {
    this.stopped = true;
    if (payload.length === 1) throw new FrameError('ComfyUI sent a close frame of one byte', 1002);
    const reason = payload.subarray(2);
    if (!isUtf8(reason)) throw new FrameError('ComfyUI sent a close reason that is not UTF-8', 1007);
    this.handlers.close(payload.length === 0 ? null : payload.readUInt16BE(0), reason.toString('utf8'));
  }
}

/** The length of a head whose second byte is `second`: the 7-bit length, or 126 and 2 more bytes, or 127 and 8 more. */
function headLength(second: number): number {
  const length = second & 0x7f;
  return length === 126 ? 4 : length === 127 ? 10 : 2;
}
