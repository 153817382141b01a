// ComfyUI's binary WebSocket frames: their type, the metadata of a type 4 preview, and conversions between preview types.

/** A latent preview or `SaveImageWebsocket` image: u32 image format (1 JPEG, 2 PNG), then the image. */
export const PREVIEW_IMAGE = 1;
/** Progress text of a node: u32 node-id length, the node id, then the text. ComfyUI broadcasts it to every socket. */
export const TEXT = 3;
/** A preview that names its prompt: u32 JSON length, JSON metadata (`prompt_id`, `node_id`, `image_type`, …), then the image. */
export const PREVIEW_IMAGE_WITH_METADATA = 4;

/** The event type of a binary frame (its first 4 bytes, big-endian), or null for a frame too short to have one. */
export function binaryFrameType(frame: Buffer): number | null {
  return frame.length >= 4 ? frame.readUInt32BE(0) : null;
}

/** A type 4 preview taken apart. */
export interface PreviewWithMetadata {
  metadata: Record<string, unknown>;
  /** The image bytes after the metadata. */
  image: Buffer;
}

/** Reads a type 4 preview; null when the frame is another type or its metadata is not a JSON object. */
export function readPreviewWithMetadata(frame: Buffer): PreviewWithMetadata | null {
  if (frame.length < 8 || binaryFrameType(frame) !== PREVIEW_IMAGE_WITH_METADATA) return null;
  const end = 8 + frame.readUInt32BE(4);
  if (end > frame.length) return null;
  let metadata: unknown;
  try {
    metadata = JSON.parse(frame.subarray(8, end).toString());
  } catch {
    return null;
  }
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) return null;
  return { metadata: metadata as Record<string, unknown>, image: frame.subarray(end) };
}

/** The type 1 frame a client that did not ask for preview metadata gets for a type 4 preview. */
export function withoutPreviewMetadata(preview: PreviewWithMetadata): Buffer {
  const header = Buffer.alloc(8);
  writePlainHeader(header, 0, preview);
  return Buffer.concat([header, preview.image]);
}

/**
 * The same type 1 frame without a copy of the image: its header is written over the end of the
 * metadata in `frame`, the type 4 frame `preview` was read from, which no longer reads as that frame.
 */
export function overwriteWithoutPreviewMetadata(frame: Buffer, preview: PreviewWithMetadata): Buffer {
  const start = preview.image.byteOffset - frame.byteOffset - 8;
  writePlainHeader(frame, start, preview);
  return frame.subarray(start);
}

/** A type 1 frame's header (type, then image format: 1 JPEG, 2 PNG) at `offset` of `target`. */
function writePlainHeader(target: Buffer, offset: number, preview: PreviewWithMetadata): void {
  target.writeUInt32BE(PREVIEW_IMAGE, offset);
  target.writeUInt32BE(preview.metadata.image_type === 'image/png' ? 2 : 1, offset + 4);
}

/** A type 4 frame carrying `metadata` and the preview's image. */
export function withPreviewMetadata(metadata: Record<string, unknown>, image: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(metadata));
  const header = Buffer.alloc(8);
  header.writeUInt32BE(PREVIEW_IMAGE_WITH_METADATA, 0);
  header.writeUInt32BE(json.length, 4);
  return Buffer.concat([header, json, image]);
}

/** The feature_flags message that asks ComfyUI for type 4 previews on a socket (sent as the socket's first message). */
export const ASK_FOR_PREVIEW_METADATA = JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } });
