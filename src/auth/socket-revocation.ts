// Closes open WebSockets whose credential no longer holds: a key deleted, disabled, expired or rotated out, a session ended.

import type { Credential } from './authenticate.js';

/**
 * How often every open socket's credential is checked again. A change made through this gateway's own
 * API is applied at once; this bounds how long a socket outlives one made by another replica or the
 * CLI, or an expiry or a rotation's grace period that passes on its own. Each check costs a lookup or
 * two in memory per open socket.
 */
export const SOCKET_CREDENTIAL_CHECK_INTERVAL_MS = 2000;

/** WebSocket close code 1008: policy violation. */
const POLICY_VIOLATION = 1008;

/** An open socket, with how it was authenticated and how to close it. */
export interface AuthenticatedSocket {
  keyId: string;
  credential: Credential;
  close(code: number, reason: string): void;
}

export class SocketRevocation {
  private readonly open = new Set<AuthenticatedSocket>();
  private timer: NodeJS.Timeout | null = null;

  /** @param holds whether a credential that authenticated `keyId` still does */
  constructor(private readonly holds: (credential: Credential, keyId: string) => boolean) {}

  /** Watches a socket until the returned function is called (when it closes). */
  track(socket: AuthenticatedSocket): () => void {
    this.open.add(socket);
    return () => this.open.delete(socket);
  }

  /** Closes with 1008 every watched socket whose credential no longer holds. */
  sweep(): void {
    for (const socket of this.open) {
      if (this.holds(socket.credential, socket.keyId)) continue;
      this.open.delete(socket);
      socket.close(POLICY_VIOLATION, socket.credential.via === 'session' ? 'session ended' : 'key revoked');
    }
  }

  /** Sweeps every SOCKET_CREDENTIAL_CHECK_INTERVAL_MS until `stop`. */
  start(): void {
    this.timer ??= setInterval(() => this.sweep(), SOCKET_CREDENTIAL_CHECK_INTERVAL_MS).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
