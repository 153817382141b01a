// What a user key's WebSocket may receive: status broadcasts, and events and previews of its own prompts, nothing else.

import type { Frame, RelayHooks } from '../proxy/websocket.js';
import type { OwnershipStore } from '../store/types.js';
import { outputFileIds } from './files.js';

/** Binary frame types. */
const PREVIEW_IMAGE = 1;
const PREVIEW_IMAGE_WITH_METADATA = 4;

const ASK_FOR_PREVIEW_METADATA = JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } });

/**
 * Hooks for a user key's socket. The gateway itself tells ComfyUI, first thing, that this socket takes
 * previews with metadata, so every targeted preview names its prompt and can be checked; a client that
 * did not ask for metadata gets it converted back to the plain preview frame. The client's own
 * `feature_flags` is answered by the gateway with ComfyUI's flags. Messages that cannot be attributed
 * to one of the key's prompts (broadcast previews, text frames, `display_component`, unknown types)
 * are dropped.
 */
export function userSocketHooks(ownership: OwnershipStore, keyId: string): RelayHooks {
  let clientWantsMetadata = false;
  let clientSentJson = false;
  let serverFlags: string | null = null;
  let pendingFlagsReply: ((text: string) => void) | null = null;
  const ownPrompt = (promptId: unknown): boolean => typeof promptId === 'string' && ownership.ownerOf('prompt', promptId) === keyId;

  function fromUpstreamText(frame: Frame): Frame | null {
    const message = parse(frame.data) as { type?: unknown; data?: Record<string, unknown> } | undefined;
    if (!message || typeof message.type !== 'string') return null;
    if (message.type === 'status') return frame;
    if (message.type === 'feature_flags') {
      serverFlags = frame.data.toString();
      pendingFlagsReply?.(serverFlags);
      pendingFlagsReply = null;
      return null;
    }
    const data = message.data ?? {};
    // ComfyUI sends `executing` without a prompt_id only to the socket whose prompt is running.
    if (message.type === 'executing' && !('prompt_id' in data)) return frame;
    if (!ownPrompt(data.prompt_id)) return null;
    if (message.type === 'executed') {
      for (const id of outputFileIds(data.output)) void ownership.claim('file', id, keyId).catch(() => undefined);
    }
    return frame;
  }

  function fromUpstreamBinary(frame: Frame): Frame | null {
    const bytes = frame.data as Buffer;
    if (bytes.length < 8 || bytes.readUInt32BE(0) !== PREVIEW_IMAGE_WITH_METADATA) return null;
    const metadataLength = bytes.readUInt32BE(4);
    const metadata = parse(bytes.subarray(8, 8 + metadataLength)) as { prompt_id?: unknown; image_type?: unknown } | undefined;
    if (!ownPrompt(metadata?.prompt_id)) return null;
    if (clientWantsMetadata) return frame;
    const header = Buffer.alloc(8);
    header.writeUInt32BE(PREVIEW_IMAGE, 0);
    header.writeUInt32BE(metadata!.image_type === 'image/png' ? 2 : 1, 4);
    return { data: Buffer.concat([header, bytes.subarray(8 + metadataLength)]), isBinary: true };
  }

  return {
    onUpstreamOpen(sendUpstream) {
      sendUpstream(ASK_FOR_PREVIEW_METADATA);
    },
    fromUpstream: (frame) => (frame.isBinary ? fromUpstreamBinary(frame) : fromUpstreamText(frame)),
    fromClient(frame, replyToClient) {
      if (frame.isBinary || clientSentJson) return frame;
      const message = parse(frame.data) as { type?: unknown; data?: { supports_preview_metadata?: unknown } } | undefined;
      if (message === undefined) return frame;
      clientSentJson = true;
      if (message.type !== 'feature_flags') return frame;
      clientWantsMetadata = message.data?.supports_preview_metadata === true;
      if (serverFlags) replyToClient(serverFlags);
      else pendingFlagsReply = replyToClient;
      return null;
    },
  };
}

function parse(data: Buffer | string): unknown {
  try {
    return JSON.parse(data.toString());
  } catch {
    return undefined;
  }
}
