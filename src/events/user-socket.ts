// A user key's ComfyUI WebSocket, served by the gateway alone: ComfyUI's opening status, the key's jobs' events from the event hubs, status as the key's view, and ComfyUI's answer to the client's feature flags.

import { eventTextShown } from '../isolation/server-paths.js';
import type { AcceptOptions } from '../proxy/websocket.js';
import { ClientFeatureFlags } from './client-flags.js';
import type { ClientSinks } from './client-sinks.js';

export interface UserSocketOptions {
  keyId: string;
  /** The socket's clientId (the client's, or one minted for it): its jobs' events come here, and ComfyUI's opening status names it as `sid`. */
  clientId: string;
  sinks: ClientSinks;
  /** The key's jobs held, queued or running: the `queue_remaining` its status messages report. */
  queueRemaining(): number;
  /** Calls `listener` on every status broadcast of any backend; returns the function that stops it. */
  onStatus(listener: () => void): () => void;
  /** ComfyUI's feature flags, or null until ComfyUI has answered the gateway's (a release without flags never does). */
  serverFlags(): Record<string, unknown> | null;
  /** Calls `listener` once ComfyUI answers the gateway's feature flags; returns the function that stops it. */
  onServerFlags(listener: (flags: Record<string, unknown>) => void): () => void;
  onEnd(outcome: { status: number; connectedMs: number }): void;
}

/**
 * What a user key is told over ComfyUI's feature flags: no assets, since `/api/assets` is refused to it
 * (every user's files). ComfyUI's web UI then lists a key's inputs and outputs from its history, which
 * the gateway keeps to the key's own, instead of from the assets API.
 */
const USER_KEY_FLAGS = { assets: false };

/**
 * The conversation of a user key's socket, in ComfyUI's shape. Every prompt the key sends carries the
 * gateway's own client_id, so ComfyUI sends the key's socket nothing of its own that the event hubs
 * do not already deliver: no socket to ComfyUI is opened for it. It gets, like ComfyUI's:
 * - first, `status` with `sid` (ComfyUI's opening message), then `status` on every backend's
 *   broadcast, each reporting the key's own jobs as `queue_remaining`;
 * - the events and previews of the key's jobs with this clientId (previews of the type its feature
 *   flags asked for), an `execution_error` without the server's paths (see eventTextShown);
 * - ComfyUI's feature flags with `assets: false` (see USER_KEY_FLAGS), in answer to the client's when
 *   that is its first JSON object (once ComfyUI has answered the gateway's, if it has not yet).
 * Anything else a client sends is ignored, as ComfyUI ignores it.
 */
export function userSocketSession(options: UserSocketOptions): AcceptOptions {
  const flags = new ClientFeatureFlags();
  let send: ((text: string) => void) | null = null;
  let stop = (): void => undefined;
  let stopWaitingForFlags = (): void => undefined;
  const answerFlags = (serverFlags: Record<string, unknown>): void =>
    send?.(JSON.stringify({ type: 'feature_flags', data: { ...serverFlags, ...USER_KEY_FLAGS } }));
  const status = (withSid: boolean): string =>
    JSON.stringify({
      type: 'status',
      data: { status: { exec_info: { queue_remaining: options.queueRemaining() } }, ...(withSid ? { sid: options.clientId } : {}) },
    });
  return {
    onOpen(sendToClient) {
      send = (text) => sendToClient(text, false);
      send(status(true));
      const unregister = options.sinks.register(options.keyId, options.clientId, {
        send: (data, isBinary, written) => sendToClient(typeof data === 'string' ? eventTextShown(data) : data, isBinary, written),
        wantsPreviewMetadata: () => flags.wantsPreviewMetadata(),
      });
      const stopStatus = options.onStatus(() => send?.(status(false)));
      stop = () => {
        unregister();
        stopStatus();
      };
    },
    onMessage(frame) {
      if (!flags.read(frame)) return;
      const serverFlags = options.serverFlags();
      if (serverFlags) return answerFlags(serverFlags);
      // ComfyUI has not answered the gateway's flags yet (just after a start or a reconnect): the client is answered when it does,
      // as ComfyUI answers its own sockets; a release without flags never answers either.
      stopWaitingForFlags = options.onServerFlags((answered) => {
        stopWaitingForFlags();
        answerFlags(answered);
      });
    },
    onEnd(outcome) {
      stop();
      stopWaitingForFlags();
      send = null;
      options.onEnd(outcome);
    },
  };
}
