// The store folders' lock file between real processes: one holder at a time when several take over a dead holder's lock, and never an empty lock file.

import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { link, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { withDirLock } from '../../src/store/file/dir-lock.js';
import { readLock, sameFile, takeOver } from '../../src/store/file/stale-lock.js';

const DIR_LOCK = new URL('../../src/store/file/dir-lock.js', import.meta.url).href;

/** A Node process running the module `script`, and the lines it prints, one at a time (undefined once it has exited). */
interface Child {
  process: ChildProcessByStdio<Writable, Readable, null>;
  nextLine(): Promise<string | undefined>;
}

function startChild(script: string): Child {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return { process: child, nextLine: async () => (await lines.next()).value as string | undefined };
}

async function stopChild(child: Child): Promise<void> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return;
  const exited = once(child.process, 'exit');
  child.process.kill('SIGKILL');
  await exited;
}

/** A pid that names no live process: a child's that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await once(child, 'exit');
  return child.pid!;
}

/** Where a log of turns (`enter <id>` and `leave <id>` lines) shows one turn begun before the last ended; undefined when none does. */
function turnsOverlap(log: string): string | undefined {
  const lines = log.split('\n').filter(Boolean);
  for (let i = 0; i < lines.length; i += 2) {
    const [enter, leave] = [lines[i]!, lines[i + 1]];
    if (!enter.startsWith('enter ') || leave !== `leave ${enter.slice(6)}`) return `lines ${i + 1}-${i + 2}: ${enter} / ${leave}`;
  }
  return undefined;
}

