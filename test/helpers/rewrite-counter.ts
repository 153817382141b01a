// Counts how often a store rewrote a snapshot file, from the file's inode looked at from time to time.

/**
 * Counts the rewrites of a snapshot from its inode, looked at from time to time: each rewrite puts a new file in its place. Not the
 * distinct inodes: the file system gives a freed inode number to the next new file.
 */
export class RewriteCounter {
  count = 0;
  private last: number | null = null;

  saw(inode: number): void {
    if (this.last !== null && inode !== this.last) this.count += 1;
    this.last = inode;
  }
}
