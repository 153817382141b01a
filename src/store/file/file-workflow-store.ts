// The registered workflows in `workflows.json`: parsed again only when the file changed, replaced atomically under a lock file, so the gateway and the CLI share it.

import { join } from 'node:path';
import { parseExactJson, stringifyExactJson } from '../../json/exact-json.js';
import { StoreCorruptError, type WorkflowRecord, type WorkflowStore } from '../types.js';
import { writeFileAtomic } from './atomic-write.js';
import { withDirLock } from './dir-lock.js';
import { openNoFollow } from './no-follow.js';

interface WorkflowFile {
  workflows: Record<string, WorkflowRecord>;
}

/** What tells one version of the file from another: a replace makes a new inode, an edit in place a new size or time. */
function versionOf(stats: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

/**
 * How old a file's modification time must be for its parse to be kept. File systems keep times in ticks (a few
 * milliseconds on Linux, up to 2 s on FAT): an edit in place within the tick of the last change, of the
 * same size, would leave the version as it was, so a file changed that recently is parsed on every read.
 */
const SETTLED_MS = 2_000;

/**
 * Workflows in one JSON file, `{"workflows": {name: record}}`. Each read looks at the file (a `stat` of it,
 * open), so a change made by the CLI or another process is seen at once, and parses it only when it changed
 * since the last read (or changed within SETTLED_MS of it): a run or a listing does not parse every registered
 * workflow (each up to 4 MiB) again.
 * Records read are shared between callers, which must not change them. Each change is a
 * read-modify-replace under `.workflows.lock`, written with fsync. Numbers are read and written with the
 * texts they came with (see parseExactJson): a 64-bit seed stays exact, `7.0` a float.
 */
export class FileWorkflowStore implements WorkflowStore {
  readonly path: string;
  private readonly lockPath: string;
  private readonly onWrite: ((seconds: number) => void) | undefined;
  /** The file as last read, and its version (see versionOf). */
  private parsed: { version: string; file: WorkflowFile } | null = null;

  constructor(options: { directory: string; onWrite?(seconds: number): void }) {
    this.path = join(options.directory, 'workflows.json');
    this.lockPath = join(options.directory, '.workflows.lock');
    this.onWrite = options.onWrite;
  }

  async list(): Promise<WorkflowRecord[]> {
    const { workflows } = await this.read();
    return Object.values(workflows).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async get(name: string): Promise<WorkflowRecord | undefined> {
    const { workflows } = await this.read();
    return Object.hasOwn(workflows, name) ? workflows[name] : undefined;
  }

  put(record: Omit<WorkflowRecord, 'created_at' | 'updated_at'>, now: number): Promise<{ record: WorkflowRecord; created: boolean }> {
    return this.change((file) => {
      const former = Object.hasOwn(file.workflows, record.name) ? file.workflows[record.name] : undefined;
      const stored: WorkflowRecord = { ...record, created_at: former?.created_at ?? now, updated_at: now };
      file.workflows[record.name] = stored;
      return { record: stored, created: former === undefined };
    });
  }

  delete(name: string): Promise<boolean> {
    return this.change((file) => {
      if (!Object.hasOwn(file.workflows, name)) return false;
      delete file.workflows[name];
      return true;
    });
  }

  /** Reads the file, applies `edit` and, when it changed something, writes the file back durably, all under the lock. */
  private change<R>(edit: (file: WorkflowFile) => R): Promise<R> {
    return withDirLock(this.lockPath, async () => {
      const file = await this.read({ forChange: true });
      const before = stringifyExactJson(file);
      const result = edit(file);
      const after = stringifyExactJson(file);
      if (after !== before) {
        const started = performance.now();
        await writeFileAtomic(this.path, after);
        this.onWrite?.((performance.now() - started) / 1000);
      }
      return result;
    });
  }

  /**
   * The file's content; an absent file is an empty registry. The parse of the last read is reused while the
   * file is the same, except `forChange`: a change edits what it reads, so it gets a parse of its own.
   * @throws StoreCorruptError when it cannot be read as one.
   */
  private async read(options: { forChange?: boolean } = {}): Promise<WorkflowFile> {
    let handle;
    try {
      handle = await openNoFollow(this.path, 'read');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { workflows: {} };
      throw new StoreCorruptError(this.path, (error as Error).message);
    }
    let version: string;
    let settled: boolean;
    let text: string;
    try {
      const stats = await handle.stat({ bigint: true });
      version = versionOf(stats);
      if (!options.forChange && this.parsed?.version === version) return this.parsed.file;
      settled = Date.now() - Number(stats.mtimeNs / 1_000_000n) > SETTLED_MS;
      text = await handle.readFile('utf8');
    } catch (error) {
      throw new StoreCorruptError(this.path, (error as Error).message);
    } finally {
      await handle.close();
    }
    const file = parseWorkflowFile(this.path, text);
    if (!options.forChange) this.parsed = settled ? { version, file } : null;
    return file;
  }
}

/** Parses the file's text. @throws StoreCorruptError when it is not `{"workflows": {...}}`. */
function parseWorkflowFile(path: string, text: string): WorkflowFile {
  let parsed: unknown;
  try {
    parsed = parseExactJson(text);
  } catch (error) {
    throw new StoreCorruptError(path, (error as Error).message);
  }
  const workflows = (parsed as Partial<WorkflowFile> | null)?.workflows;
  if (typeof workflows !== 'object' || workflows === null || Array.isArray(workflows)) {
    throw new StoreCorruptError(path, 'no "workflows" object');
  }
  return { workflows: Object.assign(Object.create(null) as Record<string, WorkflowRecord>, workflows) };
}
