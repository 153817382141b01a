// Ownership records in `ownership.json` (+ journal): which key submitted each prompt, holds each clientId, made each file.

import { join } from 'node:path';
import { claimsFull } from '../../errors.js';
import { ClaimRetention, type ClaimRetentionOptions } from '../claim-retention.js';
import { jsonNumber, jsonStringContent } from '../../json/json-text.js';
import { foldCase } from '../file-name-case.js';
import type { OwnedKind, OwnershipStore } from '../types.js';
import { JournaledTable, type TableOp } from './journaled-table.js';

/** One ownership record; `comfy_user` only on a key's ComfyUI-user record. */
interface OwnershipRecord {
  key_id: string;
  at: number;
  outputs_recorded?: boolean;
  comfy_user?: string;
}

const COMFY_USER = 'comfy-user';

/**
 * A stored record with the fields a record has, and only those: every record in memory then has the fields
 * `recordText` writes, in its order.
 */
function parseRecord(value: unknown): OwnershipRecord | string {
  const v = value as Partial<OwnershipRecord> | null;
  if (typeof v !== 'object' || v === null || typeof v.key_id !== 'string' || typeof v.at !== 'number') return 'needs key_id and at';
  return {
    key_id: v.key_id,
    at: v.at,
    ...(v.outputs_recorded === true ? { outputs_recorded: true } : {}),
    ...(typeof v.comfy_user === 'string' ? { comfy_user: v.comfy_user } : {}),
  };
}

/** `JSON.stringify(record)` of a record whose fields are in `OwnershipRecord`'s order (as every record in memory has them), written field by field. */
function recordText(record: OwnershipRecord): string {
  let text = `{"key_id":"${jsonStringContent(record.key_id)}","at":${jsonNumber(record.at)}`;
  if (record.outputs_recorded !== undefined) text += `,"outputs_recorded":${record.outputs_recorded}`;
  if (record.comfy_user !== undefined) text += `,"comfy_user":"${jsonStringContent(record.comfy_user)}"`;
  return `${text}}`;
}

/** Splits a record id (`kind:id`) into its kind and id. */
function splitRecordId(recordId: string): [string, string] {
  const colon = recordId.indexOf(':');
  return [recordId.slice(0, colon), recordId.slice(colon + 1)];
}

export interface FileOwnershipStoreOptions {
  directory: string;
  /** How long prompt and clientId claims are kept, and how many may be held (defaults in claim-retention.ts). */
  retention?: ClaimRetentionOptions;
  onWrite?(seconds: number): void;
}

/** The JSON-file ownership store, written only by the gateway process. */
export class FileOwnershipStore implements OwnershipStore {
  private readonly table: JournaledTable<OwnershipRecord>;
  /** Prompt ids per key, for finding a key's recent prompts without a scan. */
  private readonly promptsByKey = new Map<string, Set<string>>();
  private readonly retention: ClaimRetention;

  constructor(options: FileOwnershipStoreOptions) {
    this.retention = new ClaimRetention(options.retention);
    this.table = new JournaledTable({
      snapshotPath: join(options.directory, 'ownership.json'),
      journalPath: join(options.directory, 'ownership.journal'),
      lockPath: join(options.directory, '.ownership.lock'),
      writers: 'this-process',
      // A claim is written once or twice (a prompt's again once its outputs are recorded): with a journal up
      // to the snapshot's size, a growing table is rewritten about twice its size in all, five times at a quarter.
      journalShare: 1,
      ...(options.onWrite ? { onWrite: options.onWrite } : {}),
      parse: parseRecord,
      valueText: recordText,
      onChange: (recordId, before, after) => {
        const [kind, id] = splitRecordId(recordId);
        this.retention.changed(kind, id, before, after);
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

  async open(): Promise<void> {
    await this.table.open();
    await this.foldFileIds();
  }

  /**
   * Moves the file claims recorded before file ids were case-folded to their folded id. Of claims whose names
   * differ only by case (two keys' files on a case-sensitive disk), the one already folded, else the oldest,
   * keeps the name; the others are forgotten (on a case-insensitive disk they were one file).
   */
  private async foldFileIds(): Promise<void> {
    const unfolded = [...this.table.entries()].filter(([recordId]) => recordId.startsWith('file:') && foldCase(recordId) !== recordId);
    if (unfolded.length === 0) return;
    unfolded.sort(([, a], [, b]) => a.at - b.at);
    await this.table.change(() => {
      const ops: Array<TableOp<OwnershipRecord>> = [];
      const taken = new Set<string>();
      for (const [recordId, record] of unfolded) {
        const folded = foldCase(recordId);
        if (!this.table.get(folded) && !taken.has(folded)) {
          ops.push({ op: 'put', id: folded, value: record });
          taken.add(folded);
        }
        ops.push({ op: 'delete', id: recordId });
      }
      return { ops, result: undefined };
    });
  }

  ownerOf(kind: OwnedKind, id: string): string | undefined {
    return this.table.get(`${kind}:${id}`)?.key_id;
  }

  /**
   * Claims `id` (or renews its owner's clientId claim), forgetting in the same write expired claims of its
   * kind and, past the key's share, the key's own oldest.
   */
  async claim(kind: OwnedKind, id: string, keyId: string): Promise<string> {
    const recordId = `${kind}:${id}`;
    /** The owner that stands without a write: another key, or this key's claim that needs no renewal. */
    const standingOwner = (now: number): string | undefined => {
      const current = this.table.get(recordId);
      return current && (current.key_id !== keyId || !this.retention.needsRenewal(kind, current.at, now)) ? current.key_id : undefined;
    };
    // An owner already on disk is the answer at once, without waiting for other claims' appends in flight (a client sends every
    // prompt with the same clientId).
    const known = this.table.isDurable(recordId) ? standingOwner(Date.now() / 1000) : undefined;
    if (known !== undefined) return known;
    return this.table.change(() => {
      const now = Date.now() / 1000;
      const standing = standingOwner(now);
      if (standing !== undefined) return { ops: [], result: standing };
      const current = this.table.get(recordId);
      if (current) return { ops: [{ op: 'put', id: recordId, value: { ...current, at: now } }], result: keyId };
      const expired = this.retention.expired(kind, now);
      const forgotten = [...expired, ...this.retention.pastShare(kind, keyId, expired)];
      if (this.retention.isFull(kind, forgotten.length)) throw claimsFull(kind, this.retention.cap);
      const deletes = forgotten.map((old) => ({ op: 'delete' as const, id: `${kind}:${old}` }));
      return { ops: [...deletes, { op: 'put', id: recordId, value: { key_id: keyId, at: now } }], result: keyId };
    });
  }

  async release(kind: OwnedKind, id: string, keyId: string): Promise<void> {
    const recordId = `${kind}:${id}`;
    return this.table.change(() => ({ ops: this.table.get(recordId)?.key_id === keyId ? [{ op: 'delete', id: recordId }] : [], result: undefined }));
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
      return { ops: [{ op: 'put', id: recordId, value: { key_id: current.key_id, at: current.at, outputs_recorded: true } }], result: undefined };
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
