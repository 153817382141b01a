// Unit tests of FileSessionStore: a sessions.json written before sessions were bound to a secret still loads; a next journal of an older version is folded in.

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

test('a next journal left by a gateway that wrote sessions alone is folded in: a session ended afterwards stays ended', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'comfy-gate-sessions-'));
  try {
    const id = 'B'.repeat(43);
    const now = Date.now() / 1000;
    const hash = createHash('sha256').update(id).digest('hex');
    await writeFile(join(dir, 'sessions.json'), '{}');
    const session = { keyId: 'bob', keyHash: 'h', createdAt: now, expiresAt: now + 600 };
    await writeFile(join(dir, 'sessions.journal.next'), `${JSON.stringify({ op: 'put', id: hash, value: session })}\n`);
    const store = new FileSessionStore({ directory: dir });
    await store.open();
    assert.deepEqual(store.find(id, now + 1), session);
    await store.deleteForKey('bob');
    await store.close();
    const reopened = new FileSessionStore({ directory: dir });
    await reopened.open();
    assert.equal(reopened.find(id, now + 1), undefined, 'the ended session did not come back');
    await reopened.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
