// The PostgreSQL audit trail: one row per entry in `audit_log`, appended in the order they commit.

import type { AuditEntry, AuditStore } from '../types.js';
import type { PostgresDatabase } from './database.js';

interface AuditRow {
  ts: number;
  actor: string;
  action: string;
  key_id: string | null;
  ip: string | null;
  details: Record<string, unknown> | null;
}

/** The audit trail in PostgreSQL, shared by every replica. Appends are durable when they resolve. */
export class PostgresAuditStore implements AuditStore {
  private readonly database: PostgresDatabase;

  constructor(options: { database: PostgresDatabase }) {
    this.database = options.database;
  }

  async append(entry: AuditEntry): Promise<void> {
    await this.database.query('INSERT INTO audit_log (ts, actor, action, key_id, ip, details) VALUES ($1, $2, $3, $4, $5, $6::jsonb)', [
      entry.ts,
      entry.actor,
      entry.action,
      entry.key_id ?? null,
      entry.ip ?? null,
      entry.details === undefined ? null : JSON.stringify(entry.details),
    ]);
  }

  async list({ since, limit }: { since: number; limit: number }): Promise<AuditEntry[]> {
    const { rows } = await this.database.query<AuditRow>(
      'SELECT ts, actor, action, key_id, ip, details FROM audit_log WHERE ts >= $1 ORDER BY ts, seq LIMIT $2',
      // LIMIT NULL is no limit: every entry since `since`.
      [since, Number.isFinite(limit) ? limit : null],
    );
    return rows.map(toEntry);
  }
}

/** An entry in the file trail's shape: absent fields are left out, not null. */
function toEntry(row: AuditRow): AuditEntry {
  const entry: AuditEntry = { ts: row.ts, actor: row.actor, action: row.action };
  if (row.key_id !== null) entry.key_id = row.key_id;
  if (row.ip !== null) entry.ip = row.ip;
  if (row.details !== null) entry.details = row.details;
  return entry;
}
