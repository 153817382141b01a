// The `jobs` table's statements: a job created, patched or read, one at a time or many in one statement.

import { patchedFields } from '../job-record.js';
import type { JobPatch, JobRecord, JobStatus } from '../types.js';
import type { PostgresDatabase } from './database.js';

/** A row as read or announced: the job and its revision. */
export type JobRow = JobRecord & { rev: number };

/** A write to the table: a job created, or patched (while it has `ifStatus`, if given). */
export type JobWrite = { op: 'create'; job: JobRecord } | { op: 'update'; id: string; patch: JobPatch; ifStatus: JobStatus | undefined };

/** The id of the job a write concerns. */
export function idOf(write: JobWrite): string {
  return write.op === 'create' ? write.job.id : write.id;
}

/** The columns a job is created with, in the order of the INSERT's parameters, and their SQL types. */
const COLUMN_TYPES = {
  id: 'text',
  key_id: 'text',
  client_id: 'text',
  backend: 'text',
  upstream_id: 'text',
  status: 'text',
  admitted_at: 'float8',
  forwarded_at: 'float8',
  started_at: 'float8',
  finished_at: 'float8',
  execution_seconds: 'float8',
  outputs: 'jsonb',
  error: 'jsonb',
  request: 'jsonb',
  front: 'boolean',
  webhook: 'jsonb',
  sends: 'integer',
} as const satisfies Partial<Record<keyof JobRecord, string>>;

type JobColumn = keyof typeof COLUMN_TYPES;
const INSERT_COLUMNS = Object.keys(COLUMN_TYPES) as JobColumn[];
/** The columns a patch may set (every field but id, key_id and admitted_at). */
const PATCH_COLUMNS: ReadonlySet<string> = new Set(INSERT_COLUMNS.filter((column) => column !== 'id' && column !== 'key_id' && column !== 'admitted_at'));

/** The columns a row is read with; `table` qualifies them, where a statement has other columns of the same names. */
function selectedColumns(table = ''): string {
  const of = table ? `${table}.` : '';
  return `${INSERT_COLUMNS.map((column) => of + column).join(', ')}, ${of}rev::float8 AS rev`;
}
const COLUMNS = selectedColumns();

/** A field as a query parameter: JSON columns as JSON text (SQL NULL for null). */
function parameter(column: string, value: unknown): unknown {
  if (value === undefined) return null;
  return COLUMN_TYPES[column as JobColumn] === 'jsonb' && value !== null ? JSON.stringify(value) : value;
}

/** The columns a patch sets, with their values, in the patch's order. */
function patchedColumns(patch: JobPatch): [string, unknown][] {
  return Object.entries(patchedFields(patch)).filter(([column]) => PATCH_COLUMNS.has(column));
}

/** What identifies the statement that can carry an update: the columns it sets (none: it only reads the row). */
export function updateShape(patch: JobPatch): string {
  return patchedColumns(patch)
    .map(([column]) => column)
    .join(',');
}

/** Inserts a job unless its id is taken; resolves the row, or undefined when it was taken. */
export async function insertJob(database: PostgresDatabase, job: JobRecord): Promise<JobRow | undefined> {
  const { rows } = await database.query<JobRow>(
    `INSERT INTO jobs (${INSERT_COLUMNS.join(', ')}) VALUES (${INSERT_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
     ON CONFLICT (id) DO NOTHING RETURNING ${COLUMNS}`,
    INSERT_COLUMNS.map((column) => parameter(column, job[column])),
  );
  return rows[0];
}

