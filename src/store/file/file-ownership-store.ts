// Ownership records in `ownership.json` (+ journal): which key submitted each prompt, holds each clientId, made each file.

import { join } from 'node:path';
import { ClaimOrder } from '../claim-retention.js';
import type { OwnedKind, OwnershipStore } from '../types.js';
import { JournaledTable } from './journaled-table.js';

/** One ownership record; `comfy_user` only on a key's ComfyUI-user record. */
interface OwnershipRecord {
  key_id: string;
  at: number;
  outputs_recorded?: boolean;
  comfy_user?: string;
}

const COMFY_USER = 'comfy-user';

function parseRecord(value: unknown): OwnershipRecord | string {
  const v = value as Partial<OwnershipRecord> | null;
  if (typeof v !== 'object' || v === null || typeof v.key_id !== 'string' || typeof v.at !== 'number') return 'needs key_id and at';
  return v as OwnershipRecord;
}

/** Splits a record id (`kind:id`) into its kind and id. */
function splitRecordId(recordId: string): [string, string] {
  const colon = recordId.indexOf(':');
  return [recordId.slice(0, colon), recordId.slice(colon + 1)];
}

export interface FileOwnershipStoreOptions {
  directory: string;
  /** Prompt and clientId claims kept, each (default `CLAIMS_KEPT`); older ones are forgotten. */
  claimsKept?: number;
  onWrite?(seconds: number): void;
}

/** The JSON-file ownership store, written only by the gateway process. */
export class FileOwnershipStore implements OwnershipStore {
  private readonly table: JournaledTable<OwnershipRecord>;
  /** Prompt ids per key, for finding a key's recent prompts without a scan. */
  private readonly promptsByKey = new Map<string, Set<string>>();
  private readonly order: ClaimOrder;

  constructor(options: FileOwnershipStoreOptions) {
    this.order = new ClaimOrder(options.claimsKept);
    this.table = new JournaledTable({
      snapshotPath: join(options.directory, 'ownership.json'),
      journalPath: join(options.directory, 'ownership.journal'),
      lockPath: join(options.directory, '.ownership.lock'),
      writers: 'this-process',
      ...(options.onWrite ? { onWrite: options.onWrite } : {}),
      parse: parseRecord,
      onChange: (recordId, before, after) => {
        const [kind, id] = splitRecordId(recordId);
        if (!before && after) this.order.added(kind, id);
        if (before && !after) this.order.removed(kind, id);
        if (kind !== 'prompt') return;
        if (before) this.promptsByKey.get(before.key_id)?.delete(id);
        if (after) {
          let prompts = this.promptsByKey.get(after.key_id);
          if (!prompts) this.promptsByKey.set(after.key_id, (prompts = new Set()));
          prompts.add(id);
        }
      },
    });
  }

  open(): Promise<void> {
    return this.table.open();
  }

  ownerOf(kind: OwnedKind, id: string): string | undefined {
    return this.table.get(`${kind}:${id}`)?.key_id;
  }

  /** Claims `id`, forgetting the oldest claims of its kind in the same write when too many are held. */
  claim(kind: OwnedKind, id: string, keyId: string): Promise<string> {
    const recordId = `${kind}:${id}`;
    return this.table.change(() => {
      const current = this.table.get(recordId);
      if (current) return { ops: [], result: current.key_id };
      const forgotten = this.order.overflow(kind).map((old) => ({ op: 'delete' as const, id: `${kind}:${old}` }));
      return { ops: [...forgotten, { op: 'put', id: recordId, value: { key_id: keyId, at: Date.now() / 1000 } }], result: keyId };
    });
  }

  recentPrompts(keyId: string, limit: number): Array<{ promptId: string; outputsRecorded: boolean }> {
    const prompts = [...(this.promptsByKey.get(keyId) ?? [])].map((promptId) => ({ promptId, record: this.table.get(`prompt:${promptId}`)! }));
    prompts.sort((a, b) => b.record.at - a.record.at);
    return prompts.slice(0, limit).map(({ promptId, record }) => ({ promptId, outputsRecorded: record.outputs_recorded === true }));
  }

  markOutputsRecorded(promptId: string): Promise<void> {
    const recordId = `prompt:${promptId}`;
    return this.table.change(() => {
      const current = this.table.get(recordId);
      if (!current || current.outputs_recorded) return { ops: [], result: undefined };
      return { ops: [{ op: 'put', id: recordId, value: { ...current, outputs_recorded: true } }], result: undefined };
    });
  }

  comfyUserOf(keyId: string): string | undefined {
    return this.table.get(`${COMFY_USER}:${keyId}`)?.comfy_user;
  }

  setComfyUser(keyId: string, comfyUser: string): Promise<void> {
    return this.table.change(() => ({
      ops: [{ op: 'put', id: `${COMFY_USER}:${keyId}`, value: { key_id: keyId, at: Date.now() / 1000, comfy_user: comfyUser } }],
      result: undefined,
    }));
  }

  async close(): Promise<void> {
    await this.table.close();
  }
}
