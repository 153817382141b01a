// The audit trail in `audit.jsonl`: one JSON line per entry, appended and fsynced; the gateway and the CLI both append.

import { join } from 'node:path';
import type { AuditEntry, AuditStore } from '../types.js';
import { appendDurably, readJournal } from './journal.js';

export class FileAuditStore implements AuditStore {
  readonly path: string;
  private readonly onWrite: ((seconds: number) => void) | undefined;

  constructor(options: { directory: string; onWrite?(seconds: number): void }) {
    this.path = join(options.directory, 'audit.jsonl');
    this.onWrite = options.onWrite;
  }

  async append(entry: AuditEntry): Promise<void> {
    const started = performance.now();
    // One write of one line: appends of several processes never interleave within a line.
    await appendDurably(this.path, JSON.stringify(entry) + '\n');
    this.onWrite?.((performance.now() - started) / 1000);
  }

  async list({ since, limit }: { since: number; limit: number }): Promise<AuditEntry[]> {
    const chunk = await readJournal(this.path, 0);
    const entries = (chunk?.entries ?? []) as AuditEntry[];
    return entries.filter((entry) => entry.ts >= since).slice(0, limit);
  }
}
