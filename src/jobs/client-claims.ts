// The new clientId claims of prompts being admitted: a refused prompt's claim is let go only once no other prompt or socket of its key holds it.

import type { OwnershipStore } from '../store/types.js';

/** The prompts of one key under way with a clientId one of them claimed new. */
export interface ClientClaimHold {
  readonly keyId: string;
  /** Prompts under way that hold it. */
  holders: number;
  /** Set once one of them was admitted (or may have been), or a socket of the key took the clientId: the claim stays. */
  kept: boolean;
  /** The release under way once the last holder was refused: a prompt joining meanwhile claims anew after it. */
  letGo?: Promise<void>;
}

/**
 * Counts, per clientId, the prompts of its key under way since one of them claimed it new. A refused
 * prompt lets the claim go only when it is the last holder and none was admitted, so that a prompt of
 * the key sent at the same moment with the same clientId keeps it (another key could otherwise take it,
 * and the key's socket would be refused its own id). Held in this process's memory.
 */
export class ClientClaimHolds {
  private readonly holds = new Map<string, ClientClaimHold>();

  constructor(private readonly ownership: OwnershipStore) {}

  /**
   * Before a prompt of `keyId` claims `clientId`: joins the key's prompts under way that hold it, or starts
   * them when the claim is new (`isNew`: no owner known). Undefined when neither: the claim is settled, and
   * the prompt has nothing to let go. A prompt that joins waits for `letGo` before it claims.
   */
  join(clientId: string, keyId: string, isNew: boolean): ClientClaimHold | undefined {
    const current = this.holds.size === 0 ? undefined : this.holds.get(clientId);
    if (current?.keyId === keyId) {
      current.holders += 1;
      return current;
    }
    if (!isNew || current) return undefined;
    const hold: ClientClaimHold = { keyId, holders: 1, kept: false };
    this.holds.set(clientId, hold);
    return hold;
  }

  /**
   * A holder's prompt is done: `admitted` when it was (or may have been) queued. The last holder of a
   * claim none of whose prompts was admitted releases it; resolves once released.
   */
  async leave(clientId: string, hold: ClientClaimHold, admitted: boolean): Promise<void> {
    if (admitted) hold.kept = true;
    hold.holders -= 1;
    if (hold.holders > 0) return;
    if (hold.kept) return this.forget(clientId, hold);
    hold.letGo = this.ownership
      .release('client', clientId, hold.keyId)
      .catch(() => undefined)
      .finally(() => {
        hold.letGo = undefined;
        // A prompt that joined during the release claimed anew: it holds that claim now.
        if (hold.holders === 0) this.forget(clientId, hold);
      });
    await hold.letGo;
  }

  /** A socket of `keyId` took `clientId`: a claim its prompts under way hold stays, whatever they meet. */
  keep(clientId: string, keyId: string): void {
    if (this.holds.size === 0) return;
    const hold = this.holds.get(clientId);
    if (hold?.keyId === keyId) hold.kept = true;
  }

  private forget(clientId: string, hold: ClientClaimHold): void {
    if (this.holds.get(clientId) === hold) this.holds.delete(clientId);
  }
}
