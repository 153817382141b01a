// Reads a multipart upload as it streams on to ComfyUI: its parts as aiohttp reads them, with the end of the form held back until they are checked.

import { isUtf8 } from 'node:buffer';
import { Transform, type TransformCallback } from 'node:stream';
import { invalidRequest, type GatewayError } from '../errors.js';
import { TOKEN_CHARACTER } from '../proxy/http-token.js';

/** The first part of a name, which is what ComfyUI's `post.get(name)` answers: a file part's name, or a field's text. */
export interface FormPart {
  filename: string | null;
  /** The text of a field; empty for a file part, whose content is not kept. */
  value: string;
  /** The first bytes of the file part a FileHead names, as many as it wanted; missing for any other part. */
  head?: Buffer;
}

/**
 * The start of a file part to keep as it streams: the first file part of the name `part`, as many of its first
 * bytes as `wanted` asks for given those kept so far (and the parts read before it); 0 keeps no more.
 */
export interface FileHead {
  part: string;
  wanted: (head: Buffer, earlier: ReadonlyMap<string, FormPart>) => number;
}

/** The first bytes of a file part being kept (see FileHead), and how many are wanted in all. */
interface KeptHead {
  chunks: Buffer[];
  length: number;
  wanted: number;
}

/** Checks the parts of a whole form; throws (or rejects) to refuse it. The form's end waits for a returned promise. */
export type FormCheck = (parts: ReadonlyMap<string, FormPart>) => void | Promise<void>;

const MAX_HEADER_BYTES = 16 * 1024;
const MAX_FIELD_BYTES = 64 * 1024;
const MAX_EPILOGUE_BYTES = 64 * 1024;
const CRLF = Buffer.from('\r\n');
const HEADERS_END = Buffer.from('\r\n\r\n');
/** RFC 2046 allows boundaries of 1 to 70 characters. */
const BOUNDARY = new RegExp(`^multipart/form-data\\s*;\\s*boundary=(?:"([^"\\\\]{1,70})"|(${TOKEN_CHARACTER}{1,70}))\\s*$`, 'i');
/** One `name` or `filename` parameter in the only spelling whose reading leaves no doubt: no escapes, no `;`, no leading slash. */
const DISPOSITION_PARAM = new RegExp(`^\\s*(name|filename)=(?:"((?![\\\\/])[^"\\\\;]*)"|(${TOKEN_CHARACTER}+))$`, 'i');

/** The boundary of a `multipart/form-data` body, or null when the content type is anything else. */
export function multipartBoundary(contentType: string | undefined): string | null {
  const match = BOUNDARY.exec(contentType ?? '');
  return match ? (match[1] ?? match[2]!) : null;
}

const unclear = (problem: string): GatewayError =>
  invalidRequest(`The upload form cannot be read unambiguously: ${problem}. Send plain form-data parts (a name, a filename, a content type).`, [
    { field: 'body', problem },
  ]);

/**
 * Passes the body through unchanged while reading its parts, and holds back the closing delimiter (and
 * anything after it) until the whole form has been read and `check` has passed: ComfyUI cannot finish
 * reading a form without its end, so a refused form is never acted on. A form aiohttp could read another
 * way refuses the form with 400: bytes before the first delimiter (aiohttp takes any line that is the
 * boundary, ended by LF alone, as the first), a CR or LF inside a part header line (aiohttp ends header
 * lines at LF), and part headers with escapes, extended parameters, encodings or folded lines.
 * The first refusal is kept in `refusal`. With a `fileHead`, the start of the file part it names is kept in its FormPart.
 */
export class UploadFormReader extends Transform {
  readonly parts = new Map<string, FormPart>();
  refusal: GatewayError | null = null;
  private readonly delimiter: Buffer;
  private readonly check: FormCheck;
  /** Unread bytes; it starts with a CRLF of the reader's own, so the first delimiter reads like the others. */
  private buffer: Buffer = CRLF;
  private ownBytes = CRLF.length;
  private state: 'body' | 'headers' | 'end' = 'body';
  /** Whether the first delimiter has been read: the form must begin with it. */
  private begun = false;
  private readonly fileHead: FileHead | undefined;
  private part: { name: string; filename: string | null; chunks: Buffer[]; size: number; head?: KeptHead } | null = null;
  private readonly held: Buffer[] = [];
  private heldBytes = 0;

  constructor(boundary: string, check: FormCheck, fileHead?: FileHead) {
    super();
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
    this.check = check;
    this.fileHead = fileHead;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.guarded(callback, () => {
      if (this.state === 'end') return this.hold(chunk);
      if (this.carriesNoDelimiterInto(chunk)) {
        // Bytes of a file pass through uncopied: only the few carried over from the last chunk are passed on first.
        this.consume(this.buffer.length, true);
        this.buffer = chunk;
      } else {
        this.buffer = Buffer.concat([this.buffer, chunk]);
      }
      while (this.step());
    });
  }