describe('the lock file between processes', () => {
  let dir: string;
  let lock: string;
  let children: Child[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-dir-lock-'));
    lock = join(dir, '.rows.lock');
  });
  afterEach(async () => {
    await Promise.all(children.map(stopChild));
    children = [];
    await rm(dir, { recursive: true, force: true });
  });

  test('two processes taking over a dead holder’s lock at once never both hold it', async () => {
    const log = join(dir, 'turns.log');
    // Each child takes a turn on every line it reads, and says `done` after it (or why it could not). Meanwhile
    // its event loop is kept busy with other work, up to 4 ms at a time, as a gateway's is with requests: the
    // steps of taking the lock are spread out, and the two processes' steps interleave in many orders.
    const racer = (id: string): string => `
      import { appendFile } from 'node:fs/promises';
      import { createInterface } from 'node:readline';
      const { withDirLock } = await import(${JSON.stringify(DIR_LOCK)});
      let busy = false;
      const work = () => {
        const end = performance.now() + Math.random() * 4;
        while (performance.now() < end);
        if (busy) setImmediate(work);
      };
      for await (const _ of createInterface({ input: process.stdin })) {
        busy = true;
        setImmediate(work);
        try {
          await withDirLock(${JSON.stringify(lock)}, async () => {
            await appendFile(${JSON.stringify(log)}, 'enter ${id}\\n');
            await new Promise((resolve) => setImmediate(resolve));
            await appendFile(${JSON.stringify(log)}, 'leave ${id}\\n');
          }, 10000);
          console.log('done');
        } catch (error) {
          console.log('failed ' + error.code);
        }
        busy = false;
      }`;
    children = ['a', 'b'].map((id) => startChild(racer(id)));
    const dead = await deadPid();
    const ROUNDS = 60;
    for (let round = 0; round < ROUNDS; round++) {
      // The lock left by a holder killed in its turn: an older version's (a pid), this version's (with the
      // holder's second name for the file), or one killed between creating the file and writing it (empty).
      await Promise.all([lock, `${lock}.0123456789abcdef`].map((name) => rm(name, { force: true })));
      const kind = round % 3;
      if (kind === 0) await writeFile(lock, String(dead));
      if (kind === 1) {
        await writeFile(lock, `${dead} - 0123456789abcdef`);
        await link(lock, `${lock}.0123456789abcdef`);
      }
      if (kind === 2) await writeFile(lock, '');
      for (const child of children) child.process.stdin.write('go\n');
      const answers = await Promise.all(children.map((child) => child.nextLine()));
      assert.deepEqual(answers, ['done', 'done'], `round ${round}`);
    }
    const turns = await readFile(log, 'utf8');
    assert.equal(turnsOverlap(turns), undefined, 'each turn ends before the next begins');
    assert.equal(turns.split('\n').filter(Boolean).length, 4 * ROUNDS, 'both processes took a turn each round');
    const left = (await readdir(dir)).filter((name) => name.startsWith('.rows.lock.'));
    assert.deepEqual(left, [], 'holders’ second names, and files set aside, are removed');
  });

  test('a lock file is never seen empty while processes take turns', async () => {
    const TURNS = 300;
    const taker = `
      const { withDirLock } = await import(${JSON.stringify(DIR_LOCK)});
      for (let i = 0; i < ${TURNS}; i++) await withDirLock(${JSON.stringify(lock)}, async () => undefined, 10000);
      console.log('done');`;
    children = [startChild(taker), startChild(taker)];
    const finished = Promise.all(children.map((child) => child.nextLine()));
    let running = true;
    void finished.then(() => (running = false));
    let seen = 0;
    const empty: number[] = [];
    while (running) {
      const text = await readFile(lock, 'utf8').catch(() => null);
      if (text === null) continue;
      seen++;
      if (text === '') empty.push(seen);
    }
    assert.deepEqual(await finished, ['done', 'done']);
    assert.ok(seen > 0, 'the lock file was read while held');
    assert.deepEqual(empty, [], `the reads (of ${seen}) that found the lock file empty`);
  });

  test('a lock file put back after its holder let go (its second name gone) is taken over; one its live holder keeps is waited for', async () => {
    const sleeper = startChild('setTimeout(() => {}, 60_000); console.log("up");');
    children = [sleeper];
    assert.equal(await sleeper.nextLine(), 'up');
    const held = `${sleeper.process.pid} - 0123456789abcdef`;
    await writeFile(lock, held);
    await link(lock, `${lock}.0123456789abcdef`);
    await assert.rejects(
      withDirLock(lock, async () => undefined, 200),
      { code: 'ELOCKED' },
    );
    assert.equal(await readFile(lock, 'utf8'), held, 'a live holder’s lock is left in place');
    await rm(`${lock}.0123456789abcdef`);
    assert.equal(await withDirLock(lock, async () => 'ran', 2000), 'ran');
    assert.deepEqual(await readdir(dir), [], 'the lock and its holder’s second name are removed after the turn');
  });

  test('the first turn removes the names that holders gone left beside the lock, and keeps those of live processes and any other file', async () => {
    const sleeper = startChild('setTimeout(() => {}, 60_000); console.log("up");');
    children = [sleeper];
    assert.equal(await sleeper.nextLine(), 'up');
    const left = {
      // A process killed while it waited for its turn, and one killed while it held the lock (the lock itself since taken over).
      [`${lock}.00000000000000aa`]: `${await deadPid()} - 00000000000000aa`,
      [`${lock}.00000000000000bb`]: `${await deadPid()} - 00000000000000bb`,
    };
    const kept = {
      [`${lock}.00000000000000cc`]: `${sleeper.process.pid} - 00000000000000cc`,
      [`${lock}.00000000000000dd`]: '',
      [`${lock}.notes`]: `${await deadPid()} - 0000000000000011`,
    };
    for (const [path, text] of Object.entries({ ...left, ...kept })) {
      await writeFile(path, text);
      // Written two minutes ago: a process's own name is kept while it may still be waiting for its turn.
      await utimes(path, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    }
    // A dead process's name written a moment ago is kept too (its pid may be one of another pid namespace's live processes).
    const recent = `${lock}.00000000000000ee`;
    await writeFile(recent, `${await deadPid()} - 00000000000000ee`);
    kept[recent] = '';
    assert.equal(await withDirLock(lock, async () => 'ran', 2000), 'ran');
    assert.deepEqual(
      (await readdir(dir)).sort(),
      Object.keys(kept)
        .map((path) => path.slice(dir.length + 1))
        .sort(),
    );
  });

  test('a takeover puts back a lock file other than the one it judged stale (another process took the lock since), and removes the one it judged with its holder’s second name', async () => {
    const aside = join(dir, '.rows.lock.aside');
    await writeFile(lock, `${await deadPid()} - 0123456789abcdef`);
    await link(lock, `${lock}.0123456789abcdef`);
    const judged = (await readLock(lock))!;
    // Another process removes the file judged and takes the lock: its own file under its second name, then at `lock`.
    await Promise.all([rm(lock), rm(`${lock}.0123456789abcdef`)]);
    const fresh = `${process.pid} - fedcba9876543210`;
    await writeFile(`${lock}.fedcba9876543210`, fresh);
    await link(`${lock}.fedcba9876543210`, lock);
    const held = (await readLock(lock))!;
    await takeOver(lock, judged, aside);
    const back = await readLock(lock);
    assert.ok(back !== null && sameFile(back, held) && back.text === fresh, 'the other process’s lock file is back in place');
    assert.deepEqual((await readdir(dir)).sort(), ['.rows.lock', '.rows.lock.fedcba9876543210']);
    await takeOver(lock, held, aside);
    assert.deepEqual(await readdir(dir), [], 'the file judged is removed with its holder’s second name');
  });
});
