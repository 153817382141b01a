// The job registry in `jobs.json` (+ journal), written by the gateway process alone, with its indexes in memory.

import { join } from 'node:path';
import { jsonNumber, jsonStringContent } from '../../json/json-text.js';
import { IndexedJobReads } from '../job-index.js';
import { jobWithFields, parseJobRecord, patchedFields } from '../job-record.js';
import { JobSweeper, type JobRetentionOptions } from '../job-retention.js';
import { hasJsonTextBody, withJsonTextBody } from '../json-text-body.js';
import type { JobPatch, JobRecord, JobStatus, JobStore } from '../types.js';
import { JournaledTable } from './journaled-table.js';

export interface FileJobStoreOptions extends JobRetentionOptions {
  directory: string;
  /** Told how long each durable append took, in seconds (for metrics). */
  onWrite?(seconds: number): void;
}

/**
 * Jobs in a journaled table keyed by job id. Reads come from a `JobIndex` kept in step with the table;
 * a change resolves once its append is fsynced.
 */
export class FileJobStore extends IndexedJobReads implements JobStore {
  private readonly table: JournaledTable<JobRecord>;
  private readonly sweeper: JobSweeper;

  constructor(options: FileJobStoreOptions) {
    super();
    this.table = new JournaledTable<JobRecord>({
      snapshotPath: join(options.directory, 'jobs.json'),
      journalPath: join(options.directory, 'jobs.journal'),
      lockPath: join(options.directory, '.jobs.lock'),
      writers: 'this-process',
      // A job is written whole once and patched four times or so (sent, started, its outputs, ended): with a journal up to
      // the snapshot's size, the registry is rewritten once per its size of changes instead of four times.
      journalShare: 1,
      // A held prompt (an editor workflow is often 50–200 KB) is written once, then dropped when it runs: 16 MiB of journal
      // before a rewrite keeps a registry of a few thousand jobs from being rewritten every few prompts (replayed in well
      // under a second at start-up).
      minJournalBytes: 16 * 1024 * 1024,
      ...(options.onWrite ? { onWrite: options.onWrite } : {}),
      parse: (value) => withBodyAsText(parseJobRecord(value)),
      // The registry's own jobs are JobRecords, their bodies already text (`withJsonTextBody`): parsing each change again
      // cost more than anything else a prompt's job does in memory.
      ownRecord: jobWithFields,
      valueText: jobFieldsText,
      patchText: jobFieldsText,
      onChange: (id, _before, after) => {
        // The table's id is the job's, whatever a hand-edited record says.
        if (after) this.index.set(after.id === id ? after : { ...after, id });
        else this.index.delete(id);
      },
    });
    this.sweeper = new JobSweeper(options, (cutoff, limit) => this.forgetBatch(cutoff, limit));
  }

  async open(): Promise<void> {
    await this.table.open();
    this.sweeper.start();
  }

  create(job: JobRecord): Promise<boolean> {
    return this.table.change(() => (this.table.get(job.id) ? { ops: [], result: false } : { ops: [{ op: 'put', id: job.id, value: job }], result: true }));
  }

  update(id: string, patch: JobPatch, options: { ifStatus?: JobStatus } = {}): Promise<JobRecord | undefined> {
    return this.table.change(() => {
      const current = this.table.get(id);
      if (!current || (options.ifStatus !== undefined && current.status !== options.ifStatus)) return { ops: [], result: undefined };
      // Only the fields that change are written: a held job's request (the whole workflow) is not written again with each change.
      const fields = patchedFields(patch);
      return { ops: [{ op: 'patch', id, fields }], result: jobWithFields(current, fields) };
    });
  }

  /** Forgets a batch of expired jobs: out of the index at once (one pass over each list), then out of the files. */
  private async forgetBatch(cutoff: number, limit: number): Promise<number> {
    const ids = this.index.expired(cutoff, limit);
    if (ids.length === 0) return 0;
    await this.table.change(() => {
      this.index.deleteMany(ids);
      return { ops: ids.map((id) => ({ op: 'delete' as const, id })), result: undefined };
    });
    return ids.length;
  }