  override _flush(callback: TransformCallback): void {
    this.guarded(callback, () => {
      if (this.state !== 'end') throw unclear('the form has no closing delimiter');
      const checked = this.check(this.parts);
      const release = (): void => {
        for (const chunk of this.held) this.push(chunk);
      };
      if (!checked) return release();
      return checked.then(release);
    });
  }

  /** Runs `work` (which may finish later) and calls back once it has; its error refuses the form. */
  private guarded(callback: TransformCallback, work: () => void | Promise<void>): void {
    const refuse = (error: unknown): void => {
      this.refusal = error as GatewayError;
      callback(error as Error);
    };
    try {
      const done = work();
      if (done) done.then(() => callback(), refuse);
      else callback();
    } catch (error) {
      refuse(error);
    }
  }

  /**
   * Whether, in a part's body, the bytes carried over (fewer than a delimiter, as `step` leaves them)
   * cannot begin a delimiter that `chunk` completes, so they are content and `chunk` can be read on its own.
   */
  private carriesNoDelimiterInto(chunk: Buffer): boolean {
    const carried = this.buffer.length;
    if (this.state !== 'body' || carried >= this.delimiter.length) return false;
    if (carried === 0) return true;
    // A delimiter begun in the carried bytes ends within the chunk's first delimiter-length bytes, if it has as many.
    if (chunk.length < this.delimiter.length) return false;
    const at = Buffer.concat([this.buffer, chunk.subarray(0, this.delimiter.length)]).indexOf(this.delimiter);
    return at < 0 || at >= carried;
  }

  /**
   * Where the buffer's longest ending that could begin a delimiter starts, or the buffer's length when
   * none could: only those bytes wait for the next chunk, so a chunk of a file usually goes on whole.
   */
  private partialDelimiterAt(): number {
    const { buffer, delimiter } = this;
    const first = delimiter[0]!;
    for (let at = buffer.indexOf(first, Math.max(0, buffer.length - delimiter.length + 1)); at >= 0; at = buffer.indexOf(first, at + 1)) {
      if (buffer.subarray(at).equals(delimiter.subarray(0, buffer.length - at))) return at;
    }
    return buffer.length;
  }

  /** Reads what the buffer allows; false when it needs more bytes. */
  private step(): boolean {
    if (this.state === 'headers') return this.readHeaders();
    // aiohttp takes as the first boundary any line (ended by LF alone) that is the boundary, so a preamble could hide a first part.
    if (!this.begun) {
      const length = Math.min(this.buffer.length, this.delimiter.length);
      if (!this.buffer.subarray(0, length).equals(this.delimiter.subarray(0, length))) throw unclear('the form does not begin with its boundary');
      if (length < this.delimiter.length) return false;
      this.begun = true;
    }
    const at = this.buffer.indexOf(this.delimiter);
    if (at < 0) {
      this.consume(this.partialDelimiterAt(), true);
      return false;
    }
    // The two bytes after a delimiter say whether it closes the form (`--`) or starts a part (CRLF).
    if (this.buffer.length < at + this.delimiter.length + 2) {
      this.consume(at, true);
      return false;
    }
    this.consume(at, true);
    this.endPart();
    const next = this.buffer.subarray(this.delimiter.length, this.delimiter.length + 2).toString('latin1');
    if (next === '--') {
      this.state = 'end';
      const rest = this.buffer;
      this.buffer = Buffer.alloc(0);
      this.hold(rest);
      return false;
    }
    if (next !== '\r\n') throw unclear('a delimiter line has more than the boundary');
    this.consume(this.delimiter.length, false);
    this.state = 'headers';
    return true;
  }

