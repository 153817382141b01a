// Unit tests of FileOwnershipStore: first claim wins, claims are durable when they resolve, grouped writes, compaction beside them, a failed write
// undone, and a claim already on disk answered without waiting for other claims' writes.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { FileOwnershipStore } from '../../src/store/file/file-ownership-store.js';
import { RewriteCounter } from '../helpers/rewrite-counter.js';

describe('FileOwnershipStore', () => {
  let dir: string;
  const stores: FileOwnershipStore[] = [];

  async function openStore(): Promise<FileOwnershipStore> {
    const store = new FileOwnershipStore({ directory: dir });
    await store.open();
    stores.push(store);
    return store;
  }

  /** Makes every append fail: the journal, and the next journal that takes the changes while the snapshot is rewritten, become folders. */
  async function breakJournals(): Promise<void> {
    for (const name of ['ownership.journal', 'ownership.journal.next']) {
      await rm(join(dir, name), { force: true, recursive: true });
      await mkdir(join(dir, name));
    }
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-ownership-'));
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });

  test('the first key to claim an id owns it; later claims get that owner', async () => {
    const store = await openStore();
    assert.equal(await store.claim('prompt', 'p1', 'alice'), 'alice');
    assert.equal(await store.claim('prompt', 'p1', 'bob'), 'alice');
    assert.equal(store.ownerOf('prompt', 'p1'), 'alice');
    assert.equal(store.ownerOf('client', 'p1'), undefined, 'kinds are separate');
  });

  test('200 concurrent claims: exactly one owner per id, all durable, written in few appends', async () => {
    const store = await openStore();
    const claims = Array.from({ length: 200 }, (_, i) => store.claim('prompt', `p${i % 50}`, i % 2 === 0 ? 'alice' : 'bob'));
    const owners = await Promise.all(claims);
    for (let i = 0; i < 200; i += 1) assert.equal(owners[i], owners[i % 50], `id p${i % 50} has one owner`);
    await store.close();
    const reopened = await openStore();
    for (let i = 0; i < 50; i += 1) assert.equal(reopened.ownerOf('prompt', `p${i}`), owners[i]);
    const files = (await readFile(join(dir, 'ownership.json'), 'utf8')) + (await readFile(join(dir, 'ownership.journal'), 'utf8'));
    assert.equal(files.match(/"prompt:p\d+"/g)?.length, 50, 'one record per id, not one per claim');
  });

  test('recent prompts of a key, newest first, and outputs marked recorded', async () => {
    const store = await openStore();
    await store.claim('prompt', 'old', 'alice');
    await new Promise((resolve) => setTimeout(resolve, 5));
    await store.claim('prompt', 'new', 'alice');
    await store.claim('prompt', 'other', 'bob');
    await store.markOutputsRecorded('old');
    assert.deepEqual(store.recentPrompts('alice', 10), [
      { promptId: 'new', outputsRecorded: false },
      { promptId: 'old', outputsRecorded: true },
    ]);
    assert.deepEqual(
      store.recentPrompts('alice', 1).map((p) => p.promptId),
      ['new'],
    );
  });

  test('claims go on while the snapshot is rewritten beside them; every one survives a reopen', async () => {
    const store = await openStore();
    const rewrites = new RewriteCounter();
    for (let batch = 0; batch < 60; batch += 1) {
      await Promise.all(Array.from({ length: 250 }, (_, i) => store.claim('file', `input/batch-${batch}/image-${i}.png`, `key-${i % 7}`)));
      const snapshot = await stat(join(dir, 'ownership.json')).catch(() => null);
      if (snapshot) rewrites.saw(snapshot.ino);
    }
    await store.close();
    assert.ok(rewrites.count >= 2, `the snapshot was rewritten while claims went on (${rewrites.count} rewrites seen)`);
    const [snapshot, journal] = await Promise.all([stat(join(dir, 'ownership.json')), stat(join(dir, 'ownership.journal'))]);
    assert.ok(journal.size < snapshot.size, 'the journal holds only what came after the last rewrite');
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.endsWith('.tmp')),
      [],
      'no temporary file is left',
    );
    const reopened = await openStore();
    for (let batch = 0; batch < 60; batch += 1) {
      for (let i = 0; i < 250; i += 1) assert.equal(reopened.ownerOf('file', `input/batch-${batch}/image-${i}.png`), `key-${i % 7}`, `claim ${batch}/${i}`);
    }
  });

  test('ComfyUI users per key survive a reopen', async () => {
    const store = await openStore();
    await store.setComfyUser('alice', 'alice_1234');
    assert.equal((await openStore()).comfyUserOf('alice'), 'alice_1234');
  });

  test('records of any ids and key ids are written as JSON and read back as they were, from ownership.json and from the journal', async () => {
    // Quotes, backslashes, control characters, U+2028 and lone surrogates: each is escaped in the files' JSON.
    const names = ['a"b', 'c\\d', 'e\nf\u0000', 'g\u2028h', 'i\ud800j', 'k\udfffl', 'plain'];
    const store = await openStore();
    // The first group of changes is also the first ownership.json; the rest go to the journal.
    await Promise.all(names.map((name, i) => store.claim('prompt', `first-${name}`, `key-${names[(i + 1) % names.length]}`)));
    for (const [i, name] of names.entries()) {
      await store.claim('prompt', name, `key-${names[(i + 1) % names.length]}`);
      await store.claim('file', `output/${name}.png`, `key-${name}`);
      await store.setComfyUser(`key-${name}`, `user-${name}`);
    }
    await store.markOutputsRecorded(names[0]!);
    await store.close();
    const snapshot = JSON.parse(await readFile(join(dir, 'ownership.json'), 'utf8')) as Record<string, unknown>;
    assert.ok(Object.keys(snapshot).length >= names.length, 'the first group is in ownership.json');
    const reopened = await openStore();
    for (const [i, name] of names.entries()) {
      assert.equal(reopened.ownerOf('prompt', `first-${name}`), `key-${names[(i + 1) % names.length]}`);
      assert.equal(reopened.ownerOf('prompt', name), `key-${names[(i + 1) % names.length]}`);
      assert.equal(reopened.ownerOf('file', `output/${name}.png`), `key-${name}`);
      assert.equal(reopened.comfyUserOf(`key-${name}`), `user-${name}`);
    }
    assert.deepEqual(
      reopened.recentPrompts(`key-${names[1]}`, 10).map((prompt) => [prompt.promptId, prompt.outputsRecorded]),
      [
        [names[0], true],
        [`first-${names[0]}`, false],
      ],
    );
  });

  test('a claim whose write fails rejects and leaves no owner behind', async () => {
    const store = await openStore();
    await store.claim('prompt', 'kept', 'alice');
    await breakJournals();
    await assert.rejects(store.claim('prompt', 'lost', 'alice'));
    assert.equal(store.ownerOf('prompt', 'lost'), undefined);
    assert.deepEqual(
      store.recentPrompts('alice', 10).map((p) => p.promptId),
      ['kept'],
    );
  });

  test("a claim already on disk is answered without waiting for other claims' writes; one whose own write is under way waits for it", async () => {
    const store = await openStore();
    await store.claim('client', 'on-disk', 'alice');
    const settled: string[] = [];
    const track = (name: string, claim: Promise<string>): Promise<string> => claim.then((owner) => (settled.push(name), owner));
    const waiting = [
      track('new claim', store.claim('client', 'new', 'alice')),
      track('same claim again', store.claim('client', 'new', 'alice')),
      track('another key on the new claim', store.claim('client', 'new', 'bob')),
      track('claim on disk', store.claim('client', 'on-disk', 'alice')),
      track('another key on the claim on disk', store.claim('client', 'on-disk', 'bob')),
    ];
    assert.deepEqual(await Promise.all(waiting), ['alice', 'alice', 'alice', 'alice', 'alice']);
    assert.deepEqual(settled.slice(0, 2).sort(), ['another key on the claim on disk', 'claim on disk'], 'the claims on disk were answered first');
    assert.ok(settled.indexOf('same claim again') > settled.indexOf('claim on disk'), 'a claim whose write is under way waits for it');
    // The answers the new claim's waiters got are on disk: a reopened store has them.
    await store.close();
    stores.splice(stores.indexOf(store), 1);
    assert.equal((await openStore()).ownerOf('client', 'new'), 'alice');
  });

  test('a claim that is not yet on disk is not answered from memory when its write fails', async () => {
    const store = await openStore();
    await store.claim('prompt', 'kept', 'alice');
    await breakJournals();
    const first = store.claim('client', 'lost', 'alice');
    const second = store.claim('client', 'lost', 'alice');
    await assert.rejects(first);
    await assert.rejects(second, "the second claim waited for the first one's write, which failed");
    assert.equal(store.ownerOf('client', 'lost'), undefined);
  });
});
