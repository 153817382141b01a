// Unit tests of UploadFormReader: parts read however the body is cut into chunks, bytes passed on unchanged, and the form's end held back from a refused form.

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import type { FormPart } from '../../src/isolation/upload-form.js';
import { multipartBoundary, UploadFormReader } from '../../src/isolation/upload-form.js';

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
): Promise<{ out: Buffer; parts: ReadonlyMap<string, FormPart> }> {
  const chunks =
    typeof size === 'number' ? Array.from({ length: Math.ceil(body.length / size) }, (_, i) => body.subarray(i * size, (i + 1) * size)) : cutAt(body, size);
  const reader = new UploadFormReader(BOUNDARY, check);
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
