// The shape of the latent a .latent file holds, read from its safetensors header, and the most pixels, batch and frames it decodes to.

import type { HeaderRead } from './file-header.js';

/** What a loaded latent may become once decoded: its largest sides in pixels, its batch, and for a video latent its frames. */
export interface LatentSize {
  width: number;
  height: number;
  batch: number;
  /** The frames of a video latent (5 dimensions); undefined for a latent of images (4). */
  frames?: number;
}

/**
 * Pixels per latent pixel at most: the largest `spacial_downscale_ratio` of ComfyUI's latent formats
 * (comfy/latent_formats.py: 42 for Stable Cascade's stage C, 32 for LTXV and HunyuanImage 2.1, 8 for
 * most). The VAE that decodes a latent is not known to the gateway, so its size is taken as this many times its own.
 */
export const LATENT_SPATIAL_FACTOR = 42;

/** Frames per latent frame at most, after the first: the largest `temporal_downscale_ratio` of ComfyUI's video latent formats (8 for LTXV and Cosmos). */
export const LATENT_TEMPORAL_FACTOR = 8;

/** Bytes before a safetensors header: its length, a little-endian 64-bit integer. */
const LENGTH_BYTES = 8;

/** The longest header safetensors reads (its MAX_HEADER_SIZE): a file declaring a longer one does not load. */
export const SAFETENSORS_MAX_HEADER = 100_000_000;

/** Whether a file whose start asks for its first `need` bytes (see safetensorsHeader) declares a header safetensors would read. */
export function declaresLoadableHeader(need: number): boolean {
  return need - LENGTH_BYTES <= SAFETENSORS_MAX_HEADER;
}

/**
 * The JSON header a safetensors file starts with (after its length, 8 bytes little-endian): the object, as
 * `{ header }`; `{ need }` until the whole header is given; null when the start is not one (not JSON, not an object).
 */
export function safetensorsHeader(head: Buffer): HeaderRead<{ header: Record<string, unknown> }> {
  if (head.length < LENGTH_BYTES) return { need: LENGTH_BYTES };
  const end = LENGTH_BYTES + Number(head.readBigUInt64LE(0));
  if (head.length < end) return { need: end };
  let header: unknown;
  try {
    header = JSON.parse(head.toString('utf8', LENGTH_BYTES, end));
  } catch {
    return null;
  }
  return typeof header === 'object' && header !== null && !Array.isArray(header) ? { header: header as Record<string, unknown> } : null;
}

/**
 * What the latent LoadLatent loads from a safetensors file of this header may decode to: its `latent_tensor`,
 * [batch, channels, height, width] or [batch, channels, frames, height, width], as LatentSize reads it; null
 * when it has no such entry, or its shape is not 4 or 5 whole numbers.
 */
export function headerLatent(header: Record<string, unknown>): LatentSize | null {
  const tensor = Object.hasOwn(header, 'latent_tensor') ? header.latent_tensor : undefined;
  const shape = typeof tensor === 'object' && tensor !== null ? (tensor as { shape?: unknown }).shape : undefined;
  if (!Array.isArray(shape) || (shape.length !== 4 && shape.length !== 5) || !shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) return null;
  const [batch, , ...rest] = shape as number[];
  const [height, width] = rest.slice(-2) as [number, number];
  const size: LatentSize = { width: width * LATENT_SPATIAL_FACTOR, height: height * LATENT_SPATIAL_FACTOR, batch: batch! };
  if (rest.length === 3) size.frames = rest[0] === 0 ? 0 : (rest[0]! - 1) * LATENT_TEMPORAL_FACTOR + 1;
  return size;
}

/** What the start of a .latent file gives of the latent LoadLatent loads from it (see safetensorsHeader and headerLatent). */
export function latentHeaderSize(head: Buffer): HeaderRead<LatentSize> {
  const read = safetensorsHeader(head);
  return read === null || 'need' in read ? read : headerLatent(read.header);
}
