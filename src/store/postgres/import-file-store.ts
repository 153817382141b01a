// Copies a JSON-file store (a gateway's user directory) into PostgreSQL, idempotently: what is already there is not copied again.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringifyExactJson } from '../../json/exact-json.js';
import { FileWorkflowStore } from '../file/file-workflow-store.js';
import { readJournal } from '../file/journal.js';
import { nextJournalPathOf, patchedValue } from '../file/journaled-table.js';
import {
  HOURLY_KEPT_SECONDS,
  isCountedEntry,
  isUsageRecord,
  loadUsageFile,
  recordLines,
  addToTotals,
  type DayBucket,
  type TotalsByKey,
  type UsageJournalEntry,
} from '../file/usage-file.js';
import { parseDelivery } from '../delivery-record.js';
import { parseJobRecord } from '../job-record.js';
import { parseStoredKey } from '../key-record.js';
import { StoreCorruptError, type AuditEntry, type JobRecord, type KeyRecord, type UsageRecord, type WebhookDelivery } from '../types.js';
import type { PostgresDatabase } from './database.js';
import { DAILY_COLUMN_TYPES, DAILY_COLUMNS } from './postgres-usage-store.js';

/** What one kind of data came to: how many the JSON store holds, and how many were new to PostgreSQL. */
export interface ImportCount {
  found: number;
  copied: number;
}

export interface ImportReport {
  keys: ImportCount;
  usage_records: ImportCount;
  /** Per key and UTC day; "copied" counts days added or raised to the JSON store's figures. */
  daily_totals: ImportCount;
  ownership: ImportCount;
  sessions: ImportCount;
  audit_entries: ImportCount;
  jobs: ImportCount;
  workflows: ImportCount;
  webhook_deliveries: ImportCount;
}

const BATCH = 5000;
/** Jobs per insert: fewer, as a held job carries its whole prompt. */
const JOB_BATCH = 500;

/**
 * Reads the JSON store in `directory` without writing to it, and inserts into PostgreSQL whatever is
 * not there yet: keys by key_id (a key deleted in PostgreSQL stays deleted), usage records and audit
 * entries by an id derived from their content, ownership records, sessions, jobs and webhook deliveries by their id, workflows by name. Daily totals
 * are raised to the JSON store's figures where PostgreSQL has less. Running it twice copies nothing the
 * second time. The triggers announce the copied keys, sessions, ownership and jobs to running gateways.
 * @throws StoreCorruptError when a store file cannot be read; the database error when a write fails.
 * @example const report = await importFileStore('./user', database);
 */
export async function importFileStore(directory: string, database: PostgresDatabase, now = Date.now() / 1000): Promise<ImportReport> {
  return {
    keys: await importKeys(directory, database),
    ...(await importUsage(directory, database, now)),
    ownership: await importOwnership(directory, database),
    sessions: await importSessions(directory, database, now),
    audit_entries: await importAudit(directory, database),
    jobs: await importJobs(directory, database),
    workflows: await importWorkflows(directory, database),
    webhook_deliveries: await importDeliveries(directory, database),
  };
}