/** Patches a job (while it has `ifStatus`, if given); resolves its row, or undefined when no row matched. */
export async function updateJob(database: PostgresDatabase, id: string, patch: JobPatch, ifStatus: JobStatus | undefined): Promise<JobRow | undefined> {
  const columns = patchedColumns(patch);
  const assignments = columns.map(([column], i) => `${column} = $${i + 3}`);
  const where = `id = $1 AND ($2::text IS NULL OR status = $2)`;
  const { rows } = await database.query<JobRow>(
    assignments.length === 0 ? `SELECT ${COLUMNS} FROM jobs WHERE ${where}` : `UPDATE jobs SET ${assignments.join(', ')} WHERE ${where} RETURNING ${COLUMNS}`,
    [id, ifStatus ?? null, ...columns.map(([column, value]) => parameter(column, value))],
  );
  return rows[0];
}

/** The rows of `ids` that the table has, in admission order. */
export async function jobRows(database: PostgresDatabase, ids: string[]): Promise<JobRow[]> {
  return (await database.query<JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE id = ANY($1) ORDER BY admitted_at`, [ids])).rows;
}

/** A job's revision as the table holds it (`updated`: its `updated_at` in Unix seconds), without the job itself. */
export type JobRevision = { id: string; rev: number; updated: number };

/**
 * Hands `onPage` the revisions of the rows changed since `since` (Unix seconds), in admission order, a
 * page at a time (`PostgresDatabase.eachPage`): a replica fetches whole rows only of the jobs it holds
 * at an older revision, so reading again what it wrote itself costs a few bytes a job.
 */
export function eachJobRevisionPageChangedSince(database: PostgresDatabase, since: number, onPage: (revisions: JobRevision[]) => Promise<void>): Promise<void> {
  return database.eachPage<JobRevision>(
    `SELECT id, rev::float8 AS rev, extract(epoch from updated_at)::float8 AS updated FROM jobs WHERE updated_at > to_timestamp($1) ORDER BY admitted_at`,
    [since],
    onPage,
  );
}

/** `AS v(column type, …)`: a JSON array of objects read as rows of these columns. */
function recordsOf(columns: readonly string[]): string {
  return `jsonb_to_recordset($1::jsonb) AS v(${columns.map((column) => `${column} ${COLUMN_TYPES[column as JobColumn] ?? 'text'}`).join(', ')})`;
}

/** Inserts jobs of distinct ids in one statement, each unless its id is taken; resolves the rows inserted by id. */
export async function insertJobs(database: PostgresDatabase, jobs: readonly JobRecord[]): Promise<Map<string, JobRow>> {
  const records = jobs.map((job) => Object.fromEntries(INSERT_COLUMNS.map((column) => [column, job[column] ?? null])));
  const { rows } = await database.query<JobRow>(
    `INSERT INTO jobs (${INSERT_COLUMNS.join(', ')}) SELECT ${INSERT_COLUMNS.join(', ')} FROM ${recordsOf(INSERT_COLUMNS)}
     ON CONFLICT (id) DO NOTHING RETURNING ${COLUMNS}`,
    [JSON.stringify(records)],
  );
  return new Map(rows.map((row) => [row.id, row]));
}

/**
 * Patches jobs of distinct ids whose patches set the same columns (one `updateShape`, not empty) in one
 * statement, each while it has its `ifStatus`, if given; resolves the rows patched by id.
 */
export async function updateJobs(
  database: PostgresDatabase,
  updates: readonly { id: string; patch: JobPatch; ifStatus: JobStatus | undefined }[],
): Promise<Map<string, JobRow>> {
  const columns = patchedColumns(updates[0]!.patch).map(([column]) => column);
  const records = updates.map(({ id, patch, ifStatus }) => ({ ...Object.fromEntries(patchedColumns(patch)), id, if_status: ifStatus ?? null }));
  const { rows } = await database.query<JobRow>(
    `UPDATE jobs AS j SET ${columns.map((column) => `${column} = v.${column}`).join(', ')} FROM ${recordsOf(['id', 'if_status', ...columns])}
     WHERE j.id = v.id AND (v.if_status IS NULL OR j.status = v.if_status) RETURNING ${selectedColumns('j')}`,
    [JSON.stringify(records)],
  );
  return new Map(rows.map((row) => [row.id, row]));
}
