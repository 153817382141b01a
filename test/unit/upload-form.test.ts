// Unit tests of UploadFormReader: parts read however the body is cut into chunks, bytes passed on unchanged, and the form's end held back from a refused form.

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { imageHeadOfUpload } from '../../src/isolation/overwrite-size.js';
import type { FileHead, FormPart } from '../../src/isolation/upload-form.js';
import { multipartBoundary, UploadFormReader } from '../../src/isolation/upload-form.js';
import { headerBytesWanted, headerSize, MAX_HEADER_BYTES } from '../../src/policy/image-header.js';

const BOUNDARY = 'b0undary';
const FORM = Buffer.from(
  `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a b.png"\r\nContent-Type: image/png\r\n\r\n` +
    `PNG\r\n--b0und almost a delimiter\r\n\r\n--` +
    `\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput` +
    `\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name=type\r\n\r\noutput` +
    `\r\n--${BOUNDARY}\r\ncontent-disposition: form-data; name="subfolder"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsüb` +
    `\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="empty"\r\n\r\n` +
    `\r\n--${BOUNDARY}--\r\nepilogue`,
);

/** Streams `body` through a reader in chunks of `size` bytes; resolves what came out, or rejects with the refusal. */
async function read(
  body: Buffer,
  size: number | readonly number[],
  check: (parts: ReadonlyMap<string, FormPart>) => void = () => undefined,
  fileHead?: FileHead,
): Promise<{ out: Buffer; parts: ReadonlyMap<string, FormPart> }> {
  const chunks =
    typeof size === 'number' ? Array.from({ length: Math.ceil(body.length / size) }, (_, i) => body.subarray(i * size, (i + 1) * size)) : cutAt(body, size);
  const reader = new UploadFormReader(BOUNDARY, check, fileHead);
  const out: Buffer[] = [];
  reader.on('data', (chunk: Buffer) => out.push(chunk));
  await new Promise<void>((resolve, reject) => {
    reader.once('end', resolve);
    reader.once('error', reject);
    Readable.from(chunks).pipe(reader);
  });
  return { out: Buffer.concat(out), parts: reader.parts };
}

/** `body` cut at the given offsets (sorted, repeats dropped). */
function cutAt(body: Buffer, offsets: readonly number[]): Buffer[] {
  const cuts = [...new Set([0, ...offsets, body.length])].sort((a, b) => a - b);
  return cuts.slice(1).map((end, i) => body.subarray(cuts[i], end));
}

const FORM_PARTS = {
  image: { filename: 'a b.png', value: '' },
  type: { filename: null, value: 'input' },
  subfolder: { filename: null, value: 'süb' },
  empty: { filename: null, value: '' },
};

