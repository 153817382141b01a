// Unit tests of FileSessionStore: a sessions.json written before sessions were bound to a secret still loads.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileSessionStore } from '../../src/store/file/file-session-store.js';

test('a session stored without the hash of its secret loads, bound to no secret', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'comfy-gate-sessions-'));
  try {
    const id = 'A'.repeat(43);
    const now = Date.now() / 1000;
    const hash = createHash('sha256').update(id).digest('hex');
    await writeFile(join(dir, 'sessions.json'), JSON.stringify({ [hash]: { keyId: 'alice', createdAt: now, expiresAt: now + 600 } }));
    const store = new FileSessionStore({ directory: dir });
    await store.open();
    assert.deepEqual(store.find(id, now + 1), { keyId: 'alice', keyHash: '', createdAt: now, expiresAt: now + 600 });
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
