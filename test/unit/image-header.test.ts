// The size of an image read from the start of its file (PNG, JPEG, WebP, GIF and BMP), and the images a whole file holds, built byte by byte here.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import { imageFrames } from '../../src/policy/image-frames.js';
import { imageHeaderSize } from '../../src/policy/image-header.js';
import { namesOneFile } from '../../src/policy/loaded-images.js';

/** A PNG chunk: length, type, data, CRC. */
function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  return Buffer.concat([length, typed, crc]);
}

/** A real grey PNG of `width` × `height`. */
function png(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 0, 0, 0, 0], 8);
  const rows = Buffer.alloc((width + 1) * height);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', deflateSync(rows)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A JPEG segment: marker, then its length (counting itself) and data. */
function jpegSegment(marker: number, data: Buffer): Buffer {
  const head = Buffer.from([0xff, marker, 0, 0]);
  head.writeUInt16BE(data.length + 2, 2);
  return Buffer.concat([head, data]);
}

/** An APP1 EXIF segment (big-endian TIFF) whose one tag is Orientation = `orientation`, padded by `padding` bytes. */
function exifSegment(orientation: number, padding = 0): Buffer {
  const tiff = Buffer.alloc(8 + 2 + 12 + 4 + padding);
  tiff.write('MM', 0, 'latin1');
  tiff.writeUInt16BE(42, 2);
  tiff.writeUInt32BE(8, 4);
  tiff.writeUInt16BE(1, 8);
  tiff.writeUInt16BE(0x0112, 10);
  tiff.writeUInt16BE(3, 12);
  tiff.writeUInt32BE(1, 14);
  tiff.writeUInt16BE(orientation, 18);
  return jpegSegment(0xe1, Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]));
}

/** A frame header (SOF0 by default) of `width` × `height`, three components. */
function frameHeader(width: number, height: number, marker = 0xc0): Buffer {
  const data = Buffer.alloc(15);
  data[0] = 8;
  data.writeUInt16BE(height, 1);
  data.writeUInt16BE(width, 3);
  data[5] = 3;
  return jpegSegment(marker, data);
}

/** The start of a JPEG: SOI, the segments given, then the start of a scan. */
function jpeg(...segments: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from([0xff, 0xd8]), ...segments, jpegSegment(0xda, Buffer.alloc(10)), Buffer.alloc(32)]);
}

/** A RIFF WebP holding the chunks given. */
function webp(...chunks: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from('WEBP', 'latin1'), ...chunks]);
  const head = Buffer.from('RIFF\0\0\0\0', 'latin1');
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
}

function riffChunk(fourcc: string, data: Buffer): Buffer {
  const head = Buffer.from(`${fourcc}\0\0\0\0`, 'latin1');
  head.writeUInt32LE(data.length, 4);
  return Buffer.concat([head, data, Buffer.alloc(data.length % 2)]);
}

function vp8x(width: number, height: number): Buffer {
  const data = Buffer.alloc(10);
  data[0] = 0x08; // EXIF present
  data.writeUIntLE(width - 1, 4, 3);
  data.writeUIntLE(height - 1, 7, 3);
  return riffChunk('VP8X', data);
}

function vp8(width: number, height: number): Buffer {
  const data = Buffer.alloc(10);
  data.set([0x9d, 0x01, 0x2a], 3);
  data.writeUInt16LE(width, 6);
  data.writeUInt16LE(height, 8);
  return riffChunk('VP8 ', data);
}

function vp8l(width: number, height: number): Buffer {
  const data = Buffer.alloc(5);
  data[0] = 0x2f;
  data.writeUInt32LE((width - 1) | ((height - 1) << 14), 1);
  return riffChunk('VP8L', data);
}

/** A GIF of a `width` × `height` screen with a global colour table, a comment, then one frame at `left`,`top` of `frame` size. */
function gif(width: number, height: number, frame = { left: 0, top: 0, width, height }): Buffer {
  const screen = Buffer.alloc(13);
  screen.write('GIF89a', 0, 'latin1');
  screen.writeUInt16LE(width, 6);
  screen.writeUInt16LE(height, 8);
  screen[10] = 0x80 | 1; // a table of 4 colours
  const comment = Buffer.from([0x21, 0xfe, 5, ...Buffer.from('hello'), 0]);
  const descriptor = Buffer.alloc(10);
  descriptor[0] = 0x2c;
  descriptor.writeUInt16LE(frame.left, 1);
  descriptor.writeUInt16LE(frame.top, 3);
  descriptor.writeUInt16LE(frame.width, 5);
  descriptor.writeUInt16LE(frame.height, 7);
  return Buffer.concat([screen, Buffer.alloc(12), comment, descriptor, Buffer.from([2, 1, 0, 0, 0x3b])]);
}

