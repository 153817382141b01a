// Counts the relayed WebSockets each key holds open, so that no key can hold more than its share.

import type { Duplex } from 'node:stream';
import { tooManyWebSockets } from '../errors.js';

export class WebSocketSlots {
  private readonly held = new Map<string, number>();

  constructor(private readonly maxPerKey: number) {}

  /**
   * Takes one of `keyId`'s slots until `socket` closes, however it closes.
   * @throws GatewayError 429 TOO_MANY_WEBSOCKETS when the key already holds them all
   */
  hold(keyId: string, socket: Duplex): void {
    const count = this.held.get(keyId) ?? 0;
    if (count >= this.maxPerKey) throw tooManyWebSockets(this.maxPerKey);
    if (socket.destroyed) return;
    this.held.set(keyId, count + 1);
    socket.once('close', () => {
      const left = this.held.get(keyId)! - 1;
      if (left === 0) this.held.delete(keyId);
      else this.held.set(keyId, left);
    });
  }
}
