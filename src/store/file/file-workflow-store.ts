// The registered workflows in `workflows.json`: read on each call, replaced atomically under a lock file, so the gateway and the CLI share it.

import { join } from 'node:path';
import { parseExactJson, stringifyExactJson } from '../../json/exact-json.js';
import { StoreCorruptError, type WorkflowRecord, type WorkflowStore } from '../types.js';
import { writeFileAtomic } from './atomic-write.js';
import { withDirLock } from './dir-lock.js';
import { readTextNoFollow } from './no-follow.js';

interface WorkflowFile {
  workflows: Record<string, WorkflowRecord>;
}

/**
 * Workflows in one JSON file, `{"workflows": {name: record}}`. Each read reads the file (workflows are
 * few and read only by the workflow routes), so a change made by the CLI or another process is seen
 * at once; each change is a read-modify-replace under `.workflows.lock`, written with fsync. Numbers are
 * read and written with the texts they came with (see parseExactJson): a 64-bit seed stays exact, `7.0` a float.
 */
export class FileWorkflowStore implements WorkflowStore {
  readonly path: string;
  private readonly lockPath: string;
  private readonly onWrite: ((seconds: number) => void) | undefined;

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
      const file = await this.read();
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

  /** The file's content; an absent file is an empty registry. @throws StoreCorruptError when it cannot be read as one. */
  private async read(): Promise<WorkflowFile> {
    let text: string;
    try {
      text = await readTextNoFollow(this.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { workflows: {} };
      throw new StoreCorruptError(this.path, (error as Error).message);
    }
    let parsed: unknown;
    try {
      parsed = parseExactJson(text);
    } catch (error) {
      throw new StoreCorruptError(this.path, (error as Error).message);
    }
    const workflows = (parsed as Partial<WorkflowFile> | null)?.workflows;
    if (typeof workflows !== 'object' || workflows === null || Array.isArray(workflows)) {
      throw new StoreCorruptError(this.path, 'no "workflows" object');
    }
    return { workflows: Object.assign(Object.create(null) as Record<string, WorkflowRecord>, workflows) };
  }
}