function bmp(width: number, height: number): Buffer {
  const head = Buffer.alloc(54);
  head.write('BM', 0, 'latin1');
  head.writeUInt32LE(40, 14);
  head.writeInt32LE(width, 18);
  head.writeInt32LE(height, 22);
  return head;
}

/** The size read from the whole buffer, and from each shorter start of it: never a wrong size, only a call for more bytes. */
function sizeOf(file: Buffer): ReturnType<typeof imageHeaderSize> {
  const whole = imageHeaderSize(file);
  for (let length = 0; length < file.length; length += 1) {
    const read = imageHeaderSize(file.subarray(0, length));
    if (read !== null && 'need' in read) assert.ok(read.need > length, `more than the ${length} bytes given`);
    else assert.deepEqual(read, whole, `from the first ${length} bytes`);
  }
  return whole;
}

describe('image header size', () => {
  test('PNG: the IHDR chunk', () => {
    assert.deepEqual(sizeOf(png(300, 200)), { width: 300, height: 200 });
    const renamed = png(4, 4);
    renamed.write('IHDX', 12, 'latin1');
    assert.equal(imageHeaderSize(renamed), null, 'no IHDR first');
    assert.equal(imageHeaderSize(png(0, 4)), null, 'a side of 0');
  });

  test('JPEG: the frame header after an APP1 EXIF segment (orientation 6), any SOFn, the largest of several, more bytes asked for', () => {
    assert.deepEqual(sizeOf(jpeg(exifSegment(6), frameHeader(640, 480))), { width: 640, height: 480 });
    assert.deepEqual(imageHeaderSize(jpeg(frameHeader(100, 50, 0xc2))), { width: 100, height: 50 }, 'progressive');
    assert.deepEqual(imageHeaderSize(jpeg(frameHeader(100, 50), frameHeader(30, 4000))), { width: 100, height: 4000 }, 'two frame headers');
    const filled = jpeg(Buffer.from([0xff, 0xff]), frameHeader(7, 9));
    assert.deepEqual(imageHeaderSize(filled), { width: 7, height: 9 }, 'fill bytes before a marker');
    assert.equal(imageHeaderSize(jpeg(jpegSegment(0xc4, Buffer.alloc(20)))), null, 'a scan without a frame header');
    assert.equal(imageHeaderSize(jpeg(frameHeader(100, 0))), null, 'a height given later (DNL)');
    const large = jpeg(exifSegment(1, 60_000), frameHeader(4000, 3000));
    assert.deepEqual(imageHeaderSize(large.subarray(0, 1000)), { need: 60_000 + 4 + 6 + 26 + 2 + 2 }, "the next segment's marker");
    assert.deepEqual(imageHeaderSize(large), { width: 4000, height: 3000 });
  });

  test('WebP: lossy, lossless, and an extended canvas read with its first image or frame', () => {
    assert.deepEqual(sizeOf(webp(vp8(320, 240))), { width: 320, height: 240 });
    assert.deepEqual(sizeOf(webp(vp8l(1000, 16))), { width: 1000, height: 16 });
    const extended = webp(vp8x(2048, 1536), riffChunk('ICCP', Buffer.alloc(301)), vp8(2048, 1536));
    assert.deepEqual(sizeOf(extended), { width: 2048, height: 1536 });
    assert.deepEqual(imageHeaderSize(webp(vp8x(64, 64), vp8l(5000, 64))), { width: 5000, height: 64 }, 'an image larger than its canvas');
    const frame = Buffer.alloc(16);
    frame.writeUIntLE(50, 0, 3);
    frame.writeUIntLE(99, 6, 3);
    frame.writeUIntLE(99, 9, 3);
    assert.deepEqual(imageHeaderSize(webp(vp8x(128, 128), riffChunk('ANIM', Buffer.alloc(6)), riffChunk('ANMF', frame))), { width: 200, height: 128 });
    assert.equal(imageHeaderSize(webp(riffChunk('ICCP', Buffer.alloc(4)), vp8(8, 8))), null, 'a simple file starts with its image');
  });

  test('GIF: the logical screen, grown to a first frame that reaches past it', () => {
    assert.deepEqual(sizeOf(gif(320, 200)), { width: 320, height: 200 });
    assert.deepEqual(imageHeaderSize(gif(16, 16, { left: 10, top: 0, width: 3000, height: 8 })), { width: 3010, height: 16 });
  });

  test('BMP: the info header, a top-down image by its number of rows; anything else is not read', () => {
    assert.deepEqual(sizeOf(bmp(640, -480)), { width: 640, height: 480 });
    assert.equal(imageHeaderSize(Buffer.from('<svg width="9999" height="9999"></svg>')), null);
    assert.equal(imageHeaderSize(Buffer.alloc(100)), null);
    assert.deepEqual(imageHeaderSize(Buffer.alloc(3)), { need: 12 });
  });
});

