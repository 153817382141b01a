// Closes open WebSockets whose credential no longer holds (a key deleted, disabled, expired or rotated out, a session ended) or whose key changed role.

import type { KeyRecord, KeyRole } from '../store/types.js';
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

/** An open socket, with how it was authenticated, the role its key had then, and how to close it. */
export interface AuthenticatedSocket {
  keyId: string;
  credential: Credential;
  role: KeyRole;
  close(code: number, reason: string): void;
}

/** The open keyed sockets of a gateway, checked again at once after a change made here and every SOCKET_CREDENTIAL_CHECK_INTERVAL_MS. */
export class SocketRevocation {
  private readonly open = new Set<AuthenticatedSocket>();
  private timer: NodeJS.Timeout | null = null;

  /** @param keyOf the key a socket's credential authenticates now (see keyOfCredential), or undefined */
  constructor(private readonly keyOf: (credential: Credential, keyId: string) => KeyRecord | undefined) {}

  /** Watches a socket until the returned function is called (when it closes). */
  track(socket: AuthenticatedSocket): () => void {
    this.open.add(socket);
    return () => this.open.delete(socket);
  }

  /**
   * Closes with 1008 every watched socket whose credential no longer holds, and every socket whose key
   * changed role since it opened (an admin's socket sees every key's events; a user's is served as one).
   */
  sweep(): void {
    for (const socket of this.open) {
      const key = this.keyOf(socket.credential, socket.keyId);
      if (key?.role === socket.role) continue;
      this.open.delete(socket);
      socket.close(POLICY_VIOLATION, key ? 'key role changed' : socket.credential.via === 'session' ? 'session ended' : 'key revoked');
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
