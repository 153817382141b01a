// The AuditStore contract: appended entries come back oldest first, in the file trail's shape, filtered by time.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuditEntry, AuditStore } from '../../src/store/types.js';
import { isSkipped, lifecycle, type HarnessOrSkip } from './harness.js';

/** An audit store as a harness opens it: with a close, which the interface itself does not need. */
export type ClosableAuditStore = AuditStore & { close(): Promise<void> };

/** Runs the AuditStore contract against one adapter. */
export function auditStoreContract(name: string, harness: HarnessOrSkip<ClosableAuditStore>): void {
  if (isSkipped(harness)) {
    describe(`${name} (AuditStore contract)`, { skip: harness.skip }, () => undefined);
    return;
  }
  describe(`${name} (AuditStore contract)`, () => {
    const { open, reopen } = lifecycle(harness);

    test('entries come back oldest first, whole, with absent fields left out', async () => {
      const store = await open();
      const entries: AuditEntry[] = [
        { ts: 1_714_000_000.5, actor: 'local', action: 'key.create', key_id: 'k1', ip: '127.0.0.1', details: { name: 'A', rate_limit: 5, nested: { x: [1] } } },
        { ts: 1_714_000_001, actor: 'k1', action: 'session.sign_in', key_id: 'k1', ip: '::1' },
        { ts: 1_714_000_002, actor: 'cli', action: 'key.delete' },
      ];
      for (const entry of entries) await store.append(entry);
      assert.deepEqual(await store.list({ since: 0, limit: 10 }), entries);
      assert.deepEqual(await store.list({ since: 1_714_000_001, limit: 10 }), entries.slice(1));
      assert.deepEqual(await store.list({ since: 0, limit: 2 }), entries.slice(0, 2));
      const again = await reopen();
      assert.deepEqual(await again.list({ since: 0, limit: 10 }), entries);
    });

    test('appends through two stores on the same data all land', async () => {
      const [a, b] = [await open(), await open()];
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).append({ ts: 1_714_000_000 + i, actor: 'cli', action: 'key.update', key_id: `k${i}` })),
      );
      const listed = await a.list({ since: 0, limit: 100 });
      assert.equal(listed.length, 20);
      assert.deepEqual(new Set(listed.map((e) => e.key_id)).size, 20);
    });
  });
}
