// How many images ComfyUI's LoadImage stacks into one batch from a whole image file, where the file shows it soundly.

import { END_OF_IMAGE, STANDALONE, START_OF_SCAN } from './image-header.js';

/** Most of a file read whole to learn how many images it holds: a larger file's count is not known. */
export const MAX_WHOLE_IMAGE_BYTES = 4 * 1024 * 1024;

/**
 * How many images LoadImage makes of the whole file `file` (read to its end): 1 for a file that is exactly one
 * still PNG (its chunks, none of them an animation chunk, up to IEND at the file's end), one JPEG (its segments
 * and scans up to EOI at the file's end, without the MPF segment by which Pillow opens more images) or one
 * simple WebP (`VP8 ` or `VP8L`, its RIFF size the file's); undefined, not known, for anything else. ComfyUI
 * decodes the file with PyAV, whose image demuxers read each image appended after the first as one more frame,
 * and an animated PNG, GIF or WebP as all its frames; Pillow (older releases, or when PyAV decodes nothing)
 * stacks every frame of an animation.
 */
export function imageFrames(file: Buffer): number | undefined {
  if (file.toString('latin1', 0, 8) === '\x89PNG\r\n\x1a\n') return stillPng(file) ? 1 : undefined;
  if (file[0] === 0xff && file[1] === 0xd8) return singleJpeg(file) ? 1 : undefined;
  if (file.toString('latin1', 0, 4) === 'RIFF' && file.toString('latin1', 8, 12) === 'WEBP') return simpleWebp(file) ? 1 : undefined;
  return undefined;
}

/** PNG chunks that make an animation (APNG): its control, and each frame's control and data. */
const ANIMATION_CHUNKS: ReadonlySet<string> = new Set(['acTL', 'fcTL', 'fdAT']);

/** Whether a PNG file's chunks, walked from its signature, hold no animation chunk and end with IEND at the file's end. */
function stillPng(file: Buffer): boolean {
  let pos = 8;
  while (pos + 12 <= file.length) {
    const length = file.readUInt32BE(pos);
    const type = file.toString('latin1', pos + 4, pos + 8);
    const end = pos + 12 + length;
    if (end > file.length || ANIMATION_CHUNKS.has(type)) return false;
    if (type === 'IEND') return end === file.length;
    pos = end;
  }
  return false;
}

const START_OF_IMAGE = 0xd8;
/** The APP2 segment of a Multi-Picture Format file, which lists further images (Pillow then opens it as MPO). */
const MPF = (marker: number, data: Buffer): boolean => marker === 0xe2 && data.toString('latin1', 0, 4) === 'MPF\0';

/**
 * Whether a JPEG file, walked from SOI, is its segments and scans up to EOI at the file's end, with no MPF segment
 * and no second SOI: each scan's entropy-coded data runs to the next marker (a 0xFF byte followed by neither
 * 0x00, a stuffed byte, nor a restart marker).
 */
function singleJpeg(file: Buffer): boolean {
  let pos = 2;
  for (;;) {
    if (pos + 2 > file.length || file[pos] !== 0xff) return false;
    const marker = file[pos + 1]!;
    if (marker === 0xff) {
      pos += 1;
      continue;
    }
    if (marker === END_OF_IMAGE) return pos + 2 === file.length;
    // Another image starts.
    if (marker === START_OF_IMAGE) return false;
    if (STANDALONE(marker)) {
      pos += 2;
      continue;
    }
    if (pos + 4 > file.length) return false;
    const end = pos + 2 + file.readUInt16BE(pos + 2);
    if (end > file.length || end < pos + 4 || MPF(marker, file.subarray(pos + 4, end))) return false;
    pos = marker === START_OF_SCAN ? entropyEnd(file, end) : end;
  }
}

/** Where a scan's entropy-coded data that starts at `pos` ends: at the next marker, or the file's end. */
function entropyEnd(file: Buffer, pos: number): number {
  for (let at = pos; at + 1 < file.length; at += 1) {
    const next = file[at + 1]!;
    if (file[at] === 0xff && next !== 0x00 && !STANDALONE(next)) return at;
  }
  return file.length;
}

/** Whether a WebP file is one lossy or lossless image (no VP8X, so no animation) whose RIFF size is the file's. */
function simpleWebp(file: Buffer): boolean {
  if (file.length < 16 || file.readUInt32LE(4) + 8 !== file.length) return false;
  return ['VP8 ', 'VP8L'].includes(file.toString('latin1', 12, 16));
}
