// The width and height of a PNG, JPEG, WebP, GIF or BMP file, read from the start of the file as ComfyUI's LoadImage would size it.

import { bytesWantedBy, headerReadBy, MAX_HEADER_BYTES, type HeaderRead } from './file-header.js';

/** An image's size in pixels, as its header gives it. */
export interface ImageSize {
  width: number;
  height: number;
}

/** What the start of an image file tells of its size (see HeaderRead): its size, the bytes wanted, or null for a format not read here or a header that is not valid (no size, a side of 0). */
type SizeRead = HeaderRead<ImageSize>;

/**
 * The size of the image whose file starts with `head`. Where a file may name more than one size, the
 * largest is taken on each side, as the decoders ComfyUI uses may pick either: a JPEG's every frame
 * header before its first scan; a GIF's logical screen grown to its first frame (Pillow grows it so);
 * an extended WebP's canvas and its first image or animation frame.
 */
export function imageHeaderSize(head: Buffer): SizeRead {
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return pngSize(head);
  if (startsWith(head, [0xff, 0xd8])) return jpegSize(head);
  if (head.toString('latin1', 0, 4) === 'RIFF' && head.toString('latin1', 8, 12) === 'WEBP') return webpSize(head, 12, null);
  if (['GIF87a', 'GIF89a'].includes(head.toString('latin1', 0, 6))) return gifSize(head);
  if (head.toString('latin1', 0, 2) === 'BM') return bmpSize(head);
  return head.length < 12 ? { need: 12 } : null;
}

export { MAX_HEADER_BYTES };

/** How many bytes of a file's start to have before reading its size again (see bytesWantedBy); 0 when it has the size or cannot. */
export function headerBytesWanted(head: Buffer): number {
  return bytesWantedBy(imageHeaderSize, head);
}

/** The size the start of a file gives; undefined when it gives none (another format, or a header that goes on past `head`). */
export function headerSize(head: Buffer): ImageSize | undefined {
  return headerReadBy(imageHeaderSize, head);
}

function startsWith(head: Buffer, bytes: readonly number[]): boolean {
  return bytes.every((byte, i) => head[i] === byte);
}

/** A size of two sides above 0, else null. */
function sized(width: number, height: number): ImageSize | null {
  return width > 0 && height > 0 ? { width, height } : null;
}

/** The larger of two sizes on each side (either may be missing). */
function larger(a: ImageSize | null, b: ImageSize | null): ImageSize | null {
  if (!a || !b) return a ?? b;
  return { width: Math.max(a.width, b.width), height: Math.max(a.height, b.height) };
}

/** PNG: the IHDR chunk, which must come first. */
function pngSize(head: Buffer): SizeRead {
  if (head.length < 24) return { need: 24 };
  if (head.toString('latin1', 12, 16) !== 'IHDR') return null;
  return sized(head.readUInt32BE(16), head.readUInt32BE(20));
}