describe('UploadFormReader', () => {
  for (const size of [1, 2, 3, 7, 13, 64, FORM.length]) {
    test(`chunks of ${size} bytes: the first part of each name, and the body passed on unchanged`, async () => {
      const { out, parts } = await read(FORM, size);
      assert.deepEqual(out, FORM);
      assert.deepEqual(Object.fromEntries(parts), FORM_PARTS);
    });
  }

  test('chunks cut anywhere: the same parts, and the body passed on unchanged', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: FORM.length - 1 }), { maxLength: 24 }), async (offsets) => {
        const { out, parts } = await read(FORM, offsets);
        assert.deepEqual(out, FORM);
        assert.deepEqual(Object.fromEntries(parts), FORM_PARTS);
      }),
      { numRuns: 500 },
    );
  });

  test('file bytes with pieces of delimiters in them, cut anywhere: passed on unchanged, the parts read', async () => {
    const content = fc.string({ unit: fc.constantFrom('\r', '\n', '-', 'b', '0', 'x', `\r\n--${BOUNDARY.slice(0, 4)}`), maxLength: 60 });
    await fc.assert(
      fc.asyncProperty(content, fc.array(fc.nat(), { maxLength: 12 }), async (text, cuts) => {
        const form = Buffer.from(
          `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="f.bin"\r\n\r\n${text}` +
            `\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n--${BOUNDARY}--\r\n`,
        );
        const { out, parts } = await read(
          form,
          cuts.map((cut) => 1 + (cut % (form.length - 1))),
        );
        assert.deepEqual(out, form);
        assert.deepEqual(Object.fromEntries(parts), { image: { filename: 'f.bin', value: '' }, type: { filename: null, value: 'input' } });
      }),
      { numRuns: 1000 },
    );
  });

  test("a file's chunks go on whole, one piece each, unless one ends in what could begin a delimiter", async () => {
    const head = Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="f.bin"\r\n\r\n`);
    const file = [Buffer.alloc(1000, 'x'), Buffer.alloc(1000, 'y'), Buffer.concat([Buffer.alloc(990, 'z'), Buffer.from('\r\n--b0')]), Buffer.alloc(1000, 'w')];
    const end = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
    const reader = new UploadFormReader(BOUNDARY, () => undefined);
    const pieces: Buffer[] = [];
    reader.on('data', (chunk: Buffer) => pieces.push(chunk));
    await new Promise<void>((resolve, reject) => {
      reader.once('end', resolve);
      reader.once('error', reject);
      Readable.from([head, ...file, end]).pipe(reader);
    });
    assert.deepEqual(Buffer.concat(pieces), Buffer.concat([head, ...file, end]));
    // The 'x' and 'y' chunks whole; the 'z' chunk without the six bytes that could begin a delimiter, which go on before the 'w' chunk.
    const lengths = pieces.map((piece) => piece.length);
    assert.deepEqual(lengths.slice(-6), [1000, 1000, 990, 6, 1000, end.length]);
    assert.equal(
      lengths.slice(0, -6).reduce((sum, length) => sum + length, 0),
      head.length,
    );
  });

  test('a refused form is passed on without its closing delimiter and what follows it', async () => {
    for (const size of [1, 5, FORM.length]) {
      const seen: Buffer[] = [];
      const reader = new UploadFormReader(BOUNDARY, () => {
        throw new Error('refused');
      });
      reader.on('data', (chunk: Buffer) => seen.push(chunk));
      const done = new Promise((resolve) => reader.once('error', resolve));
      Readable.from(Array.from({ length: Math.ceil(FORM.length / size) }, (_, i) => FORM.subarray(i * size, (i + 1) * size))).pipe(reader);
      assert.equal(((await done) as Error).message, 'refused');
      const out = Buffer.concat(seen).toString('latin1');
      assert.equal(out, FORM.toString('latin1').slice(0, FORM.indexOf(`\r\n--${BOUNDARY}--`)), `chunks of ${size}`);
      assert.equal(reader.refusal?.message, 'refused');
    }
  });

  test('parts that aiohttp could read another way refuse the form with 400', async () => {
    const part = (headers: string): Buffer => Buffer.from(`--${BOUNDARY}\r\n${headers}\r\n\r\nx\r\n--${BOUNDARY}--\r\n`);
    for (const headers of [
      'Content-Disposition: form-data; name="type"; name*=utf-8\'\'type',
      'Content-Disposition: form-data; name="a\\"b"',
      'Content-Disposition: form-data; name="a;b"',
      'Content-Disposition: form-data; name="image"; filename="/etc/x.png"',
      'Content-Disposition: form-data; name="x"; name="y"',
      'Content-Disposition: attachment; name="x"',
      'Content-Disposition: form-data',
      'Content-Disposition: form-data; name="type"\r\nContent-Transfer-Encoding: base64',
      'Content-Disposition: form-data; name="type"\r\nContent-Type: text/plain; charset=utf-16',
      'Content-Disposition: form-data; name="type"\r\nContent-Length: 1',
      'Content-Disposition: form-data; name="type"\r\n continued',
      'Content-Disposition: form-data; name="a"\r\nContent-Disposition: form-data; name="b"',
      'X-Note: a\nContent-Disposition: form-data; name="image"; filename="other.png"\r\nContent-Disposition: form-data; name="x"',
      'Content-Disposition: form-data; name="x"\rX-Note: a',
      'Content-Disposition: form-data; name="_charset_"',
    ]) {
      await assert.rejects(read(part(headers), 4), { code: 'INVALID_REQUEST', status: 400 }, headers);
    }
    await assert.rejects(
      read(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="x"\r\n\r\nno end`), 4),
      { code: 'INVALID_REQUEST' },
      'no closing delimiter',
    );
    await assert.rejects(read(Buffer.from(`--${BOUNDARY}junk\r\n`), 4), { code: 'INVALID_REQUEST' }, 'a delimiter line with more');
    // aiohttp reads header bytes that are not UTF-8 as surrogates, which Python writes back as those bytes: a name the gateway would read as U+FFFD.
    const withName = (name: Buffer): Buffer =>
      Buffer.concat([
        Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="`),
        name,
        Buffer.from(`"\r\n\r\nx\r\n--${BOUNDARY}--\r\n`),
      ]);
    await assert.rejects(read(withName(Buffer.from([0x61, 0xff, 0x2e, 0x70, 0x6e, 0x67])), 4), { code: 'INVALID_REQUEST' }, 'a file name that is not UTF-8');
    assert.equal((await read(withName(Buffer.from('café.png')), 4)).parts.get('image')?.filename, 'café.png', 'a UTF-8 name is read as it is');
    for (const preamble of ['x\n', '\r\n', 'preamble\r\n']) {
      await assert.rejects(
        read(Buffer.concat([Buffer.from(preamble), part('Content-Disposition: form-data; name="x"')]), 4),
        { code: 'INVALID_REQUEST' },
        preamble,
      );
    }
  });

  describe("a file's start kept (FileHead)", () => {
    const IMAGE_HEAD: FileHead = { part: 'image', wanted: headerBytesWanted };
    /** A form of text fields and files, in order: `[name, text]` or `[name, filename, bytes]`. */
    const form = (parts: Array<[string, string] | [string, string, Buffer]>): Buffer =>
      Buffer.concat([
        ...parts.map(([name, text, bytes]) =>
          Buffer.concat([
            Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"${bytes ? `; filename="${text}"` : ''}\r\n\r\n`),
            bytes ?? Buffer.from(text),
            Buffer.from('\r\n'),
          ]),
        ),
        Buffer.from(`--${BOUNDARY}--\r\n`),
      ]);
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452000008000000040008000000', 'hex'), Buffer.alloc(4000, 7)]);
    /** A JPEG of 3000 × 2000 whose frame header follows 120 KB of metadata. */
    const segment = (marker: number, length: number): Buffer =>
      Buffer.concat([Buffer.from([0xff, marker, length >> 8, length & 0xff]), Buffer.alloc(length - 2)]);
    const jpeg = Buffer.concat([
      Buffer.from([0xff, 0xd8]),
      segment(0xe1, 60_000),
      segment(0xe2, 60_000),
      Buffer.from([0xff, 0xc0, 0, 11, 8, 2000 >> 8, 2000 & 0xff, 3000 >> 8, 3000 & 0xff, 1, 1, 0x11, 0]),
      segment(0xda, 10),
      Buffer.alloc(500, 1),
    ]);

    test('the first file part of the name, as many bytes as its header needs, however the body is cut; the body passed on unchanged', async () => {
      const body = form([
        ['overwrite', 'true'],
        ['image', 'a.jpg', jpeg],
        ['image', 'b.png', png],
      ]);
      await fc.assert(
        fc.asyncProperty(fc.array(fc.integer({ min: 1, max: body.length - 1 }), { maxLength: 40 }), async (offsets) => {
          const { out, parts } = await read(body, offsets, undefined, IMAGE_HEAD);
          assert.deepEqual(out, body);
          const head = parts.get('image')!.head!;
          assert.deepEqual(head, jpeg.subarray(0, head.length), 'the start of the first image');
          assert.deepEqual(headerSize(head), { width: 3000, height: 2000 });
        }),
        { numRuns: 200 },
      );
      const { parts } = await read(form([['image', 'b.png', png]]), 1, undefined, IMAGE_HEAD);
      assert.deepEqual(parts.get('image')!.head, png.subarray(0, 24), "a PNG's signature and IHDR, byte by byte");
    });

    test('at most MAX_HEADER_BYTES of a header that goes on, the whole of a file that ends first, nothing of other parts', async () => {
      const endless = Buffer.concat([Buffer.from([0xff, 0xd8]), ...Array.from({ length: 40 }, () => segment(0xe1, 0xffff))]);
      const { parts } = await read(form([['image', 'deep.jpg', endless]]), 65_536, undefined, IMAGE_HEAD);
      assert.ok(parts.get('image')!.head!.length <= MAX_HEADER_BYTES, `${parts.get('image')!.head!.length} bytes kept`);
      assert.equal(headerSize(parts.get('image')!.head!), undefined);
      const cut = png.subarray(0, 20);
      const short = await read(
        form([
          ['image', 'cut.png', cut],
          ['mask', 'm.png', png],
          ['note', 'y'],
        ]),
        3,
        undefined,
        IMAGE_HEAD,
      );
      assert.deepEqual(short.parts.get('image')!.head, cut);
      assert.equal(short.parts.get('mask')!.head, undefined);
      const field = await read(form([['image', 'text field']]), 3, undefined, IMAGE_HEAD);
      assert.equal(field.parts.get('image')!.head, undefined, 'a field of the name is not a file');
    });

    test('for an upload, kept under a size limit unless an overwrite field before the image says it does not overwrite', async () => {
      const headOf = async (policy: Record<string, number> | null, parts: Array<[string, string] | [string, string, Buffer]>): Promise<Buffer | undefined> =>
        (await read(form(parts), 7, undefined, imageHeadOfUpload(policy))).parts.get('image')!.head;
      const image: [string, string, Buffer] = ['image', 'a.png', png];
      assert.equal((await headOf({ max_width: 512 }, [image, ['overwrite', 'false']]))?.length, 24, 'overwrite may still come after');
      assert.equal((await headOf({ max_height: 512 }, [['overwrite', '1'], image]))?.length, 24);
      assert.equal((await headOf({ max_width: 512 }, [['overwrite', 'false'], image]))?.length, 0);
      assert.deepEqual(await headOf({ max_width: 512, max_batch_size: 2 }, [['overwrite', '1'], image]), png, 'max_batch_size: the whole file');
      assert.equal(await headOf({ max_steps: 20 }, [['overwrite', 'true'], image]), undefined, 'no size limit: nothing kept');
      assert.equal(await headOf(null, [image]), undefined);
    });
  });

  test('only multipart/form-data with a plain boundary is read', () => {
    assert.equal(multipartBoundary('multipart/form-data; boundary=abc'), 'abc');
    assert.equal(multipartBoundary('Multipart/Form-Data;boundary="a b:c"'), 'a b:c');
    for (const type of [
      undefined,
      'application/x-www-form-urlencoded',
      'multipart/form-data',
      'multipart/form-data; boundary=a; charset=utf-8',
      'multipart/mixed; boundary=a',
      `multipart/form-data; boundary=${'a'.repeat(71)}`,
    ]) {
      assert.equal(multipartBoundary(type), null, String(type));
    }
  });
});