  /** Reads a part's headers (the buffer starts with the CRLF that ended the delimiter line). */
  private readHeaders(): boolean {
    const end = this.buffer.indexOf(HEADERS_END);
    if (end < 0) {
      if (this.buffer.length > MAX_HEADER_BYTES) throw unclear('part headers are too long');
      return false;
    }
    const bytes = this.buffer.subarray(Math.min(CRLF.length, end), end);
    // aiohttp keeps bytes that are not UTF-8 as the surrogates Python writes back as those bytes: a file name the gateway would read otherwise.
    if (!isUtf8(bytes)) throw unclear('a part header is not UTF-8');
    const lines = end === 0 ? [] : bytes.toString('utf8').split('\r\n');
    this.consume(end + HEADERS_END.length, false);
    const headers = new Map<string, string>();
    for (const line of lines) {
      // aiohttp ends a part header line at LF alone.
      if (/[\r\n]/.test(line)) throw unclear('a part header line holds a CR or LF of its own');
      const colon = line.indexOf(':');
      if (colon <= 0 || /^[ \t]/.test(line)) throw unclear('a part header line is malformed');
      const name = line.slice(0, colon).trim().toLowerCase();
      if (headers.has(name)) throw unclear(`a part repeats ${name}`);
      headers.set(name, line.slice(colon + 1).trim());
    }
    // aiohttp decodes these encodings, and reads a part with a Content-Length by its length rather than to the next delimiter.
    if (['content-transfer-encoding', 'content-encoding', 'content-length'].some((h) => headers.has(h))) throw unclear('a part has an encoding or a length');
    const { name, filename } = parseDisposition(headers.get('content-disposition'));
    // RFC 7578 §4.6: a `_charset_` field names the charset of the fields after it, which a reader may decode them with.
    if (name === '_charset_') throw unclear('a _charset_ field would change how the other fields read');
    const type = headers.get('content-type');
    if (filename === null && type !== undefined && !/^text\/plain(\s*;\s*charset="?(utf-8|us-ascii)"?)?$/i.test(type)) {
      throw unclear(`field ${name} is not plain UTF-8 text`);
    }
    this.part = { name, filename, chunks: [], size: 0 };
    if (this.fileHead && filename !== null && name === this.fileHead.part && !this.parts.has(name)) {
      this.part.head = { chunks: [], length: 0, wanted: this.fileHead.wanted(Buffer.alloc(0), this.parts) };
    }
    this.state = 'body';
    return true;
  }

  /** Passes `length` bytes on (without the reader's own), keeping a field's bytes as its value. */
  private consume(length: number, isContent: boolean): void {
    if (length === 0) return;
    const bytes = this.buffer.subarray(0, length);
    this.buffer = this.buffer.subarray(length);
    if (isContent && this.part && this.part.filename === null) {
      this.part.size += bytes.length;
      if (this.part.size > MAX_FIELD_BYTES) throw unclear(`field ${this.part.name} is longer than ${MAX_FIELD_BYTES} bytes`);
      this.part.chunks.push(Buffer.from(bytes));
    }
    if (isContent && this.part?.head) this.keepHead(this.part.head, bytes);
    const own = Math.min(this.ownBytes, bytes.length);
    this.ownBytes -= own;
    if (bytes.length > own) this.push(bytes.subarray(own));
  }

  /** Keeps what `head` still wants of a file's `bytes`, asking fileHead again each time it has all it wanted. */
  private keepHead(head: KeptHead, bytes: Buffer): void {
    let rest = bytes;
    while (rest.length > 0 && head.wanted > head.length) {
      const taken = rest.subarray(0, head.wanted - head.length);
      rest = rest.subarray(taken.length);
      head.chunks.push(Buffer.from(taken));
      head.length += taken.length;
      if (head.length < head.wanted) continue;
      head.chunks = [Buffer.concat(head.chunks)];
      head.wanted = this.fileHead!.wanted(head.chunks[0]!, this.parts);
    }
  }

  private endPart(): void {
    const part = this.part;
    this.part = null;
    if (!part || this.parts.has(part.name)) return;
    const read: FormPart = { filename: part.filename, value: part.filename === null ? Buffer.concat(part.chunks).toString('utf8') : '' };
    if (part.head) read.head = Buffer.concat(part.head.chunks);
    this.parts.set(part.name, read);
  }

  private hold(bytes: Buffer): void {
    this.heldBytes += bytes.length;
    if (this.heldBytes > MAX_EPILOGUE_BYTES) throw unclear('too much follows the closing delimiter');
    this.held.push(Buffer.from(bytes));
  }
}

/** `form-data; name="…"[; filename="…"]`, and nothing that aiohttp could read another way. */
function parseDisposition(value: string | undefined): { name: string; filename: string | null } {
  const [type, ...params] = (value ?? '').split(';');
  if (type?.trim().toLowerCase() !== 'form-data') throw unclear('a part is not form-data');
  const found = new Map<string, string>();
  for (const param of params) {
    const match = DISPOSITION_PARAM.exec(param);
    const key = match?.[1]!.toLowerCase();
    if (!match || found.has(key!)) throw unclear('a part has a Content-Disposition parameter other than one name and one filename');
    found.set(key!, match[2] ?? match[3]!);
  }
  if (!found.has('name')) throw unclear('a part has no name');
  return { name: found.get('name')!, filename: found.get('filename') ?? null };
}
