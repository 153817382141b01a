// A job record for unit tests: queued on `default` under its own id, with the fields a test changes given.

import type { JobRecord } from '../../src/store/types.js';

/** A job of `alice`, queued on backend `default` with ComfyUI's id equal to its own; `fields` override any of that. */
export function jobRecord(id: string, fields: Partial<JobRecord> = {}): JobRecord {
  return {
    id,
    key_id: 'alice',
    client_id: null,
    backend: 'default',
    upstream_id: id,
    status: 'queued',
    admitted_at: 1,
    forwarded_at: 1,
    started_at: null,
    finished_at: null,
    execution_seconds: null,
    outputs: [],
    error: null,
    request: null,
    front: false,
    webhook: null,
    ...fields,
  };
}
