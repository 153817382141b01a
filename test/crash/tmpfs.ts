// A small tmpfs mounted for one test (needs root), and filling it up to an exact number of free pages.

import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';
import { closeSync, mkdtempSync, openSync, rmdirSync, statfsSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  path: string;
  /** Free bytes as the file system reports them. */
  freeBytes(): number;
  /**
   * Fills the file system with filler files until exactly `pages` pages (4 KiB) stay free.
   * Returns a function that deletes the filler again.
   */
  fill(pages: number): () => void;
  unmount(): void;
}

const PAGE = 4096;

/** Mounts a tmpfs of `bytes`; resolves a reason string instead when this machine does not allow it. */
export function mountTmpfs(bytes: number): Tmpfs | string {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  const path = mkdtempSync(join(tmpdir(), 'comfy-gate-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'tmpfs', path], { stdio: 'pipe' });
  } catch (error) {
    rmdirSync(path);
    return `mount -t tmpfs failed: ${String((error as { stderr?: Buffer }).stderr ?? error).trim()}`;
  }
  let fillers = 0;
  const freeBytes = (): number => {
    const stats = statfsSync(path);
    return stats.bavail * stats.bsize;
  };
  return {
    path,
    freeBytes,
    fill(pages) {
      const reserve = Array.from({ length: pages }, (_, i) => join(path, `.reserve-${i}`));
      for (const file of reserve) writeFileSync(file, Buffer.alloc(PAGE));
      const filler = join(path, `.filler-${fillers++}`);
      const fd = openSync(filler, 'w');
      const chunk = Buffer.alloc(64 * 1024, 0x66);
      try {
        for (;;) {
          // A short write means the last page is full; the next write then fails with ENOSPC.
          writeSync(fd, chunk);
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      } finally {
        closeSync(fd);
      }
      for (const file of reserve) unlinkSync(file);
      return () => unlinkSync(filler);
    },
    unmount() {
      execFileSync('umount', ['-l', path], { stdio: 'pipe' });
      rmdirSync(path);
    },
  };
}

/** Runs `body` on a fresh tmpfs of `bytes`, unmounted afterwards; skips the test, saying why, where mounting is not allowed. */
export async function withTmpfs(t: TestContext, bytes: number, body: (disk: Tmpfs) => Promise<void>): Promise<void> {
  const disk = mountTmpfs(bytes);
  if (typeof disk === 'string') {
    console.log(`# skipping "${t.name}": ${disk}`);
    t.skip(disk);
    return;
  }
  try {
    await body(disk);
  } finally {
    disk.unmount();
  }
}
