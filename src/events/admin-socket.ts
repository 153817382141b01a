// Hooks for an admin key's socket while the event hub sends it its jobs' events: reads the client's feature flags and drops the broadcasts the hub already sends.

import { parseJsonOrUndefined } from '../isolation/json-body.js';
import type { Frame, RelayHooks } from '../proxy/websocket.js';
import type { ClientFeatureFlags } from './client-flags.js';
import { binaryFrameType, TEXT } from './preview-frames.js';

/**
 * An admin socket still receives everything its own ComfyUI socket gets. ComfyUI broadcasts progress
 * text (binary type 3) and `display_component` to every socket, and the hub sends those of the running
 * job to that job's sockets, so they are dropped here to reach the client once. `flags` reads the
 * client's feature_flags, which pass on to ComfyUI unchanged. With `queueRemaining` (several
 * backends), a status broadcast reports that instead of the one backend's queue.
 */
export function adminSocketHooks(flags: ClientFeatureFlags, queueRemaining?: () => number): RelayHooks {
  return {
    fromClient(frame) {
      flags.read(frame);
      return frame;
    },
    fromUpstream(frame) {
      if (isRunningPromptBroadcast(frame)) return null;
      return queueRemaining && isStatus(frame)
        ? withQueueRemaining(parseJsonOrUndefined(frame.data) as { data?: Record<string, unknown> }, queueRemaining())
        : frame;
    },
  };
}

function isStatus(frame: Frame): boolean {
  // Only text that mentions a status is parsed.
  if (frame.isBinary || !frame.data.includes('"status"')) return false;
  return (parseJsonOrUndefined(frame.data) as { type?: unknown } | undefined)?.type === 'status';
}

function isRunningPromptBroadcast(frame: Frame): boolean {
  if (frame.isBinary) return binaryFrameType(frame.data as Buffer) === TEXT;
  // Most messages are not display_component: only those that mention it are parsed.
  if (!frame.data.includes('display_component')) return false;
  return (parseJsonOrUndefined(frame.data) as { type?: unknown } | undefined)?.type === 'display_component';
}

/** A `status` message with `exec_info.queue_remaining` set to `remaining`. */
function withQueueRemaining(message: { data?: Record<string, unknown> }, remaining: number): Frame {
  const data = message.data ?? {};
  const status = (typeof data.status === 'object' && data.status !== null ? data.status : {}) as Record<string, unknown>;
  const execInfo = (typeof status.exec_info === 'object' && status.exec_info !== null ? status.exec_info : {}) as Record<string, unknown>;
  return {
    data: JSON.stringify({ ...message, data: { ...data, status: { ...status, exec_info: { ...execInfo, queue_remaining: remaining } } } }),
    isBinary: false,
  };
}
