// The due webhook deliveries one claim takes: round robin by key, oldest due first within a key, each key capped (see `claimDue`).

import type { ClaimShares, WebhookDelivery } from './types.js';

/** At most `limit` of the due deliveries, in the order `WebhookDeliveryStore.claimDue` hands them out. */
export function takeTurns(due: readonly WebhookDelivery[], limit: number, shares?: ClaimShares): WebhookDelivery[] {
  const byKey = new Map<string, WebhookDelivery[]>();
  for (const delivery of due) {
    const ofKey = byKey.get(delivery.key_id);
    if (ofKey) ofKey.push(delivery);
    else byKey.set(delivery.key_id, [delivery]);
  }
  const turns: Array<{ delivery: WebhookDelivery; turn: number }> = [];
  for (const [keyId, ofKey] of byKey) {
    ofKey.sort(oldestDueFirst);
    const held = shares?.held.get(keyId) ?? 0;
    const room = shares ? shares.perKey - held : ofKey.length;
    for (let rank = 0; rank < Math.min(room, ofKey.length); rank += 1) turns.push({ delivery: ofKey[rank]!, turn: held + rank + 1 });
  }
  turns.sort((a, b) => a.turn - b.turn || oldestDueFirst(a.delivery, b.delivery));
  return turns.slice(0, limit).map(({ delivery }) => delivery);
}

function oldestDueFirst(a: WebhookDelivery, b: WebhookDelivery): number {
  return (a.next_attempt_at ?? 0) - (b.next_attempt_at ?? 0);
}
