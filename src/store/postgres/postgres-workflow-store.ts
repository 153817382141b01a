// The PostgreSQL workflow registry: one row per workflow in `workflows`, read on each call so every replica serves the same set.

import { parseExactJson, stringifyExactJson } from '../../json/exact-json.js';
import type { WorkflowRecord, WorkflowStore } from '../types.js';
import type { PostgresDatabase } from './database.js';

/** A row as read: the graph and the inputs as their JSON text, which pg would read with JSON.parse (rounding a 64-bit seed, `7.0` to `7`). */
type WorkflowRow = Omit<WorkflowRecord, 'prompt' | 'inputs' | 'openai_images'> & {
  prompt: string;
  inputs: string;
  openai_images: WorkflowRecord['openai_images'] | null;
};

/** The columns of a record; `json` keeps the text it was given, so the graph's numbers come back as written. */
const COLUMNS = 'name, prompt::text AS prompt, description, inputs::text AS inputs, openai_images, created_at, updated_at';

/** A row as a record, its JSON read with parseExactJson: `openai_images` left out when it is null, as the file store leaves it out. */
function toRecord({ openai_images: openAi, prompt, inputs, ...rest }: WorkflowRow): WorkflowRecord {
  const record = { ...rest, prompt: parseExactJson(prompt) as WorkflowRecord['prompt'], inputs: parseExactJson(inputs) as WorkflowRecord['inputs'] };
  return openAi ? { ...record, openai_images: openAi } : record;
}

/** The registered workflows in PostgreSQL, shared by every replica. Writes are durable when they resolve. */
export class PostgresWorkflowStore implements WorkflowStore {
  private readonly database: PostgresDatabase;

  constructor(options: { database: PostgresDatabase }) {
    this.database = options.database;
  }

  async list(): Promise<WorkflowRecord[]> {
    const { rows } = await this.database.query<WorkflowRow>(`SELECT ${COLUMNS} FROM workflows ORDER BY name`);
    return rows.map(toRecord);
  }

  async get(name: string): Promise<WorkflowRecord | undefined> {
    const { rows } = await this.database.query<WorkflowRow>(`SELECT ${COLUMNS} FROM workflows WHERE name = $1`, [name]);
    return rows[0] && toRecord(rows[0]);
  }

  async put(record: Omit<WorkflowRecord, 'created_at' | 'updated_at'>, now: number): Promise<{ record: WorkflowRecord; created: boolean }> {
    // xmax is 0 for a row this statement inserted, and the updating transaction's id for one it replaced.
    const { rows } = await this.database.query<WorkflowRow & { inserted: boolean }>(
      `INSERT INTO workflows (name, prompt, description, inputs, openai_images, created_at, updated_at) VALUES ($1, $2::json, $3, $4::json, $5::json, $6, $6)
       ON CONFLICT (name) DO UPDATE SET prompt = EXCLUDED.prompt, description = EXCLUDED.description, inputs = EXCLUDED.inputs,
         openai_images = EXCLUDED.openai_images, updated_at = EXCLUDED.updated_at
       RETURNING ${COLUMNS}, (xmax = 0) AS inserted`,
      [
        record.name,
        stringifyExactJson(record.prompt),
        record.description,
        stringifyExactJson(record.inputs),
        record.openai_images ? JSON.stringify(record.openai_images) : null,
        now,
      ],
    );
    const { inserted, ...stored } = rows[0]!;
    return { record: toRecord(stored), created: inserted };
  }

  async delete(name: string): Promise<boolean> {
    const { rowCount } = await this.database.query('DELETE FROM workflows WHERE name = $1', [name]);
    return (rowCount ?? 0) > 0;
  }
}
