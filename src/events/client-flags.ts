// What a client socket asked for with its feature_flags message, read the way ComfyUI reads it.

import { parseJsonOrUndefined } from '../isolation/json-body.js';
import type { Frame } from '../proxy/websocket.js';

/**
 * ComfyUI interprets only a socket's first JSON object: when it is `{"type":"feature_flags",...}`, the
 * flags are the socket's and ComfyUI answers with its own. Any message before it that is not a JSON object
 * (`null`, a list, a number, text that is not JSON) fails its `data.get` and leaves the next one first.
 * Feed every client message to `read`.
 */
export class ClientFeatureFlags {
  private settled = false;
  private previewMetadata = false;

  /** Reads a message from the client; true when it is the client's feature_flags (the message ComfyUI answers). */
  read(frame: Frame): boolean {
    if (frame.isBinary || this.settled) return false;
    const message = parseJsonOrUndefined(frame.data) as { type?: unknown; data?: { supports_preview_metadata?: unknown } } | null | undefined;
    if (typeof message !== 'object' || message === null || Array.isArray(message)) return false;
    this.settled = true;
    if (message.type !== 'feature_flags') return false;
    this.previewMetadata = message.data?.supports_preview_metadata === true;
    return true;
  }

  /** Whether the client takes previews with metadata (type 4 frames) rather than plain ones (type 1). */
  wantsPreviewMetadata(): boolean {
    return this.previewMetadata;
  }
}
