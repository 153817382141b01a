// What a user key's WebSocket may receive: status broadcasts, and events and previews of its own prompts, nothing else.

import { ClientFeatureFlags } from '../events/client-flags.js';
import { ASK_FOR_PREVIEW_METADATA, readPreviewWithMetadata, withoutPreviewMetadata } from '../events/preview-frames.js';
import type { Frame, RelayHooks } from '../proxy/websocket.js';
import type { OwnershipStore } from '../store/types.js';
import { outputFileIds } from './files.js';
import { parseJsonOrUndefined } from './json-body.js';

/**
 * Hooks for a user key's socket. The gateway itself tells ComfyUI, first thing, that this socket takes
 * previews with metadata, so every targeted preview names its prompt and can be checked; a client that
 * did not ask for metadata gets it converted back to the plain preview frame. The client's own
 * `feature_flags` is answered by the gateway with ComfyUI's flags. Messages that cannot be attributed
 * to one of the key's prompts (broadcast previews, text frames, `display_component`, unknown types)
 * are dropped. `flags` is where the client's own feature_flags are read (pass it to read them elsewhere too).
 * With `queueRemaining`, a status broadcast reports that instead of ComfyUI's whole queue (the key's view).
 */
export function userSocketHooks(ownership: OwnershipStore, keyId: string, flags = new ClientFeatureFlags(), queueRemaining?: () => number): RelayHooks {
  let serverFlags: string | null = null;
  let pendingFlagsReply: ((text: string) => void) | null = null;
  const ownPrompt = (promptId: unknown): boolean => typeof promptId === 'string' && ownership.ownerOf('prompt', promptId) === keyId;

  function fromUpstreamText(frame: Frame): Frame | null {
    const message = parseJsonOrUndefined(frame.data) as { type?: unknown; data?: Record<string, unknown> } | undefined;
    if (!message || typeof message.type !== 'string') return null;
    if (message.type === 'status') return queueRemaining ? withQueueRemaining(message, queueRemaining()) : frame;
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
    const preview = readPreviewWithMetadata(frame.data as Buffer);
    if (!preview || !ownPrompt(preview.metadata.prompt_id)) return null;
    if (flags.wantsPreviewMetadata()) return frame;
    return { data: withoutPreviewMetadata(preview), isBinary: true };
  }

  return {
    onUpstreamOpen(sendUpstream) {
      sendUpstream(ASK_FOR_PREVIEW_METADATA);
    },
    fromUpstream: (frame) => (frame.isBinary ? fromUpstreamBinary(frame) : fromUpstreamText(frame)),
    fromClient(frame, replyToClient) {
      if (!flags.read(frame)) return frame;
      if (serverFlags) replyToClient(serverFlags);
      else pendingFlagsReply = replyToClient;
      return null;
    },
  };
}

/** A `status` message with `exec_info.queue_remaining` set to `remaining`. */
export function withQueueRemaining(message: { data?: Record<string, unknown> }, remaining: number): Frame {
  const data = message.data ?? {};
  const status = (typeof data.status === 'object' && data.status !== null ? data.status : {}) as Record<string, unknown>;
  const execInfo = (typeof status.exec_info === 'object' && status.exec_info !== null ? status.exec_info : {}) as Record<string, unknown>;
  return {
    data: JSON.stringify({ ...message, data: { ...data, status: { ...status, exec_info: { ...execInfo, queue_remaining: remaining } } } }),
    isBinary: false,
  };
}