describe('the images LoadImage makes a batch of, from a whole file', () => {
  /** A whole baseline JPEG: SOI, `segments`, a frame header, a scan (its data with a stuffed 0xFF and a restart marker), EOI. */
  const wholeJpeg = (...segments: Buffer[]): Buffer =>
    Buffer.concat([
      Buffer.from([0xff, 0xd8]),
      ...segments,
      frameHeader(64, 48),
      jpegSegment(0xda, Buffer.alloc(10)),
      Buffer.from([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56]),
      Buffer.from([0xff, 0xd9]),
    ]);

  test('a still PNG, a JPEG or a simple WebP that ends where the file does holds one image', () => {
    assert.equal(imageFrames(png(64, 48)), 1);
    assert.equal(imageFrames(wholeJpeg()), 1);
    assert.equal(imageFrames(wholeJpeg(exifSegment(6, 100))), 1, 'with EXIF');
    assert.equal(imageFrames(webp(vp8(320, 240))), 1);
    assert.equal(imageFrames(webp(vp8l(1000, 16))), 1);
  });

  test('an animation, an image with more after it, a cut file and the other formats are not known', () => {
    const still = png(64, 48);
    // The signature (8 bytes) and IHDR (25) come first.
    const animated = Buffer.concat([still.subarray(0, 33), pngChunk('acTL', Buffer.from([0, 0, 3, 232, 0, 0, 0, 0])), still.subarray(33)]);
    assert.equal(imageFrames(animated), undefined, 'an animated PNG of 1000 frames');
    const late = Buffer.concat([still.subarray(0, still.length - 12), pngChunk('fcTL', Buffer.alloc(26)), still.subarray(still.length - 12)]);
    assert.equal(imageFrames(late), undefined, 'a frame control chunk after the image data');
    assert.equal(imageFrames(Buffer.concat([still, still])), undefined, "a PNG appended to another: PyAV's image demuxer reads both");
    assert.equal(imageFrames(Buffer.concat([still, Buffer.alloc(1)])), undefined, 'a byte after IEND');
    assert.equal(imageFrames(still.subarray(0, still.length - 1)), undefined, 'cut before the end of IEND');
    const longChunk = Buffer.from(still);
    longChunk.writeUInt32BE(0xffffffff, 33);
    assert.equal(imageFrames(longChunk), undefined, 'a chunk longer than the file');
    assert.equal(imageFrames(webp(vp8x(128, 128), riffChunk('ANIM', Buffer.alloc(6)), riffChunk('ANMF', Buffer.alloc(16)))), undefined, 'an extended WebP');
    assert.equal(imageFrames(Buffer.concat([webp(vp8(8, 8)), webp(vp8(8, 8))])), undefined, 'a WebP appended to another');
    assert.equal(imageFrames(gif(64, 64)), undefined, "a GIF's frames are only known by decoding it");
    assert.equal(imageFrames(Buffer.concat([wholeJpeg(), wholeJpeg()])), undefined, 'a JPEG appended to another');
    assert.equal(imageFrames(Buffer.concat([wholeJpeg(), Buffer.alloc(4)])), undefined, 'bytes after EOI');
    assert.equal(imageFrames(wholeJpeg().subarray(0, -1)), undefined, 'cut before EOI');
    assert.equal(imageFrames(jpeg(frameHeader(64, 64))), undefined, 'a scan that never ends');
    const mpf = jpegSegment(0xe2, Buffer.concat([Buffer.from('MPF\0', 'latin1'), Buffer.alloc(16)]));
    assert.equal(imageFrames(wholeJpeg(mpf)), undefined, 'a Multi-Picture file, which Pillow opens as MPO');
    const inner = wholeJpeg();
    const hidden = Buffer.concat([inner.subarray(0, -2), Buffer.from([0xff, 0xd8, 0, 4, 0, 0]), inner.subarray(-2)]);
    assert.equal(imageFrames(hidden), undefined, 'a second SOI');
    assert.equal(imageFrames(bmp(64, 64)), undefined);
  });

  test('a name FFmpeg reads as a pattern of files (a numbered sequence, a glob) does not name one file', () => {
    assert.equal(namesOneFile({ filename: 'photo.png', subfolder: 'shots', type: 'input' }), true);
    for (const filename of ['frame%d.png', 'frame%03d.png', '*.png', 'a?.png', 'a[0-9].png', 'a{1,2}.png']) {
      assert.equal(namesOneFile({ filename, subfolder: '', type: 'input' }), false, filename);
    }
    assert.equal(namesOneFile({ filename: 'a.png', subfolder: 'run%d', type: 'input' }), false, 'in a subfolder too');
  });
});
