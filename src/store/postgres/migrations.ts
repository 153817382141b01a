// The PostgreSQL schema as numbered migrations, applied once each, in order, under an advisory lock.

/** One step of the schema. `version` numbers are never reused or reordered once released. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The advisory lock held while migrating, so replicas starting together apply each step once. */
export const MIGRATION_LOCK_ID = 0x636f6d6679; // "comfy"

/** The lock taken while the first key is created, so two replicas cannot both bootstrap. */
export const BOOTSTRAP_LOCK_ID = 0x636f6d6680;

/** Notification channels; each change is announced in the transaction that makes it. */
export const CHANNELS = {
  keys: 'comfy_gate_keys',
  sessions: 'comfy_gate_sessions',
  ownership: 'comfy_gate_ownership',
  jobs: 'comfy_gate_jobs',
  /** Job events passed between replicas (sent by the gateway, not by a trigger). */
  jobEvents: 'comfy_gate_job_events',
} as const;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'keys, usage, sessions, ownership and audit',
    sql: `
CREATE TABLE api_keys (
  key_id text PRIMARY KEY,
  name text NOT NULL,
  created_at double precision NOT NULL,
  last_used double precision,
  rate_limit integer NOT NULL,
  is_active boolean NOT NULL DEFAULT true,
  metadata jsonb NOT NULL DEFAULT '{}',
  role text NOT NULL DEFAULT 'user',
  expires_at double precision,
  key_prefix text,
  key_hash text NOT NULL,
  previous_key_hash text,
  previous_key_valid_until double precision,
  deleted boolean NOT NULL DEFAULT false,
  version bigint NOT NULL DEFAULT 1,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX api_keys_updated_at ON api_keys (updated_at);

-- Every change bumps updated_at (the reload watermark). A change other than last_used also bumps the
-- version and announces the key_id; a last_used update is picked up by the periodic reload.
CREATE FUNCTION comfy_gate_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  IF TG_OP = 'UPDATE' THEN
    IF (to_jsonb(NEW) - 'last_used' - 'updated_at' - 'version') IS NOT DISTINCT FROM (to_jsonb(OLD) - 'last_used' - 'updated_at' - 'version') THEN
      RETURN NEW;
    END IF;
    NEW.version := OLD.version + 1;
  END IF;
  PERFORM pg_notify('${CHANNELS.keys}', NEW.key_id);
  RETURN NEW;
END $$;
CREATE TRIGGER api_keys_changed BEFORE INSERT OR UPDATE ON api_keys FOR EACH ROW EXECUTE FUNCTION comfy_gate_key_changed();

CREATE FUNCTION comfy_gate_key_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${CHANNELS.keys}', OLD.key_id);
  RETURN OLD;
END $$;
CREATE TRIGGER api_keys_removed AFTER DELETE ON api_keys FOR EACH ROW EXECUTE FUNCTION comfy_gate_key_removed();

CREATE TABLE sessions (
  id_hash text PRIMARY KEY,
  key_id text NOT NULL,
  created_at double precision NOT NULL,
  expires_at double precision NOT NULL,
  revoked boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX sessions_updated_at ON sessions (updated_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE FUNCTION comfy_gate_session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  PERFORM pg_notify('${CHANNELS.sessions}', NEW.id_hash);
  RETURN NEW;
END $$;
CREATE TRIGGER sessions_changed BEFORE INSERT OR UPDATE ON sessions FOR EACH ROW EXECUTE FUNCTION comfy_gate_session_changed();

-- kind: prompt, client, file, or comfy-user (then id is the key_id and comfy_user is set).
CREATE TABLE ownership (
  kind text NOT NULL,
  id text NOT NULL,
  key_id text NOT NULL,
  at double precision NOT NULL,
  outputs_recorded boolean NOT NULL DEFAULT false,
  comfy_user text,
  seq bigserial UNIQUE,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (kind, id)
);
CREATE INDEX ownership_updated_at ON ownership (updated_at);

-- The notification carries the whole record, so replicas apply it without a query; a record too long
-- for a notification (8000 bytes) is announced by its seq and fetched.
CREATE FUNCTION comfy_gate_ownership_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  NEW.updated_at := clock_timestamp();
  payload := json_build_object('k', NEW.kind, 'i', NEW.id, 'o', NEW.key_id, 'a', NEW.at, 'r', NEW.outputs_recorded, 'u', NEW.comfy_user)::text;
  IF octet_length(payload) > 7900 THEN
    payload := json_build_object('seq', NEW.seq)::text;
  END IF;
  PERFORM pg_notify('${CHANNELS.ownership}', payload);
  RETURN NEW;
END $$;
CREATE TRIGGER ownership_changed BEFORE INSERT OR UPDATE ON ownership FOR EACH ROW EXECUTE FUNCTION comfy_gate_ownership_changed();

CREATE TABLE usage_records (
  seq bigserial PRIMARY KEY,
  import_id text UNIQUE,
  key_id text NOT NULL,
  endpoint text NOT NULL,
  ts double precision NOT NULL,
  duration double precision NOT NULL,
  success boolean NOT NULL,
  method text NOT NULL,
  status integer NOT NULL
);
CREATE INDEX usage_records_key_ts ON usage_records (key_id, ts);
CREATE INDEX usage_records_ts ON usage_records (ts);

CREATE TABLE usage_daily (
  key_id text NOT NULL,
  day text NOT NULL,
  requests bigint NOT NULL DEFAULT 0,
  successes bigint NOT NULL DEFAULT 0,
  failures bigint NOT NULL DEFAULT 0,
  duration double precision NOT NULL DEFAULT 0,
  rate_limited bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (key_id, day)
);
CREATE INDEX usage_daily_updated_at ON usage_daily (updated_at);

CREATE TABLE usage_hourly (
  key_id text NOT NULL,
  hour integer NOT NULL,
  requests bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (key_id, hour)
);
CREATE INDEX usage_hourly_updated_at ON usage_hourly (updated_at);

-- One row per usage batch written, so a batch retried after a lost commit acknowledgement is not counted twice.
CREATE TABLE usage_batches (
  batch_id text PRIMARY KEY,
  committed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
  seq bigserial PRIMARY KEY,
  import_id text UNIQUE,
  ts double precision NOT NULL,
  actor text NOT NULL,
  action text NOT NULL,
  key_id text,
  ip text,
  details jsonb
);
CREATE INDEX audit_log_ts ON audit_log (ts, seq);
`,
  },
  {
    version: 2,
    name: 'sessions bound to the secret they were made with',
    sql: `
-- A session made before this has no secret to match, and so has ended.
ALTER TABLE sessions ADD COLUMN key_hash text NOT NULL DEFAULT '';
CREATE INDEX sessions_key_id ON sessions (key_id);
`,
  },
  {
    version: 3,
    name: 'the job registry',
    sql: `
-- rev comes from one sequence and is taken again by every change, so a replica keeps the latest state of
-- a job whatever order it hears of changes in.
CREATE SEQUENCE jobs_rev;
CREATE TABLE jobs (
  id text PRIMARY KEY,
  key_id text NOT NULL,
  client_id text,
  backend text NOT NULL,
  upstream_id text,
  status text NOT NULL,
  admitted_at double precision NOT NULL,
  forwarded_at double precision,
  started_at double precision,
  finished_at double precision,
  execution_seconds double precision,
  outputs jsonb NOT NULL DEFAULT '[]',
  error jsonb,
  request jsonb,
  front boolean NOT NULL DEFAULT false,
  rev bigint NOT NULL DEFAULT nextval('jobs_rev'),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER SEQUENCE jobs_rev OWNED BY jobs.rev;
CREATE INDEX jobs_updated_at ON jobs (updated_at);
-- The retention's search: finished jobs by the time they finished.
CREATE INDEX jobs_finished ON jobs ((coalesce(finished_at, admitted_at))) WHERE status NOT IN ('held', 'queued', 'running');

CREATE FUNCTION comfy_gate_job_stamped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  NEW.rev := nextval('jobs_rev');
  RETURN NEW;
END $$;
CREATE TRIGGER jobs_stamped BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION comfy_gate_job_stamped();

-- Announced AFTER the change, so an insert that ON CONFLICT DO NOTHING skips is not announced. The
-- notification carries the whole job; one too long for a notification (8000 bytes; a held job's request)
-- is announced by its id and rev, and fetched.
CREATE FUNCTION comfy_gate_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  payload := (to_jsonb(NEW) - 'updated_at')::text;
  IF octet_length(payload) > 7900 THEN
    payload := json_build_object('fetch', NEW.id, 'rev', NEW.rev)::text;
  END IF;
  PERFORM pg_notify('${CHANNELS.jobs}', payload);
  RETURN NULL;
END $$;
CREATE TRIGGER jobs_changed AFTER INSERT OR UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION comfy_gate_job_changed();
`,
  },
  {
    version: 4,
    name: 'per-key job quotas',
    sql: `
-- null: no quota. Existing keys get none.
ALTER TABLE api_keys ADD COLUMN max_queued integer, ADD COLUMN max_running integer, ADD COLUMN daily_execution_seconds integer;
`,
  },
  {
    version: 5,
    name: 'job metering in the daily usage totals',
    sql: `
-- Prompts admitted, jobs run (on the day they finished), their execution seconds and outputs, per key and UTC day.
ALTER TABLE usage_daily
  ADD COLUMN prompts bigint NOT NULL DEFAULT 0,
  ADD COLUMN prompts_run bigint NOT NULL DEFAULT 0,
  ADD COLUMN execution_seconds double precision NOT NULL DEFAULT 0,
  ADD COLUMN outputs bigint NOT NULL DEFAULT 0;
`,
  },
  {
    version: 6,
    name: 'changes announced after the row is written',
    sql: `
-- A BEFORE INSERT trigger also runs for an insert that ON CONFLICT DO NOTHING then skips: a claim lost to
-- another key was announced as if it had won. The BEFORE triggers now only stamp the row; AFTER triggers,
-- which run only for rows written, announce it, with the same payloads as before.
CREATE OR REPLACE FUNCTION comfy_gate_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  IF TG_OP = 'UPDATE' THEN
    IF (to_jsonb(NEW) - 'last_used' - 'updated_at' - 'version') IS NOT DISTINCT FROM (to_jsonb(OLD) - 'last_used' - 'updated_at' - 'version') THEN
      RETURN NEW;
    END IF;
    NEW.version := OLD.version + 1;
  END IF;
  RETURN NEW;
END $$;

-- The version moves exactly when something other than last_used changed (comfy_gate_key_changed).
CREATE FUNCTION comfy_gate_key_announced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.version IS DISTINCT FROM OLD.version THEN
    PERFORM pg_notify('${CHANNELS.keys}', NEW.key_id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER api_keys_announced AFTER INSERT OR UPDATE ON api_keys FOR EACH ROW EXECUTE FUNCTION comfy_gate_key_announced();

CREATE OR REPLACE FUNCTION comfy_gate_session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  RETURN NEW;
END $$;

CREATE FUNCTION comfy_gate_session_announced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${CHANNELS.sessions}', NEW.id_hash);
  RETURN NULL;
END $$;
CREATE TRIGGER sessions_announced AFTER INSERT OR UPDATE ON sessions FOR EACH ROW EXECUTE FUNCTION comfy_gate_session_announced();

CREATE OR REPLACE FUNCTION comfy_gate_ownership_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  RETURN NEW;
END $$;

-- The notification carries the whole record, so replicas apply it without a query; a record too long
-- for a notification (8000 bytes) is announced by its seq and fetched.
CREATE FUNCTION comfy_gate_ownership_announced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  payload := json_build_object('k', NEW.kind, 'i', NEW.id, 'o', NEW.key_id, 'a', NEW.at, 'r', NEW.outputs_recorded, 'u', NEW.comfy_user)::text;
  IF octet_length(payload) > 7900 THEN
    payload := json_build_object('seq', NEW.seq)::text;
  END IF;
  PERFORM pg_notify('${CHANNELS.ownership}', payload);
  RETURN NULL;
END $$;
CREATE TRIGGER ownership_announced AFTER INSERT OR UPDATE ON ownership FOR EACH ROW EXECUTE FUNCTION comfy_gate_ownership_announced();
`,
  },
  {
    version: 7,
    name: 'per-key prompt policy',
    sql: `
-- null: no policy of the key's own (a user key then gets --default-policy). Existing keys get none.
ALTER TABLE api_keys ADD COLUMN policy jsonb;
`,
  },
  {
    version: 8,
    name: 'webhooks: default URL per key, webhook per job, and the delivery outbox',
    sql: `
-- null: none. Existing keys and jobs get none.
ALTER TABLE api_keys ADD COLUMN webhook_url text;
ALTER TABLE jobs ADD COLUMN webhook jsonb;

-- One row per event of a job to POST to its webhook. A replica takes a due row by setting lease_until
-- and lease_token in one conditional UPDATE (FOR UPDATE SKIP LOCKED), so each attempt is sent once.
CREATE TABLE webhook_deliveries (
  id text PRIMARY KEY,
  job_id text NOT NULL,
  key_id text NOT NULL,
  event text NOT NULL,
  url text NOT NULL,
  body text NOT NULL,
  state text NOT NULL DEFAULT 'pending',
  created_at double precision NOT NULL,
  next_attempt_at double precision,
  attempts jsonb NOT NULL DEFAULT '[]',
  lease_until double precision,
  lease_token text,
  seq bigserial UNIQUE
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_newest ON webhook_deliveries (created_at DESC, seq DESC);
CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, created_at DESC, seq DESC);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id);
`,
  },
  {
    version: 9,
    name: 'registered workflows',
    sql: `
-- Read on each request (no replica cache), so a workflow registered on one replica is served by all at once.
-- json, not jsonb: the inputs keep the order the admin gave them in (listings, the OpenAPI schema).
CREATE TABLE workflows (
  name text PRIMARY KEY,
  prompt json NOT NULL,
  description text,
  inputs json NOT NULL,
  -- Only on the workflow that serves POST /v1/images/generations.
  openai_images json,
  created_at double precision NOT NULL,
  updated_at double precision NOT NULL
);
`,
  },
  {
    version: 10,
    name: "a job's count of sends in a column of its own",
    sql: `
-- Recording a send sets this alone, not the request (a held job's whole prompt). null: never sent, or
-- sent by an earlier version, which kept the count inside the request (read from there).
ALTER TABLE jobs ADD COLUMN sends integer;
`,
  },
  {
    version: 11,
    name: "each key's due webhook deliveries in order",
    sql: `
-- A claim takes turns among keys: it reads each key's oldest due deliveries (PostgresWebhookStore.claimDue).
CREATE INDEX webhook_deliveries_due_by_key ON webhook_deliveries (key_id, next_attempt_at, seq) WHERE state = 'pending';
`,
  },
  {
    version: 12,
    name: 'the live keys in the order keys are listed',
    sql: `
-- comfy-gate keys list (and usage) read the live keys by created_at, then key_id, a page at a time: in
-- this index's order, the first page comes without sorting the table. A migration runs in a transaction,
-- so not CONCURRENTLY: writes to api_keys wait while it is built (2.7 s for a million keys on two cores).
CREATE INDEX IF NOT EXISTS api_keys_listed ON api_keys (created_at, key_id) WHERE NOT deleted;
`,
  },
];
