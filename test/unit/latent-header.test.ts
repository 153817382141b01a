// The size of a latent read from a .latent file's safetensors header: its shape, the pixels, batch and frames it may decode to, and headers refused.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bytesWantedBy, headerReadBy, MAX_HEADER_BYTES } from '../../src/policy/file-header.js';
import { latentHeaderSize } from '../../src/policy/latent-header.js';

/** A safetensors file's start: the header's length, then the header (`text`, or `header` as JSON). */
function safetensors(header: unknown, text = JSON.stringify(header)): Buffer {
  const json = Buffer.from(text);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, Buffer.alloc(16)]);
}

/** A header whose `latent_tensor` has `shape`, as ComfyUI's SaveLatent writes it. */
const latent = (shape: unknown): unknown => ({
  __metadata__: { prompt: '{}' },
  latent_format_version_0: { dtype: 'F32', shape: [0], data_offsets: [0, 0] },
  latent_tensor: { dtype: 'F32', shape, data_offsets: [0, 16] },
});

describe('latent header', () => {
  test('a latent of images is held to 42 pixels to each of its own, and its batch', () => {
    assert.deepEqual(latentHeaderSize(safetensors(latent([2, 4, 16, 24]))), { width: 24 * 42, height: 16 * 42, batch: 2 });
  });

  test('a video latent also has its frames: 8 to each latent frame after the first', () => {
    assert.deepEqual(latentHeaderSize(safetensors(latent([1, 128, 4, 8, 12]))), { width: 12 * 42, height: 8 * 42, batch: 1, frames: 25 });
    assert.deepEqual(latentHeaderSize(safetensors(latent([1, 16, 0, 8, 8]))), { width: 8 * 42, height: 8 * 42, batch: 1, frames: 0 });
  });

  test('the whole header is wanted before it is read, and one past MAX_HEADER_BYTES is not read', () => {
    const file = safetensors(latent([1, 4, 8, 8]));
    assert.deepEqual(latentHeaderSize(file.subarray(0, 5)), { need: 8 });
    const need = file.readUInt32LE(0) + 8;
    assert.deepEqual(latentHeaderSize(file.subarray(0, 8)), { need });
    assert.equal(headerReadBy(latentHeaderSize, file.subarray(0, need - 1)), undefined);
    assert.deepEqual(headerReadBy(latentHeaderSize, file.subarray(0, need)), { width: 336, height: 336, batch: 1 });
    const long = Buffer.alloc(8);
    long.writeBigUInt64LE(BigInt(MAX_HEADER_BYTES));
    assert.equal(bytesWantedBy(latentHeaderSize, long), 0);
    long.writeBigUInt64LE(2n ** 64n - 1n);
    assert.equal(bytesWantedBy(latentHeaderSize, long), 0);
  });

  test('a header that is not JSON, or holds no latent_tensor of 4 or 5 whole dimensions, is not read', () => {
    for (const [what, file] of [
      ['not JSON', safetensors(null, '{"latent_tensor": ')],
      ['a list', safetensors([latent([1, 4, 8, 8])])],
      ['no latent_tensor', safetensors({ samples: { dtype: 'F32', shape: [1, 4, 8, 8], data_offsets: [0, 16] } })],
      ['an audio latent', safetensors(latent([1, 64, 100]))],
      ['six dimensions', safetensors(latent([1, 1, 4, 2, 8, 8]))],
      ['a fraction', safetensors(latent([1, 4, 8.5, 8]))],
      ['a negative side', safetensors(latent([1, 4, -8, 8]))],
      ['a side as text', safetensors(latent([1, 4, '8', 8]))],
      ['no shape', safetensors({ latent_tensor: null })],
    ] as const) {
      assert.equal(latentHeaderSize(file), null, what);
    }
  });
});