/** JPEG markers that stand alone, without a length: RSTn, TEM. */
export const STANDALONE = (marker: number): boolean => (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01;
/** Start-of-frame markers (SOF0–SOF15 but DHT, JPG and DAC), whose segment gives the frame's height and width. */
const FRAME_HEADER = (marker: number): boolean => marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
export const START_OF_SCAN = 0xda;
export const END_OF_IMAGE = 0xd9;

/** JPEG: the frame headers (SOFn) among the segments before the first scan; a height of 0 (given later, by DNL) is not read. */
function jpegSize(head: Buffer): SizeRead {
  let found: ImageSize | null = null;
  let pos = 2;
  for (;;) {
    if (head.length < pos + 2) return { need: pos + 2 };
    if (head[pos] !== 0xff) return null;
    // Any number of 0xFF fill bytes may come before a marker.
    if (head[pos + 1] === 0xff) {
      pos += 1;
      continue;
    }
    const marker = head[pos + 1]!;
    if (marker === START_OF_SCAN || marker === END_OF_IMAGE) return found;
    if (STANDALONE(marker)) {
      pos += 2;
      continue;
    }
    if (head.length < pos + 4) return { need: pos + 4 };
    const length = head.readUInt16BE(pos + 2);
    if (length < 2) return null;
    if (FRAME_HEADER(marker)) {
      if (head.length < pos + 9) return { need: pos + 9 };
      const frame = sized(head.readUInt16BE(pos + 7), head.readUInt16BE(pos + 5));
      if (!frame) return null;
      found = larger(found, frame);
    }
    pos += 2 + length;
  }
}

/**
 * WebP: the first chunk from `pos` that holds an image: lossy (VP8), lossless (VP8L), or an extended file's
 * canvas (VP8X), read with the image or animation frame that follows it (`canvas` is then that canvas).
 */
function webpSize(head: Buffer, pos: number, canvas: ImageSize | null): SizeRead {
  for (;;) {
    if (head.length < pos + 8) return { need: pos + 8 };
    const fourcc = head.toString('latin1', pos, pos + 4);
    const size = head.readUInt32LE(pos + 4);
    const data = pos + 8;
    if (fourcc === 'VP8 ') {
      if (head.length < data + 10) return { need: data + 10 };
      if (!startsWith(head.subarray(data + 3), [0x9d, 0x01, 0x2a])) return null;
      return larger(canvas, sized(head.readUInt16LE(data + 6) & 0x3fff, head.readUInt16LE(data + 8) & 0x3fff));
    }
    if (fourcc === 'VP8L') {
      if (head.length < data + 5) return { need: data + 5 };
      if (head[data] !== 0x2f) return null;
      const bits = head.readUInt32LE(data + 1);
      return larger(canvas, sized((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1));
    }
    if (fourcc === 'ANMF' && canvas) {
      if (head.length < data + 12) return { need: data + 12 };
      const x = head.readUIntLE(data, 3) * 2;
      const y = head.readUIntLE(data + 3, 3) * 2;
      return larger(canvas, sized(x + head.readUIntLE(data + 6, 3) + 1, y + head.readUIntLE(data + 9, 3) + 1));
    }
    if (fourcc === 'VP8X' && !canvas) {
      if (head.length < data + 10) return { need: data + 10 };
      canvas = sized(head.readUIntLE(data + 4, 3) + 1, head.readUIntLE(data + 7, 3) + 1);
    } else if (!canvas) return null;
    // Chunks are padded to an even length.
    pos = data + size + (size % 2);
  }
}

/** GIF: the logical screen, grown to hold the first frame where it reaches past it. */
function gifSize(head: Buffer): SizeRead {
  if (head.length < 13) return { need: 13 };
  const screen = { width: head.readUInt16LE(6), height: head.readUInt16LE(8) };
  const flags = head[10]!;
  let pos = 13 + (flags & 0x80 ? 3 * 2 ** ((flags & 7) + 1) : 0);
  for (;;) {
    if (head.length < pos + 1) return { need: pos + 1 };
    const block = head[pos];
    if (block === 0x2c) {
      if (head.length < pos + 9) return { need: pos + 9 };
      const frame = { width: head.readUInt16LE(pos + 1) + head.readUInt16LE(pos + 5), height: head.readUInt16LE(pos + 3) + head.readUInt16LE(pos + 7) };
      const size = larger(screen, frame)!;
      return sized(size.width, size.height);
    }
    if (block !== 0x21) return null;
    // An extension: its label, then sub-blocks, each its length first, up to one of length 0.
    pos += 2;
    for (;;) {
      if (head.length < pos + 1) return { need: pos + 1 };
      const length = head[pos]!;
      pos += 1 + length;
      if (length === 0) break;
    }
  }
}

/** BMP: the info header's width and height (a negative height is a top-down image of that many rows). */
function bmpSize(head: Buffer): SizeRead {
  if (head.length < 26) return { need: 26 };
  const headerSize = head.readUInt32LE(14);
  if (headerSize === 12) return sized(head.readUInt16LE(18), head.readUInt16LE(20));
  if (headerSize < 40) return null;
  return sized(head.readInt32LE(18), Math.abs(head.readInt32LE(22)));
}