  async close(): Promise<void> {
    await this.sweeper.stop();
    await this.table.close();
  }
}

/**
 * A job read from the files, its kept body (written as JSON by `jobFieldsText`, or by an earlier version) as its
 * JSON text: one string per held job for the garbage collector instead of the graph, and written raw again.
 */
function withBodyAsText(job: JobRecord | string): JobRecord | string {
  if (typeof job === 'string' || !job.request) return job;
  const { body } = job.request;
  return typeof body === 'object' && body !== null ? { ...job, request: withJsonTextBody({ ...job.request, body }) } : job;
}

/**
 * A job, or a patch's fields, as JSON for its journal lines and `jobs.json`: the fields present, written one by one
 * in `JobRecord`'s order, `sends` last (a job in memory has every field but perhaps `sends`: `parseJobRecord` and
 * `jobWithFields` make it so). `JSON.stringify` escapes every name and value character by character. A kept body this
 * process serialized is written in raw, as the JSON value it is (read back as its text by `withBodyAsText`): as a
 * string inside the job's JSON, every quote of a 100 KB editor workflow would be escaped again with each write. Any
 * other body (one an earlier version stored as a string) is written as a string, as it was read.
 */
function jobFieldsText(fields: Partial<JobRecord>): string {
  let text = '';
  if (fields.id !== undefined) text += `,"id":"${jsonStringContent(fields.id)}"`;
  if (fields.key_id !== undefined) text += `,"key_id":"${jsonStringContent(fields.key_id)}"`;
  if (fields.client_id !== undefined) text += `,"client_id":${stringOrNull(fields.client_id)}`;
  if (fields.backend !== undefined) text += `,"backend":"${jsonStringContent(fields.backend)}"`;
  if (fields.upstream_id !== undefined) text += `,"upstream_id":${stringOrNull(fields.upstream_id)}`;
  if (fields.status !== undefined) text += `,"status":"${jsonStringContent(fields.status)}"`;
  if (fields.admitted_at !== undefined) text += `,"admitted_at":${jsonNumber(fields.admitted_at)}`;
  if (fields.forwarded_at !== undefined) text += `,"forwarded_at":${numberOrNull(fields.forwarded_at)}`;
  if (fields.started_at !== undefined) text += `,"started_at":${numberOrNull(fields.started_at)}`;
  if (fields.finished_at !== undefined) text += `,"finished_at":${numberOrNull(fields.finished_at)}`;
  if (fields.execution_seconds !== undefined) text += `,"execution_seconds":${numberOrNull(fields.execution_seconds)}`;
  if (fields.outputs !== undefined) text += `,"outputs":${fields.outputs.length === 0 ? '[]' : JSON.stringify(fields.outputs)}`;
  if (fields.error !== undefined) text += `,"error":${objectOrNull(fields.error)}`;
  if (fields.request !== undefined) text += `,"request":${requestText(fields.request)}`;
  if (fields.front !== undefined) text += `,"front":${fields.front}`;
  if (fields.webhook !== undefined) text += `,"webhook":${objectOrNull(fields.webhook)}`;
  if (fields.sends !== undefined) text += `,"sends":${jsonNumber(fields.sends)}`;
  return text === '' ? '{}' : `{${text.slice(1)}}`;
}

/** A kept request as JSON: its body raw when `withJsonTextBody` made it (see jobFieldsText), else as `JSON.stringify` writes it. */
function requestText(request: JobRecord['request']): string {
  if (!request || !hasJsonTextBody(request)) return objectOrNull(request);
  const { body, ...others } = request;
  const othersText = JSON.stringify(others);
  return othersText === '{}' ? `{"body":${body}}` : `{"body":${body},${othersText.slice(1)}`;
}

function stringOrNull(value: string | null): string {
  return value === null ? 'null' : `"${jsonStringContent(value)}"`;
}

function numberOrNull(value: number | null): string {
  return value === null ? 'null' : jsonNumber(value);
}

function objectOrNull(value: object | null): string {
  return value === null ? 'null' : JSON.stringify(value);
}