/** A journaled table's records, read without writing: the snapshot (one JSON object keyed by id), then the journal's complete lines. */
async function readTable(directory: string, name: string): Promise<Map<string, unknown>> {
  const snapshotPath = join(directory, `${name}.json`);
  const records = new Map<string, unknown>();
  let text: string | null = null;
  try {
    text = await readFile(snapshotPath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (text !== null) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new StoreCorruptError(snapshotPath, `it is not valid JSON: ${(error as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new StoreCorruptError(snapshotPath, 'it is not a JSON object keyed by id');
    for (const [id, value] of Object.entries(parsed)) records.set(id, value);
  }
  const journalPath = join(directory, name === 'api_keys' ? 'api_keys.journal' : `${name}.journal`);
  // The changes appended while a snapshot was being rewritten follow the journal's, in the next journal.
  const journals = [await readJournal(journalPath, 0), await readJournal(nextJournalPathOf(journalPath), 0)];
  for (const entry of journals.flatMap((journal) => journal?.entries ?? []) as Array<{ op?: string; id?: string; value?: unknown; fields?: unknown }>) {
    if (typeof entry.id !== 'string') continue;
    if (entry.op === 'put') records.set(entry.id, entry.value);
    else if (entry.op === 'delete') records.delete(entry.id);
    else if (entry.op === 'patch') {
      const patched = patchedValue(journalPath, entry.id, records.get(entry.id), entry.fields);
      if (patched) records.set(entry.id, patched);
    }
  }
  return records;
}

async function importKeys(directory: string, database: PostgresDatabase): Promise<ImportCount> {
  const keys: KeyRecord[] = [];
  for (const [id, value] of await readTable(directory, 'api_keys')) {
    const parsed = parseStoredKey(value);
    if (typeof parsed === 'string') throw new StoreCorruptError(join(directory, 'api_keys.json'), `key ${JSON.stringify(id)}: ${parsed}`);
    keys.push(parsed);
  }
  let copied = 0;
  // BATCH keys a statement: a million in one ran past the statement timeout.
  for (let i = 0; i < keys.length; i += BATCH) copied += await insertKeys(database, keys.slice(i, i + BATCH));
  return { found: keys.length, copied };
}

/** Inserts keys unless their id is taken; resolves how many were inserted. */
async function insertKeys(database: PostgresDatabase, keys: readonly KeyRecord[]): Promise<number> {
  const column = <K extends keyof KeyRecord>(field: K): Array<KeyRecord[K]> => keys.map((k) => k[field]);
  const { rowCount } = await database.query(
    `INSERT INTO api_keys (key_id, name, created_at, last_used, rate_limit, is_active, metadata, role, expires_at, key_prefix, key_hash, previous_key_hash,
       previous_key_valid_until, max_queued, max_running, daily_execution_seconds, policy, webhook_url)
     SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::int[], $6::bool[], $7::jsonb[], $8::text[], $9::float8[], $10::text[], $11::text[],
       $12::text[], $13::float8[], $14::int[], $15::int[], $16::int[], $17::jsonb[], $18::text[])
     ON CONFLICT (key_id) DO NOTHING`,
    [
      column('key_id'),
      column('name'),
      column('created_at'),
      column('last_used'),
      column('rate_limit'),
      column('is_active'),
      keys.map((k) => JSON.stringify(k.metadata ?? {})),
      column('role'),
      column('expires_at'),
      column('key_prefix'),
      column('key_hash'),
      column('previous_key_hash'),
      column('previous_key_valid_until'),
      column('max_queued'),
      column('max_running'),
      column('daily_execution_seconds'),
      keys.map((k) => (k.policy === null ? null : JSON.stringify(k.policy))),
      column('webhook_url'),
    ],
  );
  return rowCount ?? 0;
}

/** Every usage record of the JSON store in order: the main file, a journal set aside and not merged yet, the journal. */
async function* usageRecords(directory: string): AsyncGenerator<UsageRecord> {
  const mainPath = join(directory, 'api_usage.json');
  const loaded = await loadUsageFile(mainPath);
  for await (const lines of recordLines(mainPath, loaded)) {
    for (const line of lines) {
      const record = JSON.parse(line) as unknown;
      if (isUsageRecord(record)) yield record;
    }
  }
  const aside = await readJournal(join(directory, 'api_usage.journal.compacting'), 0);
  const asideId = (aside?.entries[0] as { journal_id?: unknown } | undefined)?.journal_id;
  const asideMerged = aside !== null && typeof asideId === 'string' && asideId === loaded?.header.merged_journal;
  for (const chunk of [asideMerged ? null : aside, await readJournal(join(directory, 'api_usage.journal'), 0)]) {
    for (const entry of (chunk?.entries ?? []) as UsageJournalEntry[]) if (isUsageRecord(entry)) yield entry;
  }
}

/** The JSON store's daily totals: the main file's header plus what its journals add. */
async function usageTotals(directory: string): Promise<TotalsByKey> {
  const loaded = await loadUsageFile(join(directory, 'api_usage.json'));
  const totals: TotalsByKey = loaded?.header.daily_totals ?? {};
  const aside = await readJournal(join(directory, 'api_usage.journal.compacting'), 0);
  const asideId = (aside?.entries[0] as { journal_id?: unknown } | undefined)?.journal_id;
  const asideMerged = aside !== null && typeof asideId === 'string' && asideId === loaded?.header.merged_journal;
  for (const chunk of [asideMerged ? null : aside, await readJournal(join(directory, 'api_usage.journal'), 0)]) {
    for (const entry of (chunk?.entries ?? []) as UsageJournalEntry[]) if (isCountedEntry(entry)) addToTotals(totals, entry);
  }
  return totals;
}

async function importUsage(directory: string, database: PostgresDatabase, now: number): Promise<Pick<ImportReport, 'usage_records' | 'daily_totals'>> {
  const records = { found: 0, copied: 0 };
  const occurrences = new Map<string, number>();
  let batch: Array<{ id: string; record: UsageRecord }> = [];
  const write = async (): Promise<void> => {
    if (batch.length === 0) return;
    const rows = batch;
    batch = [];
    const {
      rows: [result],
    } = await database.query<{ n: number }>(
      `WITH inserted AS (
         INSERT INTO usage_records (import_id, key_id, endpoint, ts, duration, success, method, status)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::bool[], $7::text[], $8::int[])
         ON CONFLICT (import_id) DO NOTHING RETURNING key_id, ts
       ), hourly AS (
         INSERT INTO usage_hourly AS h (key_id, hour, requests)
         SELECT key_id, floor(ts / 3600)::int, count(*) FROM inserted WHERE ts >= $9 GROUP BY 1, 2
         ON CONFLICT (key_id, hour) DO UPDATE SET requests = h.requests + excluded.requests, updated_at = clock_timestamp()
       )
       SELECT count(*)::int AS n FROM inserted`,
      [
        rows.map((r) => r.id),
        rows.map((r) => r.record.key_id),
        rows.map((r) => (typeof r.record.endpoint === 'string' ? r.record.endpoint : '')),
        rows.map((r) => r.record.timestamp),
        rows.map((r) => (typeof r.record.duration === 'number' ? r.record.duration : 0)),
        rows.map((r) => r.record.success),
        rows.map((r) => (typeof r.record.metadata?.method === 'string' ? r.record.metadata.method : '')),
        rows.map((r) => (Number.isInteger(r.record.metadata?.status) ? r.record.metadata.status : 0)),
        now - HOURLY_KEPT_SECONDS,
      ],
    );
    records.copied += result?.n ?? 0;
  };
  for await (const record of usageRecords(directory)) {
    records.found += 1;
    batch.push({ id: contentId('usage', canonicalUsage(record), occurrences), record });
    if (batch.length >= BATCH) await write();
  }
  await write();

  const totals = await usageTotals(directory);
  const days: Array<[string, string, DayBucket]> = [];
  for (const [keyId, byDay] of Object.entries(totals)) for (const [day, bucket] of Object.entries(byDay)) days.push([keyId, day, bucket]);
  let raised = 0;
  for (let i = 0; i < days.length; i += BATCH) {
    const chunk = days.slice(i, i + BATCH);
    const { rowCount } = await database.query(
      `INSERT INTO usage_daily AS d (key_id, day, ${DAILY_COLUMNS.join(', ')})
       SELECT * FROM unnest($1::text[], $2::text[], ${DAILY_COLUMN_TYPES.map((type, i) => `$${i + 3}::${type}[]`).join(', ')})
       ON CONFLICT (key_id, day) DO UPDATE SET ${DAILY_COLUMNS.map((c) => `${c} = GREATEST(d.${c}, excluded.${c})`).join(', ')}, updated_at = clock_timestamp()
       WHERE ${DAILY_COLUMNS.map((c) => `d.${c} < excluded.${c}`).join(' OR ')}`,
      [chunk.map((d) => d[0]), chunk.map((d) => d[1]), ...DAILY_COLUMNS.map((_, i) => chunk.map((d) => d[2][i]))],
    );
    raised += rowCount ?? 0;
  }
  return { usage_records: records, daily_totals: { found: days.length, copied: raised } };
}

async function importOwnership(directory: string, database: PostgresDatabase): Promise<ImportCount> {
  const rows: Array<{ kind: string; id: string; key_id: string; at: number; outputs_recorded: boolean; comfy_user: string | null }> = [];
  for (const [recordId, value] of await readTable(directory, 'ownership')) {
    const v = value as { key_id?: unknown; at?: unknown; outputs_recorded?: unknown; comfy_user?: unknown } | null;
    const colon = recordId.indexOf(':');
    if (colon < 0 || typeof v?.key_id !== 'string' || typeof v.at !== 'number')
      throw new StoreCorruptError(join(directory, 'ownership.json'), `record ${JSON.stringify(recordId)} needs a kind, key_id and at`);
    rows.push({
      kind: recordId.slice(0, colon),
      id: recordId.slice(colon + 1),
      key_id: v.key_id,
      at: v.at,
      outputs_recorded: v.outputs_recorded === true,
      comfy_user: typeof v.comfy_user === 'string' ? v.comfy_user : null,
    });
  }
  let copied = 0;
  for (let i = 0; i < rows.length; i += BATCH) {
    const chunk = rows.slice(i, i + BATCH);
    const { rowCount } = await database.query(
      `INSERT INTO ownership (kind, id, key_id, at, outputs_recorded, comfy_user)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::bool[], $6::text[]) ON CONFLICT (kind, id) DO NOTHING`,
      [
        chunk.map((r) => r.kind),
        chunk.map((r) => r.id),
        chunk.map((r) => r.key_id),
        chunk.map((r) => r.at),
        chunk.map((r) => r.outputs_recorded),
        chunk.map((r) => r.comfy_user),
      ],
    );
    copied += rowCount ?? 0;
  }
  return { found: rows.length, copied };
}

async function importSessions(directory: string, database: PostgresDatabase, now: number): Promise<ImportCount> {
  const rows: Array<{ hash: string; keyId: string; keyHash: string; createdAt: number; expiresAt: number }> = [];
  for (const [hash, value] of await readTable(directory, 'sessions')) {
    const v = value as { keyId?: unknown; keyHash?: unknown; createdAt?: unknown; expiresAt?: unknown } | null;
    if (typeof v?.keyId !== 'string' || typeof v.createdAt !== 'number' || typeof v.expiresAt !== 'number')
      throw new StoreCorruptError(join(directory, 'sessions.json'), 'a session needs keyId, createdAt and expiresAt');
    // An expired session could never be used again, nor one bound to no secret: nothing to copy.
    if (v.expiresAt > now && typeof v.keyHash === 'string')
      rows.push({ hash, keyId: v.keyId, keyHash: v.keyHash, createdAt: v.createdAt, expiresAt: v.expiresAt });
  }
  if (rows.length === 0) return { found: 0, copied: 0 };
  const { rowCount } = await database.query(
    `INSERT INTO sessions (id_hash, key_id, key_hash, created_at, expires_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[]) ON CONFLICT (id_hash) DO NOTHING`,
    [rows.map((r) => r.hash), rows.map((r) => r.keyId), rows.map((r) => r.keyHash), rows.map((r) => r.createdAt), rows.map((r) => r.expiresAt)],
  );
  return { found: rows.length, copied: rowCount ?? 0 };
}

async function importAudit(directory: string, database: PostgresDatabase): Promise<ImportCount> {
  const chunk = await readJournal(join(directory, 'audit.jsonl'), 0);
  const entries = (chunk?.entries ?? []) as AuditEntry[];
  const occurrences = new Map<string, number>();
  const rows = entries.map((entry) => ({ id: contentId('audit', JSON.stringify(entry), occurrences), entry }));
  let copied = 0;
  for (let i = 0; i < rows.length; i += BATCH) {
    const part = rows.slice(i, i + BATCH);
    const { rowCount } = await database.query(
      `INSERT INTO audit_log (import_id, ts, actor, action, key_id, ip, details)
       SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[]) ON CONFLICT (import_id) DO NOTHING`,
      [
        part.map((r) => r.id),
        part.map((r) => r.entry.ts),
        part.map((r) => String(r.entry.actor)),
        part.map((r) => String(r.entry.action)),
        part.map((r) => r.entry.key_id ?? null),
        part.map((r) => r.entry.ip ?? null),
        part.map((r) => (r.entry.details === undefined ? null : JSON.stringify(r.entry.details))),
      ],
    );
    copied += rowCount ?? 0;
  }
  return { found: entries.length, copied };
}

async function importJobs(directory: string, database: PostgresDatabase): Promise<ImportCount> {
  const jobs: JobRecord[] = [];
  for (const [id, value] of await readTable(directory, 'jobs')) {
    const job = parseJobRecord(value);
    if (typeof job === 'string') throw new StoreCorruptError(join(directory, 'jobs.json'), `job ${JSON.stringify(id)}: ${job}`);
    jobs.push({ ...job, id });
  }
  const json = (value: unknown): string | null => (value === null ? null : JSON.stringify(value));
  let copied = 0;
  for (let i = 0; i < jobs.length; i += JOB_BATCH) {
    const part = jobs.slice(i, i + JOB_BATCH);
    const column = <K extends keyof JobRecord>(field: K): Array<JobRecord[K]> => part.map((job) => job[field]);
    const { rowCount } = await database.query(
      `INSERT INTO jobs (id, key_id, client_id, backend, upstream_id, status, admitted_at, forwarded_at, started_at, finished_at, execution_seconds, outputs, error, request, front, webhook, sends)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[],
         $12::jsonb[], $13::jsonb[], $14::jsonb[], $15::bool[], $16::jsonb[], $17::int[])
       ON CONFLICT (id) DO NOTHING`,
      [
        column('id'),
        column('key_id'),
        column('client_id'),
        column('backend'),
        column('upstream_id'),
        column('status'),
        column('admitted_at'),
        column('forwarded_at'),
        column('started_at'),
        column('finished_at'),
        column('execution_seconds'),
        part.map((job) => JSON.stringify(job.outputs)),
        part.map((job) => json(job.error)),
        part.map((job) => json(job.request)),
        column('front'),
        part.map((job) => json(job.webhook)),
        part.map((job) => job.sends ?? null),
      ],
    );
    copied += rowCount ?? 0;
  }
  return { found: jobs.length, copied };
}

/** The named workflows of `workflows.json`, each inserted unless PostgreSQL has one of that name. */
async function importWorkflows(directory: string, database: PostgresDatabase): Promise<ImportCount> {
  const workflows = await new FileWorkflowStore({ directory }).list();
  let copied = 0;
  for (const w of workflows) {
    const { rowCount } = await database.query(
      `INSERT INTO workflows (name, prompt, description, inputs, openai_images, created_at, updated_at) VALUES ($1, $2::json, $3, $4::json, $5::json, $6, $7)
       ON CONFLICT (name) DO NOTHING`,
      [
        w.name,
        stringifyExactJson(w.prompt),
        w.description,
        stringifyExactJson(w.inputs),
        w.openai_images ? JSON.stringify(w.openai_images) : null,
        w.created_at,
        w.updated_at,
      ],
    );
    copied += rowCount ?? 0;
  }
  return { found: workflows.length, copied };
}

/**
 * Copies the webhook outbox, each delivery by its id, so that a pending delivery goes on and the
 * start-up catch-up does not send again an event the JSON store's gateway delivered.
 */
async function importDeliveries(directory: string, database: PostgresDatabase): Promise<ImportCount> {
  const deliveries: WebhookDelivery[] = [];
  for (const [id, value] of await readTable(directory, 'webhook-deliveries')) {
    const delivery = parseDelivery(value);
    if (typeof delivery === 'string') throw new StoreCorruptError(join(directory, 'webhook-deliveries.json'), `delivery ${JSON.stringify(id)}: ${delivery}`);
    deliveries.push({ ...delivery, id });
  }
  let copied = 0;
  for (let i = 0; i < deliveries.length; i += JOB_BATCH) {
    const part = deliveries.slice(i, i + JOB_BATCH);
    const column = <K extends keyof WebhookDelivery>(field: K): Array<WebhookDelivery[K]> => part.map((delivery) => delivery[field]);
    const { rowCount } = await database.query(
      `INSERT INTO webhook_deliveries (id, job_id, key_id, event, url, body, state, created_at, next_attempt_at, attempts)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::float8[], $9::float8[], $10::jsonb[])
       ON CONFLICT (id) DO NOTHING`,
      [
        column('id'),
        column('job_id'),
        column('key_id'),
        column('event'),
        column('url'),
        column('body'),
        column('state'),
        column('created_at'),
        column('next_attempt_at'),
        part.map((delivery) => JSON.stringify(delivery.attempts)),
      ],
    );
    copied += rowCount ?? 0;
  }
  return { found: deliveries.length, copied };
}

/** A usage record in one fixed field order, so the same record gets the same id wherever it was read from. */
function canonicalUsage(r: UsageRecord): string {
  return JSON.stringify([r.key_id, r.endpoint, r.timestamp, r.duration, r.success, r.metadata?.method ?? null, r.metadata?.status ?? null]);
}

/** An id from content plus how many identical items came before it, so identical entries are each copied once. */
function contentId(kind: string, content: string, occurrences: Map<string, number>): string {
  const digest = createHash('sha256').update(content).digest('base64url');
  const seen = occurrences.get(digest) ?? 0;
  occurrences.set(digest, seen + 1);
  return `${kind}:${digest}:${seen}`;
}
